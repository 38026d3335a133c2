package config

import "encoding/json"

// Storage types (object_storage.storage_type). StorageURL is hoard's
// extension: object_storage {"url": "s3://bucket?region=..."} takes any
// gocloud.dev/blob URL.
const (
	StorageLocal  = "local"
	StorageS3     = "s3"
	StorageGoogle = "google"
	StorageAzure  = "azure"
	StorageURL    = "url"
)

// ObjectStorage is a site's object_storage: rohmu's keys for local, s3,
// google and azure, or hoard's {"url": ...}.
type ObjectStorage struct {
	StorageType string // storage_type; StorageURL when URL is set
	URL         string // url: a gocloud.dev/blob URL (hoard's extension)
	Prefix      string // prefix: put in front of every key (before the site prefix)

	// Implicit is true when the site had no object_storage and this is
	// PGHoard's fallback: local storage at backup_location.
	Implicit bool

	Directory string // local: directory

	BucketName string // s3, google, azure (container): bucket_name

	Region             string // s3: region
	AWSAccessKeyID     string // s3: aws_access_key_id
	AWSSecretAccessKey string // s3: aws_secret_access_key
	AWSSessionToken    string // s3: aws_session_token
	Host               string // s3, azure: host
	Port               int    // s3, azure: port
	IsSecure           bool   // s3 (false), azure (true): is_secure
	IsVerifyTLS        bool   // s3: is_verify_tls (false)
	CertPath           string // s3: cert_path
	AddressingStyle    string // s3: addressing_style path|virtual|auto (path)
	SegmentSize        int64  // s3: segment_size, multipart part size (0 = automatic)
	Encrypted          bool   // s3: encrypted (SSE-S3 AES256)

	ProjectID      string          // google: project_id
	CredentialFile string          // google: credential_file
	Credentials    json.RawMessage // google: credentials (a service-account JSON object)

	AccountName string // azure: account_name
	AccountKey  string // azure: account_key
	SASToken    string // azure: sas_token
	AzureCloud  string // azure: azure_cloud public|germany|china
}

// storageKeys lists the keys each storage type accepts besides storage_type
// and prefix.
var storageKeys = map[string][]string{
	StorageLocal:  {"directory"},
	StorageS3:     {"region", "bucket_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "host", "port", "is_secure", "is_verify_tls", "cert_path", "addressing_style", "segment_size", "encrypted"},
	StorageGoogle: {"project_id", "bucket_name", "credential_file", "credentials"},
	StorageAzure:  {"account_name", "account_key", "sas_token", "bucket_name", "is_secure", "host", "port", "azure_cloud"},
	StorageURL:    {"url"},
}

// storageTargets maps every object_storage key (but storage_type) to the
// field of o it sets. The decoder and the HOARD_<TYPE>_* variables both
// use it, so a key cannot be read from one and not the other.
func storageTargets(o *ObjectStorage) map[string]any {
	return map[string]any{
		"prefix":                &o.Prefix,
		"url":                   &o.URL,
		"directory":             &o.Directory,
		"bucket_name":           &o.BucketName,
		"region":                &o.Region,
		"aws_access_key_id":     &o.AWSAccessKeyID,
		"aws_secret_access_key": &o.AWSSecretAccessKey,
		"aws_session_token":     &o.AWSSessionToken,
		"host":                  &o.Host,
		"port":                  &o.Port,
		"is_secure":             &o.IsSecure,
		"is_verify_tls":         &o.IsVerifyTLS,
		"cert_path":             &o.CertPath,
		"addressing_style":      &o.AddressingStyle,
		"segment_size":          &o.SegmentSize,
		"encrypted":             &o.Encrypted,
		"project_id":            &o.ProjectID,
		"credential_file":       &o.CredentialFile,
		"credentials":           &o.Credentials,
		"account_name":          &o.AccountName,
		"account_key":           &o.AccountKey,
		"sas_token":             &o.SASToken,
		"azure_cloud":           &o.AzureCloud,
	}
}
