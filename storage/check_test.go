package storage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// TestOpenChecks checks that Open refuses what Config.Check finds (the
// rules config reports at load) and a google or azure store without a
// bucket, before it builds a client, naming the key and never a URL's
// password.
func TestOpenChecks(t *testing.T) {
	for _, tc := range []struct {
		c    storage.Config
		want string
	}{
		{storage.Config{Type: "local"}, "open local storage: directory: required for local storage"},
		{storage.Config{Type: "s3", BucketName: "b"}, "open s3 storage: region: required for s3 storage"},
		{storage.Config{Type: "s3", Region: "r", BucketName: "b", AccessKeyID: "k"}, "aws_secret_access_key: aws_access_key_id and aws_secret_access_key must be set together"},
		{storage.Config{Type: "s3", Region: "r", BucketName: "b", Host: "h", CertPath: "/ca.pem", IsVerifyTLS: new(bool)}, "open s3 storage: cert_path: set, but is_verify_tls is false"},
		{storage.Config{Type: "google", ProjectID: "p"}, "open google storage: bucket_name: required"},
		{storage.Config{Type: "google", BucketName: "b", CredentialFile: "/f", CredentialsJSON: []byte("{}")}, "credentials: credential_file and credentials are mutually exclusive"},
		{storage.Config{Type: "azure", AccountName: "a", BucketName: "c", Host: "h"}, "open azure storage: port: host and port must be set together"},
		{storage.Config{Type: "azure", AccountName: "a"}, "open azure storage: bucket_name: required"},
		{storage.Config{Type: "swift", User: "u", AuthURL: "http://a"}, "open swift storage: key: required for swift storage; container_name: required for swift storage"},
		{storage.Config{Type: "sftp", Server: "s", Username: "u"}, "open sftp storage: password: password or private_key required"},
		{storage.Config{Type: "sftp", Server: "s", Username: "u", Password: "p", HostKeyFingerprint: "aa:bb"}, "host_key_fingerprint: want SHA256:"},
		{storage.Config{URL: "//user:hunter2@bucket"}, "open storage url: url: want a gocloud.dev/blob URL"},
		{storage.Config{URL: "s3://user:hunter2@bucket/%zz"}, "open storage url: url: invalid URL"},
	} {
		st, err := storage.Open(context.Background(), tc.c)
		if err == nil {
			st.Close()
			t.Errorf("Open succeeded, want %q", tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open = %v, want %q (and no password)", err, tc.want)
		}
	}
}
