package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob:// URLs
	_ "gocloud.dev/blob/fileblob"  // file:// URLs
	_ "gocloud.dev/blob/gcsblob"   // gs:// URLs
	"gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob" // s3:// URLs
)

// The storage types (Config.Type): rohmu's storage_type values, which
// config accepts (Types, in the order its reference lists them), and mem
// for tests.
const (
	TypeLocal  = "local"
	TypeS3     = "s3"
	TypeGoogle = "google"
	TypeAzure  = "azure"
	TypeSwift  = "swift"
	TypeSFTP   = "sftp"
	TypeMem    = "mem"
)

// Types are the storage types a configuration may name.
var Types = []string{TypeLocal, TypeS3, TypeGoogle, TypeAzure, TypeSwift, TypeSFTP}

// Config selects and configures a backend. Its fields are PGHoard's
// object_storage settings, named in the json tags as rohmu names them:
// config.ObjectStorage.StorageConfig fills each from the key of its tag.
type Config struct {
	Type   string `json:"storage_type"` // one of Types, or mem; ignored when URL is set
	URL    string `json:"url"`          // any gocloud.dev/blob URL (s3://, gs://, azblob://, file://, mem://)
	Prefix string `json:"prefix"`       // keys given to the Store are relative to it

	Directory string `json:"directory"` // local: the root directory

	Region          string `json:"region"`                // s3: region
	BucketName      string `json:"bucket_name"`           // s3, google; azure: the container name
	AccessKeyID     string `json:"aws_access_key_id"`     // s3: static credentials; empty uses the AWS default chain
	SecretAccessKey string `json:"aws_secret_access_key"` // s3
	SessionToken    string `json:"aws_session_token"`     // s3: optional
	Host            string `json:"host"`                  // s3, azure: custom endpoint host (MinIO, Azurite, ...)
	Port            int    `json:"port"`                  // s3, azure: custom endpoint port; 0 for the scheme's default
	IsSecure        bool   `json:"is_secure"`             // s3, azure: https rather than http to Host
	IsVerifyTLS     *bool  `json:"is_verify_tls"`         // s3: verify the server certificate; nil means verify
	CertPath        string `json:"cert_path"`             // s3: PEM CA bundle to verify the server with
	AddressingStyle string `json:"addressing_style"`      // s3: one of S3AddressingStyles; path by default
	SegmentSize     int64  `json:"segment_size"`          // s3, azure, google: upload part size in bytes; swift: segment size
	Encrypted       bool   `json:"encrypted"`             // s3: server-side encryption (AES256)

	ProjectID       string          `json:"project_id"`      // google: project (only needed to create buckets)
	CredentialFile  string          `json:"credential_file"` // google: service account or user credentials JSON file
	CredentialsJSON json.RawMessage `json:"credentials"`     // google: the same, inline

	AccountName string `json:"account_name"` // azure
	AccountKey  string `json:"account_key"`  // azure: shared key
	SASToken    string `json:"sas_token"`    // azure: instead of AccountKey
	AzureCloud  string `json:"azure_cloud"`  // azure: one of AzureClouds; public by default

	User              string `json:"user"`                // swift: user name (tempauth: account:user)
	Key               string `json:"key"`                 // swift: password or API key
	AuthURL           string `json:"auth_url"`            // swift: Keystone or v1 auth endpoint
	AuthVersion       string `json:"auth_version"`        // swift: one of SwiftAuthVersions; 2.0 by default
	ContainerName     string `json:"container_name"`      // swift: the container
	TenantName        string `json:"tenant_name"`         // swift: v2 tenant (v3: project, when project_name is unset)
	TenantID          string `json:"tenant_id"`           // swift: v2 tenant id
	RegionName        string `json:"region_name"`         // swift: region of the endpoint
	UserID            string `json:"user_id"`             // swift v3
	UserDomainID      string `json:"user_domain_id"`      // swift v3
	UserDomainName    string `json:"user_domain_name"`    // swift v3
	ProjectName       string `json:"project_name"`        // swift v3 (project_id is shared with google)
	ProjectDomainID   string `json:"project_domain_id"`   // swift v3
	ProjectDomainName string `json:"project_domain_name"` // swift v3
	ServiceType       string `json:"service_type"`        // swift: only object-store
	EndpointType      string `json:"endpoint_type"`       // swift: one of SwiftEndpointTypes; publicURL by default

	Server                string `json:"server"`                   // sftp: host name or address (Port: 22 when 0; Directory: under it, Prefix)
	Username              string `json:"username"`                 // sftp
	Password              string `json:"password"`                 // sftp: this or PrivateKey
	PrivateKey            string `json:"private_key"`              // sftp: path of an unencrypted key file
	KnownHostsFile        string `json:"known_hosts_file"`         // sftp: default ~/.ssh/known_hosts
	HostKeyFingerprint    string `json:"host_key_fingerprint"`     // sftp: SHA256:... instead of known_hosts
	InsecureIgnoreHostKey bool   `json:"insecure_ignore_host_key"` // sftp: accept any host key
}

// Open opens the store that c describes, once c.Check finds nothing wrong
// and, for google and azure, bucket_name names the bucket or container
// (config accepts a configuration without it). Open does not contact the
// backend: a wrong bucket or bad credentials show up, as ErrPermanent, on
// first use.
func Open(ctx context.Context, c Config) (Store, error) {
	if c.URL != "" {
		if err := c.checked("storage url"); err != nil {
			return nil, err
		}
		b, err := blob.OpenBucket(ctx, c.URL)
		if err != nil {
			return nil, fmt.Errorf("open storage url: %w", err)
		}
		kind, _, _ := strings.Cut(c.URL, "://")
		return newBucket(b, kind, c.URL, c.Prefix), nil
	}
	if err := c.checked(c.Type + " storage"); err != nil {
		return nil, err
	}
	if c.BucketName == "" && (c.Type == TypeGoogle || c.Type == TypeAzure) {
		return nil, fmt.Errorf("open %s storage: bucket_name: required", c.Type)
	}
	switch c.Type {
	case TypeLocal:
		return NewLocal(filepath.Join(c.Directory, filepath.FromSlash(strings.Trim(c.Prefix, "/")))), nil
	case TypeMem:
		return newBucket(memblob.OpenBucket(nil), "mem", "mem", c.Prefix), nil
	case TypeS3:
		return openS3(ctx, c)
	case TypeGoogle:
		return openGCS(ctx, c)
	case TypeAzure:
		return openAzure(ctx, c)
	case TypeSwift:
		return openSwift(c)
	case TypeSFTP:
		return openSFTP(c)
	default:
		return nil, fmt.Errorf("open storage: unknown storage_type %q (want %s or mem)", c.Type, strings.Join(Types, ", "))
	}
}

// NewMem returns an empty in-memory store, for unit tests.
func NewMem() Store {
	return newBucket(memblob.OpenBucket(nil), "mem", "mem", "")
}

// mib is a mebibyte, for part sizes.
const mib = 1 << 20

// safeASCII reports whether s can travel as an HTTP header value unchanged
// and come back unchanged through gocloud's URL-unescaping on read.
func safeASCII(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e || s[i] == '%' {
			return false
		}
	}
	return true
}
