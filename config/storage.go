package config

import (
	"encoding/json"
	"reflect"

	"github.com/hoardbackup/hoard/storage"
)

// Storage types (object_storage.storage_type). StorageURL is hoard's
// extension: object_storage {"url": "s3://bucket?region=..."} takes any
// gocloud.dev/blob URL.
const (
	StorageLocal  = "local"
	StorageS3     = "s3"
	StorageGoogle = "google"
	StorageAzure  = "azure"
	StorageSwift  = "swift"
	StorageSFTP   = "sftp"
	StorageURL    = "url"
)

// ObjectStorage is a site's object_storage: rohmu's keys for local, s3,
// google, azure, swift and sftp, or hoard's {"url": ...}. storageKeys names the key of
// each field.
type ObjectStorage struct {
	StorageType string // StorageURL when URL is set
	URL         string
	Prefix      string // put in front of every key (before the site prefix)

	// Implicit is true when the site had no object_storage and this is
	// PGHoard's fallback: local storage at backup_location.
	Implicit bool

	Directory string // local

	BucketName string // s3, google, azure (the container)

	Region             string // s3
	AWSAccessKeyID     string
	AWSSecretAccessKey string
	AWSSessionToken    string
	Host               string // s3, azure
	Port               int
	IsSecure           bool
	IsVerifyTLS        bool // s3
	CertPath           string
	AddressingStyle    string // path, virtual or auto
	SegmentSize        int64  // multipart part size; 0 = automatic
	Encrypted          bool   // SSE-S3 AES256

	ProjectID      string // google
	CredentialFile string
	Credentials    json.RawMessage // a service-account JSON object

	AccountName string // azure
	AccountKey  string
	SASToken    string
	AzureCloud  string // public, germany or china

	User              string // swift
	Key               string
	AuthURL           string
	AuthVersion       string // 1.0, 2.0 or 3.0
	ContainerName     string
	TenantName        string
	TenantID          string
	RegionName        string
	UserID            string
	UserDomainID      string
	UserDomainName    string
	ProjectName       string
	ProjectDomainID   string
	ProjectDomainName string
	ServiceType       string
	EndpointType      string

	Server                string // sftp (and Port, Directory)
	Username              string
	Password              string
	PrivateKey            string // a key file's path, as PGHoard takes it
	KnownHostsFile        string
	HostKeyFingerprint    string
	InsecureIgnoreHostKey bool
}

// StorageConfig returns the storage.Config o describes: each key of its
// storage type (url and prefix for a url) in the field whose json tag is
// the key's name, rohmu's. TestStorageConfig checks that every key has its
// field.
func (o ObjectStorage) StorageConfig() storage.Config {
	var sc storage.Config
	dst, src := reflect.ValueOf(&sc).Elem(), reflect.ValueOf(o)
	for i := range dst.NumField() {
		k := lookup(storageKeys, dst.Type().Field(i).Tag.Get("json"))
		if k != nil && k.accepts(o.StorageType) && !(k.name == "storage_type" && o.StorageType == StorageURL) {
			set(dst.Field(i), src.FieldByName(k.field).Interface())
		}
	}
	return sc
}

// newObjectStorage returns the object_storage of a storage type before its
// keys are read.
func newObjectStorage(typ, prefix string) ObjectStorage {
	// rohmu: Azure defaults to HTTPS, S3 to is_secure false.
	return ObjectStorage{StorageType: typ, Prefix: prefix, IsSecure: typ == StorageAzure}
}

// storageTypeList is "local, s3, google or azure", for messages.
func storageTypeList() string {
	names := make([]string, len(storageTypes))
	for i, t := range storageTypes {
		names[i] = t.name
	}
	return orList(names)
}

func knownStorageType(typ string) bool {
	for _, t := range storageTypes {
		if t.name == typ {
			return true
		}
	}
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
		d.ps.add(join(path, "storage_type"), "required (%s), or give url", storageTypeList())
		return
	default:
		s, ok := st.(string)
		if !ok {
			d.wrongType(join(path, "storage_type"), "string", st)
			return
		}
		if !knownStorageType(s) {
			d.ps.add(join(path, "storage_type"), "unknown storage type %q (want %s)", s, storageTypeList())
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
	typ := f.FieldByName("StorageType").String()
	for _, sk := range sortedRows(k.keys) {
		if !w.docs && (!sk.accepts(typ) || sk.name == "storage_type" && typ == StorageURL) {
			continue
		}
		w.value(join(path, sk.name), sk, f.FieldByName(sk.field))
	}
}
