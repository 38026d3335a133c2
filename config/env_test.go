package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/storage"
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
			"HOARD_PG_BIN_DIRECTORY":            "/usr/lib/postgresql/17/bin",
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
		if diff := cmp.Diff(ObjectStorage{Config: storage.Config{Type: StorageURL, URL: "s3://bucket?region=eu-west-1", Prefix: "pg/main"}}, s.ObjectStorage); diff != "" {
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
		if c.JSONStateFilePath != "/var/lib/hoard/pghoard_state.json" || c.MaintenanceModeFile != "/var/lib/hoard/maintenance_mode_file" {
			t.Errorf("state file %q, maintenance file %q: want them under backup_location", c.JSONStateFilePath, c.MaintenanceModeFile)
		}
		if s.ActiveBackupMode != ModeWALReceiver || s.PGDataDirectory != "/pgdata" || s.EncryptionKeyID != "k1" || s.PGBinDirectory != "/usr/lib/postgresql/17/bin" {
			t.Errorf("site = %+v", s)
		}
		for path, want := range map[string]string{
			"backup_location":                                 "env HOARD_BACKUP_LOCATION",
			"backup_sites.default.object_storage.url":         "env HOARD_STORAGE_URL",
			"backup_sites.default.encryption_keys.k1.private": "env HOARD_ENCRYPTION_PRIVATE_KEY_FILE",
			"backup_sites.default.nodes":                      "env HOARD_PG_URI_FILE",
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
		if got, want := s.ObjectStorage, (ObjectStorage{Config: storage.Config{Type: storage.TypeLocal, Directory: "/b"}, Implicit: true}); !cmp.Equal(got, want) {
			t.Errorf("object_storage = %+v, want fallback local at backup_location", got)
		}
		// HOARD_SITE names the site; the site's other values are its
		// defaults, as config show must say (it said "env HOARD_SITE" for
		// each, as if the variable had set basebackup_count).
		for _, path := range []string{"backup_sites.main.basebackup_count", "backup_sites.main.active_backup_mode", "backup_sites.main.nodes"} {
			if got, want := c.Source(path), "default"; got != want {
				t.Errorf("Source(%s) = %q, want %q", path, got, want)
			}
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
		if got, want := s.ObjectStorage, (ObjectStorage{Config: storage.Config{Type: StorageURL, URL: "gs://other", Prefix: "cluster-a"}}); !cmp.Equal(got, want) {
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
	// The least each storage type needs to be valid.
	storageBase := map[string]map[string]string{
		storage.TypeLocal:  {"HOARD_STORAGE_TYPE": "local", "HOARD_LOCAL_DIRECTORY": "/d"},
		storage.TypeS3:     {"HOARD_STORAGE_TYPE": "s3", "HOARD_S3_REGION": "r", "HOARD_S3_BUCKET_NAME": "b"},
		storage.TypeGoogle: {"HOARD_STORAGE_TYPE": "google", "HOARD_GCS_BUCKET_NAME": "b"},
		storage.TypeAzure:  {"HOARD_STORAGE_TYPE": "azure", "HOARD_AZURE_ACCOUNT_NAME": "a"},
		storage.TypeSwift: {"HOARD_STORAGE_TYPE": "swift", "HOARD_SWIFT_USER": "u", "HOARD_SWIFT_KEY": "k",
			"HOARD_SWIFT_AUTH_URL": "http://keystone:5000/v3", "HOARD_SWIFT_CONTAINER_NAME": "c"},
		storage.TypeSFTP: {"HOARD_STORAGE_TYPE": "sftp", "HOARD_SFTP_SERVER": "s", "HOARD_SFTP_USERNAME": "u", "HOARD_SFTP_PASSWORD": "p"},
	}
	keys := map[string]KeyDoc{}
	for _, k := range Keys() {
		keys[k.Path] = k
	}
	for _, ev := range EnvVars {
		if ev.Name == "HOARD_SITE" {
			continue
		}
		// Values neither a variable's type nor its row's oneOf gives (see
		// envValue).
		val := map[string]string{
			"HOARD_COMPRESSION_ALGORITHM": "zstd", "HOARD_COMPRESSION_LEVEL": "5", "HOARD_LOG_LEVEL": "ERROR",
			"HOARD_STORAGE_URL": "mem://", "HOARD_PG_URI": "host=h", "HOARD_STORAGE_TYPE": "local",
			"HOARD_GCS_CREDENTIALS": `{"type": "service_account"}`, "HOARD_SWIFT_SERVICE_TYPE": "object-store", "HOARD_AZURE_IS_SECURE": "false",
			"HOARD_SFTP_HOST_KEY_FINGERPRINT": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
		}[ev.Name]
		if val == "" {
			val = envValue(t, ev, keys)
		}
		env := map[string]string{ev.Name: val}
		base := base
		if ev.Storage != "" || ev.Name == "HOARD_STORAGE_TYPE" {
			typ := ev.Storage
			if typ == "" {
				typ = storage.TypeLocal
			}
			if _, ok := storageBase[typ][ev.Name]; !ok {
				var err error
				if base, err = Load(filepath.Join("testdata", "quickstart.json"), mapEnv(storageBase[typ])); err != nil {
					t.Fatal(err)
				}
			}
			for k, v := range storageBase[typ] {
				if _, ok := env[k]; !ok {
					env[k] = v
				}
			}
		}
		switch ev.Name {
		case "HOARD_BASEBACKUP_HOUR", "HOARD_BASEBACKUP_MINUTE":
			env["HOARD_BASEBACKUP_HOUR"] = "3"
			env["HOARD_BASEBACKUP_MINUTE"] = "4"
		case "HOARD_S3_ACCESS_KEY_ID", "HOARD_S3_SECRET_ACCESS_KEY":
			env["HOARD_S3_ACCESS_KEY_ID"] = "id"
			env["HOARD_S3_SECRET_ACCESS_KEY"] = "secret"
		case "HOARD_AZURE_HOST", "HOARD_AZURE_PORT":
			env["HOARD_AZURE_HOST"] = "h"
			env["HOARD_AZURE_PORT"] = "10000"
		case "HOARD_ENCRYPTION_PUBLIC_KEY", "HOARD_ENCRYPTION_PRIVATE_KEY":
			env["HOARD_ENCRYPTION_KEY_ID"] = "k"
			env["HOARD_ENCRYPTION_PUBLIC_KEY"] = "P"
		case "HOARD_ENCRYPTION_KEY_ID":
			env["HOARD_ENCRYPTION_PUBLIC_KEY"] = "P"
		case "HOARD_ENCRYPTION_KEYS_DIR":
			dir := t.TempDir()
			writeFile(t, dir, "k.public.pem", "P")
			env[ev.Name] = dir
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

// envValue is a value of the variable ev that differs from its key's
// default, from the key's type or its row's oneOf: a new key of a plain
// type needs no entry in TestEnvVars' table. A number is 7, inside every
// range the schema allows but 0-0.
func envValue(t *testing.T, ev EnvVar, keys map[string]KeyDoc) string {
	p := ev.Key
	if ev.Site {
		p = "backup_sites." + sitePlaceholder + "." + p
	}
	k, ok := keys[p]
	if !ok {
		t.Fatalf("%s: no key %s", ev.Name, p)
	}
	switch strings.TrimSuffix(k.Type, " or null") {
	case "integer", "number", "seconds":
		return "7"
	case "boolean":
		return strconv.FormatBool(k.Default != "true" && !strings.HasPrefix(k.Default, "true "))
	}
	if r := rowAt(p); r != nil {
		for _, v := range r.oneOf {
			if v != "" && v != r.def {
				return v
			}
		}
	}
	return "v-" + ev.Name
}

// rowAt returns the schema's row of the key at path, a path of the
// reference (with placeholders), or nil.
func rowAt(path string) (row *key) {
	walk("", globalKeys, reflect.ValueOf(New()).Elem(), false, func(p string, k *key, f reflect.Value) bool {
		fill(k, f)
		if p == path {
			row = k
		}
		return row == nil
	})
	return row
}

// TestLoad_EnvOnlyStorage builds a whole single-site configuration for each
// storage type from the environment alone, as a sidecar container does.
func TestLoad_EnvOnlyStorage(t *testing.T) {
	dir := t.TempDir()
	common := map[string]string{
		"HOARD_SITE":               "pg",
		"HOARD_BACKUP_LOCATION":    "/var/lib/hoard",
		"HOARD_PG_URI":             "host=127.0.0.1 user=replicator",
		"HOARD_ACTIVE_BACKUP_MODE": "walreceiver",
		"HOARD_SLOT":               "hoard",
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want ObjectStorage
	}{
		{"OKLocal", map[string]string{"HOARD_STORAGE_TYPE": "local", "HOARD_LOCAL_DIRECTORY": "/archive"},
			ObjectStorage{Config: storage.Config{Type: storage.TypeLocal, Directory: "/archive"}}},
		{"OKS3", map[string]string{
			"HOARD_STORAGE_TYPE": "s3", "HOARD_S3_REGION": "eu-west-1", "HOARD_S3_BUCKET_NAME": "backups",
			"HOARD_S3_HOST": "minio", "HOARD_S3_PORT": "9000", "HOARD_S3_ACCESS_KEY_ID": "AKID",
			"HOARD_S3_SECRET_ACCESS_KEY_FILE": writeFile(t, dir, "s3secret", "s3 secret\n\n"),
			"HOARD_S3_ADDRESSING_STYLE":       "path", "HOARD_STORAGE_PREFIX": "clusters",
		}, ObjectStorage{Config: storage.Config{Type: storage.TypeS3, Region: "eu-west-1", BucketName: "backups", Host: "minio", Port: 9000,
			AccessKeyID: "AKID", SecretAccessKey: "s3 secret\n", AddressingStyle: "path", Prefix: "clusters"}}},
		{"OKAzure", map[string]string{
			"HOARD_STORAGE_TYPE": "azure", "HOARD_AZURE_ACCOUNT_NAME": "acct", "HOARD_AZURE_BUCKET_NAME": "container",
			"HOARD_AZURE_ACCOUNT_KEY_FILE": writeFile(t, dir, "azkey", "a2V5\n"),
		}, ObjectStorage{Config: storage.Config{Type: storage.TypeAzure, AccountName: "acct", BucketName: "container", AccountKey: "a2V5", IsSecure: true}}},
		{"OKGoogle", map[string]string{
			"HOARD_STORAGE_TYPE": "google", "HOARD_GCS_BUCKET_NAME": "b", "HOARD_GCS_PROJECT_ID": "p",
			"HOARD_GCS_CREDENTIALS": `{"type":"service_account"}`,
		}, ObjectStorage{Config: storage.Config{Type: storage.TypeGoogle, BucketName: "b", ProjectID: "p", CredentialsJSON: []byte(`{"type":"service_account"}`)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range common {
				env[k] = v
			}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := Load("", mapEnv(env))
			if err != nil {
				t.Fatal(err)
			}
			s := mustSite(t, c, "pg")
			if diff := cmp.Diff(tc.want, s.ObjectStorage); diff != "" {
				t.Errorf("object_storage (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]Node{{ConnStr: "host=127.0.0.1 user=replicator", Slot: "hoard"}}, s.Nodes); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
			if s.ActiveBackupMode != ModeWALReceiver || s.Prefix != "pg" {
				t.Errorf("mode %q prefix %q", s.ActiveBackupMode, s.Prefix)
			}
			if got, want := c.Source("backup_sites.pg.object_storage"), "env HOARD_STORAGE_TYPE"; got != want {
				t.Errorf("Source(object_storage) = %q, want %q", got, want)
			}
		})
	}
	t.Run("OKScheduleAndRetention", func(t *testing.T) {
		c, err := Load("", mapEnv(map[string]string{
			"HOARD_BACKUP_LOCATION": "/b", "HOARD_BASEBACKUP_HOUR": "3", "HOARD_BASEBACKUP_MINUTE": "30",
			"HOARD_BASEBACKUP_COUNT_MIN": "1", "HOARD_BASEBACKUP_AGE_DAYS_MAX": "14", "HOARD_WAL_PARTIAL_UPLOAD_INTERVAL": "60",
			"HOARD_RESTORE_TEST_INTERVAL_HOURS": "168", "HOARD_BASEBACKUP_INTERVAL_HOURS": "null",
			"HOARD_WAL_RECEIVER_TIMEOUT": "150",
		}))
		if err != nil {
			t.Fatal(err)
		}
		s := mustSite(t, c, DefaultSite)
		if h, m, ok := s.BasebackupAnchor(); !ok || h != 3 || m != 30 {
			t.Errorf("anchor = %d:%d %v", h, m, ok)
		}
		if age, _ := s.BasebackupMaxAge(); age != 14*24*time.Hour || s.BasebackupCountMin != 1 {
			t.Errorf("age %v count_min %d", age, s.BasebackupCountMin)
		}
		if _, ok := s.BasebackupInterval(); ok {
			t.Error("interval null: want no schedule")
		}
		if iv, _ := s.RestoreTestInterval(); iv != 168*time.Hour || s.WALPartialUploadInterval != time.Minute {
			t.Errorf("restore test %v partial %v", iv, s.WALPartialUploadInterval)
		}
		if s.WALReceiverTimeout != 150*time.Second {
			t.Errorf("receiver timeout %v, want 2m30s", s.WALReceiverTimeout)
		}
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"ErrTypeMismatch", map[string]string{"HOARD_STORAGE_TYPE": "local", "HOARD_LOCAL_DIRECTORY": "/a", "HOARD_S3_REGION": "r"},
			"HOARD_S3_REGION: applies to s3 storage, but the storage type is local: set HOARD_STORAGE_TYPE=s3"},
		{"ErrNoType", map[string]string{"HOARD_AZURE_ACCOUNT_NAME": "a"},
			"HOARD_AZURE_ACCOUNT_NAME: applies to azure storage, but the storage type is not set"},
		{"ErrUnknownType", map[string]string{"HOARD_STORAGE_TYPE": "ftp"}, `HOARD_STORAGE_TYPE: unknown storage type "ftp"`},
		{"ErrSFTPAuth", map[string]string{"HOARD_STORAGE_TYPE": "sftp", "HOARD_SFTP_SERVER": "s", "HOARD_SFTP_USERNAME": "u"}, "backup_sites.default.object_storage.password: password or private_key required"},
		{"ErrSwiftRequired", map[string]string{"HOARD_STORAGE_TYPE": "swift", "HOARD_SWIFT_USER": "u"}, "backup_sites.default.object_storage.auth_url: required for swift storage"},
		{"ErrURLAndType", map[string]string{"HOARD_STORAGE_TYPE": "s3", "HOARD_STORAGE_URL": "s3://b"}, "HOARD_STORAGE_TYPE: set either"},
		{"ErrPort", map[string]string{"HOARD_STORAGE_TYPE": "s3", "HOARD_S3_PORT": "ninety"}, `HOARD_S3_PORT: want integer, got "ninety"`},
		{"ErrBool", map[string]string{"HOARD_STORAGE_TYPE": "s3", "HOARD_S3_IS_SECURE": "yes please"}, `HOARD_S3_IS_SECURE: want true or false`},
		{"ErrCredentials", map[string]string{"HOARD_STORAGE_TYPE": "google", "HOARD_GCS_CREDENTIALS": "{"}, "HOARD_GCS_CREDENTIALS: want a JSON object"},
		{"ErrS3Required", map[string]string{"HOARD_STORAGE_TYPE": "s3"}, "backup_sites.default.object_storage.region: required for s3 storage"},
		{"ErrHour", map[string]string{"HOARD_BASEBACKUP_HOUR": "three", "HOARD_BASEBACKUP_MINUTE": "0"}, `HOARD_BASEBACKUP_HOUR: want integer or null, got "three"`},
		{"ErrPartial", map[string]string{"HOARD_WAL_PARTIAL_UPLOAD_INTERVAL": "-1"}, `HOARD_WAL_PARTIAL_UPLOAD_INTERVAL: want a number of seconds`},
		{"ErrReceiverTimeout", map[string]string{"HOARD_WAL_RECEIVER_TIMEOUT": "0"}, `wal_receiver_timeout: must be positive, got 0`},
		{"ErrSecretFile", map[string]string{"HOARD_STORAGE_TYPE": "azure", "HOARD_AZURE_ACCOUNT_KEY_FILE": "/nonexistent/k"}, "HOARD_AZURE_ACCOUNT_KEY_FILE: open /nonexistent/k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"HOARD_BACKUP_LOCATION": "/b"}
			for k, v := range tc.env {
				env[k] = v
			}
			_, err := Load("", mapEnv(env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// fileOnly are the keys no HOARD_* variable sets, by choice: PGHoard's
// compatibility keys and tuning that a configuration built from the
// environment leaves at its default. Keys inside an optional object
// (statsd) have none either (TestSchema), and object_storage keys have one
// per storage type.
var fileOnly = []string{
	"compression.thread_count", "deleter_event_get_timeout", "graceful_shutdown_compression_timeout",
	"graceful_shutdown_upload_timeout", "hash_algorithm", "path_prefix", "pg_basebackup_path", "pg_receivexlog_path",
	"restore_prefetch", "restore_process_count", "syslog", "syslog_address", "syslog_facility", "tar_executable",
	"transfer.thread_count", "upload_retries_warning_limit",
	"backup_sites.<site>.active", "backup_sites.<site>.basebackup_chunk_size", "backup_sites.<site>.basebackup_chunks_in_progress",
	"backup_sites.<site>.basebackup_compression_threads", "backup_sites.<site>.basebackup_delta_mode_chunk_size",
	"backup_sites.<site>.basebackup_delta_mode_max_retries", "backup_sites.<site>.basebackup_delta_mode_min_delta_file_size",
	"backup_sites.<site>.basebackup_threads", "backup_sites.<site>.moved_from", "backup_sites.<site>.pg_basebackup_path",
	"backup_sites.<site>.pg_receivexlog.disk_space_check_interval",
	"backup_sites.<site>.pg_receivexlog.min_disk_free_bytes", "backup_sites.<site>.pg_receivexlog.resume_multiplier",
	"backup_sites.<site>.pg_receivexlog_path", "backup_sites.<site>.pg_version", "backup_sites.<site>.prefix",
	"backup_sites.<site>.stream_compression", "backup_sites.<site>.unencrypted_objects_before",
}

// TestEnvVars_EveryKey checks that whether a key has a HOARD_* variable is
// decided, not forgotten: every key that holds a value has one (its row's
// envDoc) or is listed in fileOnly, and fileOnly lists only keys without one.
func TestEnvVars_EveryKey(t *testing.T) {
	env, visited := map[string]bool{}, map[string]bool{}
	for _, k := range Keys() {
		env[k.Path] = k.Env != ""
	}
	walk("", globalKeys, reflect.ValueOf(New()).Elem(), false, func(p string, k *key, f reflect.Value) bool {
		fill(k, f)
		if k.keys != nil { // an object: its keys, but none of an optional one's (not a <site>)
			return f.Kind() != reflect.Pointer || strings.HasSuffix(p, ">")
		}
		visited[p] = true
		switch listed := slices.Contains(fileOnly, p); {
		case !env[p] && !listed:
			t.Errorf("%s: no HOARD_* variable: give its row an envDoc, or list it in fileOnly when only the file sets it", p)
		case env[p] && listed:
			t.Errorf("%s: listed in fileOnly, but has a variable", p)
		}
		return false
	})
	for _, p := range fileOnly {
		if !visited[p] {
			t.Errorf("fileOnly lists %s, which is not a key", p)
		}
	}
}

// TestLoad_EnvErrNotFinite: strconv.ParseFloat reads "nan", "inf" and
// "infinity"; none is a number of hours, days or seconds. NaN passed every
// range check (each comparison with it is false), so
// HOARD_BASEBACKUP_AGE_DAYS_MAX=nan silently meant no age limit.
func TestLoad_EnvErrNotFinite(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"HOARD_BASEBACKUP_AGE_DAYS_MAX", "nan"},
		{"HOARD_BASEBACKUP_INTERVAL_HOURS", "NaN"},
		{"HOARD_BASEBACKUP_INTERVAL_HOURS", "inf"},
		{"HOARD_RESTORE_TEST_INTERVAL_HOURS", "+Infinity"},
		{"HOARD_WAL_PARTIAL_UPLOAD_INTERVAL", "nan"},
		{"HOARD_WAL_STORED_LAG_ALERT_SECONDS", "NaN"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := Load("", mapEnv(map[string]string{"HOARD_BACKUP_LOCATION": "/var/lib/hoard", tc.name: tc.value}))
			if err == nil {
				t.Fatal("loaded")
			}
			if want := fmt.Sprintf("%s: want ", tc.name); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		})
	}
}

// TestUnknownEnv: a misspelt HOARD_* variable is ignored, as an unknown key
// is, but not silently: HOARD_BASEBACKUP_CONT=30 kept basebackup_count at
// its default, 2, and retention deleted the other 28 backups.
func TestUnknownEnv(t *testing.T) {
	environ := []string{
		"PATH=/bin", "HOARD_BASEBACKUP_CONT=30", "HOARD_SITE=pg", "HOARD_ENCRYPTION_PUBLIC_KEY_FILE=/k",
		"HOARD_WEBSERVER_USERNAME_FILE=/u", "HOARD_ENCRYPTION_KEYID=k", "HOARD_LOG_LEVEL=debug", "HOARD_S3_REGION=r",
		"HOARD_XYZZY=1", "HOARD_PG_URI_FILE=/uri", "hoard_slot=x",
	}
	got := UnknownEnv(environ, []string{"HOARD_LOG_LEVEL"})
	want := []string{
		`HOARD_BASEBACKUP_CONT: unknown variable (did you mean HOARD_BASEBACKUP_COUNT?)`,
		`HOARD_WEBSERVER_USERNAME_FILE: unknown variable (HOARD_WEBSERVER_USERNAME is read from the variable itself, not from a file)`,
		`HOARD_ENCRYPTION_KEYID: unknown variable (did you mean HOARD_ENCRYPTION_KEY_ID?)`,
		`HOARD_XYZZY: unknown variable`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UnknownEnv (-want +got):\n%s", diff)
	}
}

// TestLoad_EnvFileSource: a value read from the file NAME_FILE names
// (a mounted Secret) has NAME_FILE as its source in config show, the
// variable that is set, not NAME, which is not: docs/kubernetes.md sends
// the operator to config show to see where each value came from.
func TestLoad_EnvFileSource(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"HOARD_BACKUP_LOCATION":            "/var/lib/hoard",
		"HOARD_STORAGE_TYPE":               "s3",
		"HOARD_S3_REGION":                  "eu-west-1",
		"HOARD_S3_BUCKET_NAME":             "b",
		"HOARD_S3_SECRET_ACCESS_KEY_FILE":  writeFile(t, dir, "s3secret", "s3 secret\n"),
		"HOARD_S3_ACCESS_KEY_ID":           "AKIA",
		"HOARD_ENCRYPTION_KEY_ID":          "k1",
		"HOARD_ENCRYPTION_PUBLIC_KEY_FILE": writeFile(t, dir, "pub.pem", "PUBLIC PEM\n"),
		"HOARD_ENCRYPTION_PRIVATE_KEY":     "PRIVATE PEM",
		"HOARD_PG_URI_FILE":                writeFile(t, dir, "uri", "postgres://rep:pw@db/postgres\n"),
	}
	c, err := Load("", mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"backup_sites.default.object_storage.aws_secret_access_key": "env HOARD_S3_SECRET_ACCESS_KEY_FILE",
		"backup_sites.default.object_storage.aws_access_key_id":     "env HOARD_S3_ACCESS_KEY_ID",
		"backup_sites.default.encryption_keys.k1.public":            "env HOARD_ENCRYPTION_PUBLIC_KEY_FILE",
		"backup_sites.default.encryption_keys.k1.private":           "env HOARD_ENCRYPTION_PRIVATE_KEY",
		"backup_sites.default.nodes":                                "env HOARD_PG_URI_FILE",
	} {
		if got := c.Source(path); got != want {
			t.Errorf("Source(%s) = %q, want %q", path, got, want)
		}
	}
}
