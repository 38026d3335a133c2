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
	// storage.Config's nil verifies. rohmu applies it to an endpoint of
	// the user's (host) only, and so does StorageConfig: AWS's own
	// endpoints are always verified.
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
		if sc.Host != "" {
			// Without a host, rohmu gives botocore no verify argument
			// (botocore verifies), whatever is_verify_tls says.
			sc.IsVerifyTLS = &o.IsVerifyTLS
		}
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
// that type; the keys of other types are unknown keys. A problem with url or
// storage_type leaves it empty.
func decodeStorage(d *decoder, path string, v any) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	var o ObjectStorage
	if typ, ok := storageType(d, path, m); ok {
		o = newObjectStorage(typ, "")
		d.object(path, m, slices.DeleteFunc(slices.Clone(storageKeys), func(k key) bool { return !k.accepts(typ) }), reflect.ValueOf(&o).Elem())
	}
	return o, true
}

// storageType returns the type of the object_storage m: StorageURL, or its
// storage_type, which must be known.
func storageType(d *decoder, path string, m map[string]any) (string, bool) {
	_, hasURL := m["url"]
	st, hasType := m["storage_type"]
	switch {
	case hasURL && hasType:
		d.ps.add(path, "url and storage_type are mutually exclusive")
	case hasURL:
		return StorageURL, true
	case !hasType:
		d.ps.add(join(path, "storage_type"), "required (%s), or give url", orList(storage.Types))
	default:
		s, ok := st.(string)
		if !ok {
			d.wrongType(join(path, "storage_type"), "string", st)
			return "", false
		}
		return s, knownType(&d.ps, join(path, "storage_type"), s)
	}
	return "", false
}
