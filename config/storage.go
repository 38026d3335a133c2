package config

import (
	"reflect"
	"slices"

	"github.com/hoardbackup/hoard/storage"
)

// StorageURL is the type of hoard's object_storage {"url": ...}, which
// takes any gocloud.dev/blob URL; storage.Types are rohmu's.
const StorageURL = "url"

// ObjectStorage is a site's object_storage: rohmu's keys for local, s3,
// google, azure, swift and sftp, or hoard's {"url": ...}, in the fields of
// storage.Config whose json tags name them (storageKeys names the field of
// each key). Type is StorageURL when URL is set.
type ObjectStorage struct {
	storage.Config
	// IsVerifyTLS is rohmu's is_verify_tls for s3: false unless set, where
	// storage.Config's nil verifies.
	IsVerifyTLS bool
	// Implicit is true when the site had no object_storage and this is
	// PGHoard's fallback: local storage at backup_location.
	Implicit bool
}

// StorageConfig returns the storage.Config o describes.
func (o ObjectStorage) StorageConfig() storage.Config {
	sc := o.Config
	switch o.Type {
	case StorageURL:
		sc.Type = ""
	case storage.TypeS3:
		sc.IsVerifyTLS = &o.IsVerifyTLS
	}
	return sc
}

// newObjectStorage returns the object_storage of a storage type before its
// keys are read.
func newObjectStorage(typ, prefix string) ObjectStorage {
	// rohmu: Azure defaults to HTTPS, S3 to is_secure false.
	return ObjectStorage{Config: storage.Config{Type: typ, Prefix: prefix, IsSecure: typ == storage.TypeAzure}}
}

// knownType tells whether typ is one of storage.Types, else records a
// problem at path.
func knownType(ps *problems, path, typ string) bool {
	if slices.Contains(storage.Types, typ) {
		return true
	}
	ps.add(path, "unknown storage type %q (want %s)", typ, orList(storage.Types))
	return false
}

// decodeStorage reads object_storage: url, or storage_type and the keys of
// that type; the keys of other types are unknown keys.
func decodeStorage(d *decoder, path string, v any, k *key, f reflect.Value) {
	if v == nil {
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, "object", v)
		return
	}
	o := f.Addr().Interface().(*ObjectStorage)
	*o = ObjectStorage{}
	d.set(path)
	_, hasURL := m["url"]
	st, hasType := m["storage_type"]
	typ := StorageURL
	switch {
	case hasURL && hasType:
		d.ps.add(path, "url and storage_type are mutually exclusive")
		return
	case hasURL:
	case !hasType:
		d.ps.add(join(path, "storage_type"), "required (%s), or give url", orList(storage.Types))
		return
	default:
		s, ok := st.(string)
		if !ok {
			d.wrongType(join(path, "storage_type"), "string", st)
			return
		}
		if !knownType(&d.ps, join(path, "storage_type"), s) {
			return
		}
		typ = s
	}
	*o = newObjectStorage(typ, "")
	var rows []key
	for _, sk := range k.keys {
		if sk.accepts(typ) {
			rows = append(rows, sk)
		}
	}
	d.object(path, m, rows, f)
}

// walkStorage reports object_storage: for a loaded configuration the keys
// of its storage type, for the reference every key of every type.
func walkStorage(w *walker, path string, k *key, f reflect.Value) {
	w.add(path, "object", nil, k)
	typ := f.FieldByName("Type").String()
	for _, sk := range sortedRows(k.keys) {
		if !w.docs && (!sk.accepts(typ) || sk.name == "storage_type" && typ == StorageURL) {
			continue
		}
		w.value(join(path, sk.name), sk, f.FieldByName(sk.field))
	}
}
