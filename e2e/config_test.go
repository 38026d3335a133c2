package e2e

import (
	"encoding/json"

	"github.com/hoardbackup/hoard/storage"
)

// readConfig reads the site's configuration file: the whole of it, and
// the site's own object within it.
func (s *site) readConfig() (cfg, site map[string]any) {
	s.t.Helper()
	if err := json.Unmarshal(readFile(s.t, s.config), &cfg); err != nil {
		s.t.Fatal(err)
	}
	return cfg, cfg["backup_sites"].(map[string]any)[s.name].(map[string]any)
}

// writeConfig writes cfg as a configuration file at path, the site's own
// when path is "", for the server's user.
func (s *site) writeConfig(path string, cfg map[string]any) {
	s.t.Helper()
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		s.t.Fatal(err)
	}
	if path == "" {
		path = s.config
	}
	s.writeFile(path, data)
}

// editConfig rewrites the site's configuration file through fn.
func (s *site) editConfig(fn func(cfg map[string]any)) {
	s.t.Helper()
	cfg, _ := s.readConfig()
	fn(cfg)
	s.writeConfig("", cfg)
}

// setSiteKey sets key of the site in the configuration file.
func (s *site) setSiteKey(key string, value any) {
	s.t.Helper()
	cfg, site := s.readConfig()
	site[key] = value
	s.writeConfig("", cfg)
}

// s3Storage is the object_storage of a site stored in the S3 server at c
// (MinIO, or a proxy in front of it), over plain HTTP.
func s3Storage(c storage.Config) map[string]any {
	return map[string]any{
		"storage_type":          "s3",
		"host":                  c.Host,
		"port":                  c.Port,
		"bucket_name":           c.BucketName,
		"aws_access_key_id":     c.AccessKeyID,
		"aws_secret_access_key": c.SecretAccessKey,
		"region":                "us-east-1",
		"is_secure":             false,
	}
}
