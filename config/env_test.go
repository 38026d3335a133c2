package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t testing.TB, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad_EnvOnly(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		dir := t.TempDir()
		env := map[string]string{
			"HOARD_BACKUP_LOCATION":             "/var/lib/hoard",
			"HOARD_STORAGE_URL":                 "s3://bucket?region=eu-west-1",
			"HOARD_STORAGE_PREFIX":              "pg/main",
			"HOARD_COMPRESSION_ALGORITHM":       "lz4",
			"HOARD_COMPRESSION_LEVEL":           "3",
			"HOARD_ENCRYPTION_KEY_ID":           "k1",
			"HOARD_ENCRYPTION_PUBLIC_KEY":       "PUBLIC PEM",
			"HOARD_ENCRYPTION_PRIVATE_KEY_FILE": writeFile(t, dir, "priv.pem", "PRIVATE PEM\n"),
			"HOARD_PG_URI_FILE":                 writeFile(t, dir, "uri", "postgres://rep:pw@db/postgres\n"),
			"HOARD_SLOT":                        "hoard",
			"HOARD_ACTIVE_BACKUP_MODE":          "walreceiver",
			"HOARD_BASEBACKUP_INTERVAL_HOURS":   "12",
			"HOARD_BASEBACKUP_COUNT":            "7",
			"HOARD_HTTP_ADDRESS":                "0.0.0.0",
			"HOARD_HTTP_PORT":                   "16001",
			"HOARD_PG_DATA_DIRECTORY":           "/pgdata",
			"HOARD_LOG_LEVEL":                   "DEBUG",
		}
		c, err := Load("", mapEnv(env))
		if err != nil {
			t.Fatal(err)
		}
		name, s, err := c.Site("")
		if err != nil {
			t.Fatal(err)
		}
		if name != DefaultSite || s.Name != DefaultSite || s.Prefix != DefaultSite {
			t.Errorf("site %q, Name %q, prefix %q", name, s.Name, s.Prefix)
		}
		if diff := cmp.Diff(ObjectStorage{StorageType: StorageURL, URL: "s3://bucket?region=eu-west-1", Prefix: "pg/main"}, s.ObjectStorage); diff != "" {
			t.Errorf("object_storage (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(map[string]EncryptionKey{"k1": {Public: "PUBLIC PEM", Private: "PRIVATE PEM"}}, s.EncryptionKeys); diff != "" {
			t.Errorf("encryption_keys (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]Node{{ConnStr: "postgres://rep:pw@db/postgres", Slot: "hoard"}}, s.Nodes); diff != "" {
			t.Errorf("nodes (-want +got):\n%s", diff)
		}
		if iv, _ := s.BasebackupInterval(); iv != 12*time.Hour {
			t.Errorf("interval = %v", iv)
		}
		if n, _ := s.BasebackupCountMax(); n != 7 {
			t.Errorf("count = %d", n)
		}
		if c.Compression.Algorithm != "lz4" || c.Compression.Level != 3 || c.HTTPAddress != "0.0.0.0" || c.HTTPPort != 16001 || c.LogLevel != "DEBUG" {
			t.Errorf("globals = %+v", c)
		}
		if s.ActiveBackupMode != ModeWALReceiver || s.PGDataDirectory != "/pgdata" || s.EncryptionKeyID != "k1" {
			t.Errorf("site = %+v", s)
		}
		for path, want := range map[string]string{
			"backup_location":                                 "env HOARD_BACKUP_LOCATION",
			"backup_sites.default.object_storage.url":         "env HOARD_STORAGE_URL",
			"backup_sites.default.encryption_keys.k1.private": "env HOARD_ENCRYPTION_PRIVATE_KEY",
			"backup_sites.default.nodes":                      "env HOARD_PG_URI",
			"backup_sites.default.basebackup_count_min":       "default",
			"transfer.thread_count":                           "default",
		} {
			if got := c.Source(path); got != want {
				t.Errorf("Source(%s) = %q, want %q", path, got, want)
			}
		}
	})
	t.Run("OKPGVariables", func(t *testing.T) {
		// Only backup_location: the node is "", for pgconn to fill from PG*.
		c, err := Load("", mapEnv(map[string]string{"HOARD_BACKUP_LOCATION": "/b", "HOARD_SITE": "main"}))
		if err != nil {
			t.Fatal(err)
		}
		s := mustSite(t, c, "main")
		if diff := cmp.Diff([]Node{{}}, s.Nodes); diff != "" {
			t.Error(diff)
		}
		if got, want := s.ObjectStorage, (ObjectStorage{StorageType: StorageLocal, Directory: "/b", Implicit: true}); !cmp.Equal(got, want) {
			t.Errorf("object_storage = %+v, want fallback local at backup_location", got)
		}
	})
	t.Run("ErrNothing", func(t *testing.T) {
		_, err := Load("", mapEnv(nil))
		if err == nil || !strings.Contains(err.Error(), "backup_location: required") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLoad_EnvOverridesFile(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		c := load(t, "s3.json", map[string]string{
			"HOARD_STORAGE_URL":      "gs://other",
			"HOARD_BASEBACKUP_COUNT": "null",
			"HOARD_HTTP_PORT":        "17000",
		})
		s := mustSite(t, c, "prod")
		if got, want := s.ObjectStorage, (ObjectStorage{StorageType: StorageURL, URL: "gs://other", Prefix: "cluster-a"}); !cmp.Equal(got, want) {
			t.Errorf("object_storage = %+v (file prefix kept)", got)
		}
		if _, ok := s.BasebackupCountMax(); ok {
			t.Error("HOARD_BASEBACKUP_COUNT=null: want unlimited")
		}
		if c.HTTPPort != 17000 {
			t.Errorf("http_port = %d", c.HTTPPort)
		}
		if got := c.Source("http_address"); got != "file" {
			t.Errorf("Source(http_address) = %q", got)
		}
		if got := c.Source("http_port"); got != "env HOARD_HTTP_PORT" {
			t.Errorf("Source(http_port) = %q", got)
		}
	})
	t.Run("OKSelectSite", func(t *testing.T) {
		c := load(t, "multisite.json", map[string]string{"HOARD_SITE": "gcs", "HOARD_SLOT": "s9"})
		if got := mustSite(t, c, "gcs").Nodes[0].Slot; got != "s9" {
			t.Errorf("gcs slot = %q", got)
		}
		if got := mustSite(t, c, "azure").Nodes[0].Slot; got != "pghoard_slot" {
			t.Errorf("azure slot changed to %q", got)
		}
	})
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"ErrSeveralSites", "multisite.json", map[string]string{"HOARD_SLOT": "x"}, "HOARD_SITE: required to apply HOARD_* site overrides: config has sites azure, blob, gcs"},
		{"ErrUnknownSite", "multisite.json", map[string]string{"HOARD_SITE": "zzz", "HOARD_SLOT": "x"}, `HOARD_SITE: site "zzz" not in backup_sites`},
		{"ErrInteger", "quickstart.json", map[string]string{"HOARD_HTTP_PORT": "http"}, `HOARD_HTTP_PORT: want integer, got "http"`},
		{"ErrCount", "quickstart.json", map[string]string{"HOARD_BASEBACKUP_COUNT": "two"}, `HOARD_BASEBACKUP_COUNT: want integer or null, got "two"`},
		{"ErrInterval", "quickstart.json", map[string]string{"HOARD_BASEBACKUP_INTERVAL_HOURS": "daily"}, `HOARD_BASEBACKUP_INTERVAL_HOURS: want number or null`},
		{"ErrBothFile", "quickstart.json", map[string]string{"HOARD_PG_URI": "a", "HOARD_PG_URI_FILE": "/x"}, "HOARD_PG_URI: set both HOARD_PG_URI and HOARD_PG_URI_FILE"},
		{"ErrMissingFile", "quickstart.json", map[string]string{"HOARD_PG_URI_FILE": "/nonexistent/uri"}, "HOARD_PG_URI_FILE: open /nonexistent/uri"},
		{"ErrKeyWithoutID", "quickstart.json", map[string]string{"HOARD_ENCRYPTION_PUBLIC_KEY": "PEM"}, "HOARD_ENCRYPTION_PUBLIC_KEY: needs HOARD_ENCRYPTION_KEY_ID"},
		{"ErrKeyIDWithoutKey", "quickstart.json", map[string]string{"HOARD_ENCRYPTION_KEY_ID": "k"}, `backup_sites.example-site.encryption_key_id: key "k" not present`},
		{"ErrAlgorithm", "quickstart.json", map[string]string{"HOARD_COMPRESSION_ALGORITHM": "brotli"}, `compression.algorithm: unknown compression algorithm "brotli"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tc.file), mapEnv(tc.env))
			var ve *ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEnvVars(t *testing.T) {
	// The documented list and the code agree: every variable changes something.
	seen := map[string]bool{}
	for _, ev := range EnvVars {
		if seen[ev.Name] {
			t.Errorf("%s listed twice", ev.Name)
		}
		seen[ev.Name] = true
		if !strings.HasPrefix(ev.Name, "HOARD_") || ev.Help == "" {
			t.Errorf("bad entry %+v", ev)
		}
	}
	for _, name := range []string{"HOARD_SITE", "HOARD_BACKUP_LOCATION", "HOARD_STORAGE_URL", "HOARD_STORAGE_PREFIX",
		"HOARD_COMPRESSION_ALGORITHM", "HOARD_COMPRESSION_LEVEL", "HOARD_ENCRYPTION_KEY_ID", "HOARD_ENCRYPTION_PUBLIC_KEY",
		"HOARD_ENCRYPTION_PRIVATE_KEY", "HOARD_PG_URI", "HOARD_SLOT", "HOARD_ACTIVE_BACKUP_MODE", "HOARD_BASEBACKUP_INTERVAL_HOURS",
		"HOARD_BASEBACKUP_COUNT", "HOARD_HTTP_ADDRESS", "HOARD_HTTP_PORT", "HOARD_PG_DATA_DIRECTORY", "HOARD_LOG_LEVEL"} {
		if !seen[name] {
			t.Errorf("%s missing from EnvVars", name)
		}
	}
	base, err := Load(filepath.Join("testdata", "quickstart.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range EnvVars {
		if ev.Name == "HOARD_SITE" {
			continue
		}
		val := map[string]string{
			"HOARD_COMPRESSION_ALGORITHM": "zstd", "HOARD_COMPRESSION_LEVEL": "5", "HOARD_HTTP_PORT": "1234",
			"HOARD_LOG_LEVEL": "ERROR", "HOARD_ACTIVE_BACKUP_MODE": "archive_command", "HOARD_BASEBACKUP_MODE": "pipe",
			"HOARD_BASEBACKUP_INTERVAL_HOURS": "3", "HOARD_BASEBACKUP_COUNT": "9", "HOARD_STORAGE_URL": "mem://", "HOARD_PG_URI": "host=h",
		}[ev.Name]
		if val == "" {
			val = "v-" + ev.Name
		}
		env := map[string]string{ev.Name: val}
		switch ev.Name {
		case "HOARD_ENCRYPTION_PUBLIC_KEY", "HOARD_ENCRYPTION_PRIVATE_KEY":
			env["HOARD_ENCRYPTION_KEY_ID"] = "k"
			env["HOARD_ENCRYPTION_PUBLIC_KEY"] = "P"
		case "HOARD_ENCRYPTION_KEY_ID":
			env["HOARD_ENCRYPTION_PUBLIC_KEY"] = "P"
		case "HOARD_HTTP_TLS_CERT_FILE", "HOARD_HTTP_TLS_KEY_FILE":
			pem := writeFile(t, t.TempDir(), "tls.pem", "PEM")
			env["HOARD_HTTP_TLS_CERT_FILE"] = pem
			env["HOARD_HTTP_TLS_KEY_FILE"] = pem
		case "HOARD_WEBSERVER_USERNAME", "HOARD_WEBSERVER_PASSWORD":
			env["HOARD_WEBSERVER_USERNAME"] = "u"
			env["HOARD_WEBSERVER_PASSWORD"] = "p"
		}
		c, err := Load(filepath.Join("testdata", "quickstart.json"), mapEnv(env))
		if err != nil {
			t.Errorf("%s: %v", ev.Name, err)
			continue
		}
		if cmp.Equal(base, c, cmp.AllowUnexported(Config{})) {
			t.Errorf("%s=%q changed nothing", ev.Name, val)
		}
	}
}
