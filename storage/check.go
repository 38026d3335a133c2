package storage

import (
	"fmt"
	"net/url"
	"strings"
)

// Problem is what is wrong with one key of a Config, named by its json
// tag.
type Problem struct {
	Key, Msg string
}

// Check returns what is wrong with c for its storage type: the keys the
// type requires that are not set, and settings that contradict each
// other. config reports each problem at the key's JSON path; Open refuses
// a Config with any. The values of a key that takes a list (AzureClouds,
// SwiftAuthVersions, ...) are checked where they are read.
func (c Config) Check() []Problem {
	var ps []Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	// need takes pairs of a key and its value.
	need := func(kv ...string) {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				add(kv[i], "required for %s storage", c.Type)
			}
		}
	}
	if c.URL != "" {
		switch u, err := url.Parse(c.URL); {
		case err != nil:
			add("url", "invalid URL: %v", redactURLError(err))
		case u.Scheme == "":
			add("url", "want a gocloud.dev/blob URL such as s3://bucket?region=r, got no scheme")
		}
		return ps
	}
	switch c.Type {
	case TypeLocal:
		need("directory", c.Directory)
	case TypeS3:
		need("region", c.Region, "bucket_name", c.BucketName)
		if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
			add("aws_secret_access_key", "aws_access_key_id and aws_secret_access_key must be set together")
		}
		if c.CertPath != "" && c.IsVerifyTLS != nil && !*c.IsVerifyTLS {
			// Without verification the bundle is never used: the user
			// would believe the endpoint verified. rohmu refuses it too
			// ("cert_path is set but is_verify_tls is False").
			add("cert_path", "set, but is_verify_tls is false, so the endpoint's certificate would not be verified: set is_verify_tls to true, or remove cert_path")
		}
	case TypeGoogle:
		if c.ProjectID == "" && c.BucketName == "" {
			add("bucket_name", "project_id and/or bucket_name required for google storage")
		}
		if c.CredentialFile != "" && len(c.CredentialsJSON) > 0 {
			add("credentials", "credential_file and credentials are mutually exclusive")
		}
	case TypeAzure:
		need("account_name", c.AccountName)
		if (c.Host == "") != (c.Port == 0) {
			add("port", "host and port must be set together")
		}
	case TypeSwift:
		need("user", c.User, "key", c.Key, "auth_url", c.AuthURL, "container_name", c.ContainerName)
		if c.ServiceType != "" && c.ServiceType != "object-store" {
			add("service_type", "only object-store is supported, got %q", c.ServiceType)
		}
	case TypeSFTP:
		need("server", c.Server, "username", c.Username)
		if c.Password == "" && c.PrivateKey == "" {
			add("password", "password or private_key required for sftp storage")
		}
		if c.HostKeyFingerprint != "" && !strings.HasPrefix(c.HostKeyFingerprint, "SHA256:") {
			add("host_key_fingerprint", "want SHA256:<base64> as ssh-keygen -l prints it, got %q", c.HostKeyFingerprint)
		}
		if c.InsecureIgnoreHostKey && (c.HostKeyFingerprint != "" || c.KnownHostsFile != "") {
			add("insecure_ignore_host_key", "contradicts host_key_fingerprint and known_hosts_file: give one way to check the host key")
		}
	}
	return ps
}

// checked returns c.Check's problems as Open's error, or nil. what names
// the storage ("s3 storage", "storage url").
func (c Config) checked(what string) error {
	ps := c.Check()
	if len(ps) == 0 {
		return nil
	}
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Key + ": " + p.Msg
	}
	return fmt.Errorf("open %s: %s", what, strings.Join(msgs, "; "))
}

// redactURLError drops the URL (which may hold credentials) from a parse
// error.
func redactURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
