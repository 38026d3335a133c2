package config

import (
	"errors"
	"io/fs"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/storage"
)

// load parses a testdata file with the given environment, failing the test
// on error.
func load(t testing.TB, name string, env map[string]string) *Config {
	t.Helper()
	c, err := Load(filepath.Join("testdata", name), mapEnv(env))
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return c
}

func mapEnv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func mustSite(t testing.TB, c *Config, name string) *Site {
	t.Helper()
	_, s, err := c.Site(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNew(t *testing.T) {
	c := New()
	cpu := runtime.NumCPU()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"http_address", c.HTTPAddress, "127.0.0.1"},
		{"http_port", c.HTTPPort, 16000},
		{"compression.algorithm", c.Compression.Algorithm, "snappy"},
		{"compression.level", c.Compression.Level, 0},
		{"compression.thread_count", c.Compression.ThreadCount, cpu + 1},
		{"transfer.thread_count", c.Transfer.ThreadCount, min(cpu+3, 20)},
		{"restore_process_count", c.RestoreProcessCount, min(cpu+1, 20)},
		{"upload_retries_warning_limit", c.UploadRetriesWarningLimit, 3},
		{"graceful_shutdown_compression_timeout", c.GracefulShutdownCompressionTimeout, 180 * time.Second},
		{"graceful_shutdown_upload_timeout", c.GracefulShutdownUploadTimeout, 300 * time.Second},
		{"hash_algorithm", c.HashAlgorithm, "sha1"},
		{"log_level", c.LogLevel, "INFO"},
		{"json_state_file_path", c.JSONStateFilePath, "/var/lib/pghoard/pghoard_state.json"},
		{"maintenance_mode_file", c.MaintenanceModeFile, "/var/lib/pghoard/maintenance_mode_file"},
		{"tar_executable", c.TarExecutable, "pghoard_gnutaremu"},
		{"syslog_address", c.SyslogAddress, "/dev/log"},
		{"syslog_facility", c.SyslogFacility, "local2"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestLoad_Quickstart(t *testing.T) {
	c := load(t, "quickstart.json", nil)
	name, s, err := c.Site("")
	if err != nil {
		t.Fatal(err)
	}
	if name != "example-site" {
		t.Errorf("site = %q", name)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings = %q", c.Warnings)
	}
	if got, want := s.Nodes[0].ConnString(), "host=127.0.0.1 password=secret port=5432 user=backup"; got != want {
		t.Errorf("ConnString = %q, want %q", got, want)
	}
	if got, want := s.Prefix, "example-site"; got != want {
		t.Errorf("prefix = %q, want %q", got, want)
	}
	if got, want := s.ObjectStorage, (ObjectStorage{Config: storage.Config{Type: storage.TypeLocal, Directory: "./backups"}}); !cmp.Equal(got, want) {
		t.Errorf("object_storage: %s", cmp.Diff(want, got))
	}
	if got, want := c.AlertFileDir, "/var/lib/pghoard"; got != want {
		t.Errorf("alert_file_dir = %q, want %q", got, want)
	}
	if got, want := c.RestorePrefetch, c.Transfer.ThreadCount; got != want {
		t.Errorf("restore_prefetch = %d, want transfer.thread_count %d", got, want)
	}
	// Site defaults.
	if iv, ok := s.BasebackupInterval(); !ok || iv != 24*time.Hour {
		t.Errorf("BasebackupInterval = %v, %v", iv, ok)
	}
	if n, ok := s.BasebackupCountMax(); !ok || n != 2 {
		t.Errorf("BasebackupCountMax = %d, %v", n, ok)
	}
	if _, _, ok := s.BasebackupAnchor(); ok {
		t.Error("BasebackupAnchor set by default")
	}
	if _, ok := s.BasebackupMaxAge(); ok {
		t.Error("BasebackupMaxAge set by default")
	}
	if _, ok := s.RestoreTestInterval(); ok {
		t.Error("RestoreTestInterval set by default")
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"active", s.Active, true},
		{"active_backup_mode", s.ActiveBackupMode, ModePGReceiveXLog},
		{"basebackup_mode", s.BasebackupMode, ""},
		{"basebackup_chunk_size", s.BasebackupChunkSize, int64(256 << 20)},
		{"basebackup_chunks_in_progress", s.BasebackupChunksInProgress, 0},
		{"basebackup_threads", s.BasebackupThreads, runtime.NumCPU()},
		{"basebackup_compression_threads", s.BasebackupCompressionThreads, 0},
		{"basebackup_count_min", s.BasebackupCountMin, 2},
		{"pg_data_directory", s.PGDataDirectory, "/var/lib/postgresql/15/main"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if got, want := c.Source("backup_sites.example-site.nodes"), "file"; got != want {
		t.Errorf("Source(nodes) = %q, want %q", got, want)
	}
	if got, want := c.Source("backup_sites.example-site.basebackup_count"), "default"; got != want {
		t.Errorf("Source(basebackup_count) = %q, want %q", got, want)
	}
}

func TestLoad_PGHoardTestdata(t *testing.T) {
	for _, name := range []string{"pghoard-basebackup.json", "pghoard-basebackup_delta.json", "pghoard-basebackup_with_ts.json"} {
		t.Run(name, func(t *testing.T) {
			c := load(t, name, nil)
			_, s, err := c.Site("")
			if err != nil {
				t.Fatal(err)
			}
			id, k, ok := s.EncryptionKey()
			if !ok || id == "" {
				t.Fatalf("EncryptionKey() = %q, %v", id, ok)
			}
			if !strings.HasPrefix(k.Public, "-----BEGIN PUBLIC KEY-----\n") || !strings.HasPrefix(k.Private, "-----BEGIN PRIVATE KEY-----\n") {
				t.Errorf("key %s not carried as PEM text", id)
			}
			if s.ObjectStorage.Type != storage.TypeLocal || !strings.HasSuffix(s.ObjectStorage.Directory, "/chunks") {
				t.Errorf("object_storage = %+v", s.ObjectStorage)
			}
			if !strings.HasSuffix(s.Prefix, "/"+s.Name) {
				t.Errorf("prefix %q does not end in the site name %q", s.Prefix, s.Name)
			}
			if c.RestoreProcessCount != 2 {
				t.Errorf("restore_process_count = %d", c.RestoreProcessCount)
			}
			// No nodes: one empty node, filled by pgconn from PG*.
			if got := len(s.Nodes); got != 1 || s.Nodes[0].ConnString() != "" {
				t.Errorf("nodes = %v", s.Nodes)
			}
			if len(c.Warnings) != 0 {
				t.Errorf("warnings = %q", c.Warnings)
			}
		})
	}
}

func TestLoad_S3(t *testing.T) {
	c := load(t, "s3.json", nil)
	s := mustSite(t, c, "prod")
	want := ObjectStorage{Config: storage.Config{
		Type: storage.TypeS3, Region: "eu-west-1", BucketName: "pg-backups",
		AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "c2VjcmV0", Prefix: "cluster-a",
		AddressingStyle: "virtual", Encrypted: true,
	}}
	if diff := cmp.Diff(want, s.ObjectStorage); diff != "" {
		t.Errorf("object_storage (-want +got):\n%s", diff)
	}
	if h, m, ok := s.BasebackupAnchor(); !ok || h != 1 || m != 30 {
		t.Errorf("BasebackupAnchor = %d, %d, %v", h, m, ok)
	}
	if iv, _ := s.BasebackupInterval(); iv != 6*time.Hour {
		t.Errorf("BasebackupInterval = %v", iv)
	}
	if age, ok := s.BasebackupMaxAge(); !ok || age != 30*24*time.Hour {
		t.Errorf("BasebackupMaxAge = %v, %v", age, ok)
	}
	if got, want := c.Compression, (Compression{Algorithm: "zstd", Level: 3, ThreadCount: 4}); got != want {
		t.Errorf("compression = %+v", got)
	}
	if got, want := c.RestorePrefetch, 8; got != want {
		t.Errorf("restore_prefetch = %d, want %d (transfer.thread_count)", got, want)
	}
	wantStatsd := &Statsd{Host: "statsd.internal", Port: 8125, Format: "datadog", Tags: map[string]string{"env": "prod", "shard": "7"}}
	if diff := cmp.Diff(wantStatsd, c.Statsd); diff != "" {
		t.Errorf("statsd (-want +got):\n%s", diff)
	}
	if got, want := c.AlertFileDir, "/var/lib/pghoard/alerts"; got != want {
		t.Errorf("alert_file_dir = %q", got)
	}
	if s.PGVersion != 160004 || s.BasebackupMode != BasebackupLocalTar || s.ActiveBackupMode != ModeWALReceiver {
		t.Errorf("site = %+v", s)
	}
}

func TestLoad_Multisite(t *testing.T) {
	c := load(t, "multisite.json", nil)
	if _, _, err := c.Site(""); err == nil || !strings.Contains(err.Error(), "azure, blob, gcs") {
		t.Errorf(`Site("") = %v, want the list of sites`, err)
	}
	if _, _, err := c.Site("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf(`Site("nope") = %v`, err)
	}

	gcs := mustSite(t, c, "gcs")
	if _, ok := gcs.BasebackupInterval(); ok {
		t.Error("basebackup_interval_hours null: want no schedule")
	}
	if _, ok := gcs.BasebackupCountMax(); ok {
		t.Error("basebackup_count null: want unlimited")
	}
	if got, want := gcs.Prefix, "tenants/gcs"; got != want {
		t.Errorf("prefix = %q, want %q", got, want)
	}
	if got, want := string(gcs.ObjectStorage.CredentialsJSON), `{"client_email":"backup@my-project.iam.gserviceaccount.com","type":"service_account"}`; got != want {
		t.Errorf("credentials = %s", got)
	}
	if got, want := gcs.Nodes[0].Redacted(), "postgres://replicator:xxxxx@db2.internal:5433/postgres?sslmode=verify-full"; got != want {
		t.Errorf("Redacted = %q, want %q", got, want)
	}

	az := mustSite(t, c, "azure")
	if !az.ObjectStorage.IsSecure {
		t.Error("azure is_secure defaults to true")
	}
	if got, want := az.Nodes[0], (Node{ConnStr: "host=db3.internal user=replicator", Slot: "pghoard_slot"}); !cmp.Equal(got, want) {
		t.Errorf("node = %#v", got)
	}
	if diff := cmp.Diff([]string{"azure-old"}, az.MovedFrom); diff != "" {
		t.Error(diff)
	}

	blob := mustSite(t, c, "blob")
	if got, want := blob.ObjectStorage, (ObjectStorage{Config: storage.Config{Type: StorageURL, URL: "s3://bucket?region=us-east-1&endpoint=http://minio:9000", Prefix: "blob"}}); !cmp.Equal(got, want) {
		t.Errorf("object_storage = %+v", got)
	}
	if got, want := blob.Nodes[0].Slot, "hoard"; got != want {
		t.Errorf("slot = %q", got)
	}
	if c.Prometheus == nil || c.Prometheus.Tags["team"] != "db" {
		t.Errorf("prometheus = %+v", c.Prometheus)
	}
}

func TestLoad_Warnings(t *testing.T) {
	c := load(t, "unknown-keys.json", nil)
	want := []string{
		`backup_sites.default.basebackup_cnt: unknown key (did you mean "basebackup_count"?)`,
		"backup_sites.default.object_storage.region: unknown key",
		`stats: unknown key (did you mean "statsd"?)`,
	}
	if diff := cmp.Diff(want, c.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestLoad_ErrNotFound(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.json"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestParse_ErrSyntax(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"BadToken", "{\n  \"backup_location\": \"/x\",\n  oops\n}", "cfg.json: line 3, column 3"},
		{"Truncated", "{\n  \"backup_sites\": {", "cfg.json: line 2, column 20"},
		{"Trailing", "{} {}", "data after the top-level value"},
		{"Empty", "", "unexpected end of input"},
		// Windows editors save one; PGHoard's json refuses it too.
		{"BOM", "\ufeff{\"backup_location\": \"/x\", \"backup_sites\": {\"s\": {}}}", "cfg.json: line 1, column 1: invalid JSON: the file starts with a UTF-8 byte order mark (BOM): save it as UTF-8 without one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("cfg.json", []byte(tc.data), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParse_Forms(t *testing.T) {
	data := `{
		"backup_location": "/b",
		"log_level": "warning",
		"graceful_shutdown_upload_timeout": 12.5,
		"restore_prefetch": 0,
		"pushgateway": {"endpoint": "http://pgw:9091", "tags": {"a": true}},
		"backup_sites": {"s1": {
			"moved_from": "old",
			"stream_compression": true,
			"slot": "site_slot",
			"nodes": [{"host": "a"}, {"host": "b", "slot": "own"}],
			"pg_receivexlog": {"disk_space_check_interval": 30, "min_disk_free_bytes": 1000, "resume_multiplier": 2},
			"wal_partial_upload_interval": 15,
			"restore_test_interval_hours": 168,
			"basebackup_age_days_max": 0.5
		}}
	}`
	c, err := Parse("forms.json", []byte(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSite(t, c, "s1")
	if diff := cmp.Diff([]string{"old"}, s.MovedFrom); diff != "" {
		t.Error(diff)
	}
	if got := s.EffectiveBasebackupMode(); got != BasebackupPipe {
		t.Errorf("EffectiveBasebackupMode = %q, want pipe (stream_compression)", got)
	}
	if got, want := []string{s.Nodes[0].Slot, s.Nodes[1].Slot}, []string{"site_slot", "own"}; !cmp.Equal(got, want) {
		t.Errorf("slots = %q, want %q", got, want)
	}
	wantRX := PGReceiveXLog{DiskSpaceCheckInterval: 30 * time.Second, MinDiskFreeBytes: new(int64), ResumeMultiplier: 2}
	*wantRX.MinDiskFreeBytes = 1000
	if diff := cmp.Diff(wantRX, s.PGReceiveXLog); diff != "" {
		t.Errorf("pg_receivexlog (-want +got):\n%s", diff)
	}
	if s.WALPartialUploadInterval != 15*time.Second {
		t.Errorf("wal_partial_upload_interval = %v", s.WALPartialUploadInterval)
	}
	if iv, ok := s.RestoreTestInterval(); !ok || iv != 168*time.Hour {
		t.Errorf("RestoreTestInterval = %v, %v", iv, ok)
	}
	if age, _ := s.BasebackupMaxAge(); age != 12*time.Hour {
		t.Errorf("BasebackupMaxAge = %v", age)
	}
	if c.GracefulShutdownUploadTimeout != 12500*time.Millisecond {
		t.Errorf("graceful_shutdown_upload_timeout = %v", c.GracefulShutdownUploadTimeout)
	}
	if c.RestorePrefetch != 0 {
		t.Errorf("restore_prefetch = %d, want the file's 0", c.RestorePrefetch)
	}
	if diff := cmp.Diff(&Pushgateway{Endpoint: "http://pgw:9091", Job: "pghoard", Tags: map[string]string{"a": "true"}}, c.Pushgateway); diff != "" {
		t.Errorf("pushgateway (-want +got):\n%s", diff)
	}
}

// TestSite_HoursTooLarge: hour and day keys beyond a time.Duration are the
// longest Duration, never a wrapped (negative) one.
func TestSite_HoursTooLarge(t *testing.T) {
	js := `{"backup_location": "/tmp/bl", "backup_sites": {"s": {"basebackup_interval_hours": 1e10,
		"basebackup_incremental_interval_hours": 3e6, "basebackup_age_days_max": 999999, "restore_test_interval_hours": 1e300}}}`
	c, err := Parse("f.json", []byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSite(t, c, "s")
	for name, f := range map[string]func() (time.Duration, bool){
		"basebackup_interval_hours":             s.BasebackupInterval,
		"basebackup_incremental_interval_hours": s.BasebackupIncrementalInterval,
		"basebackup_age_days_max":               s.BasebackupMaxAge,
		"restore_test_interval_hours":           s.RestoreTestInterval,
	} {
		if d, ok := f(); !ok || d != time.Duration(math.MaxInt64) {
			t.Errorf("%s = %v, %v; want %v, true", name, d, ok, time.Duration(math.MaxInt64))
		}
	}
}

// TestParse_DuplicateKeys: a key given twice in one object takes its last
// value, as Python's json (PGHoard) does, but not silently: a template's
// "encryption_key_id": null after the real one turned encryption off, and
// a second backup_sites dropped every site of the first.
func TestParse_DuplicateKeys(t *testing.T) {
	js := `{"backup_location": "/tmp/bl",
		"backup_sites": {"old": {}},
		"backup_sites": {"s": {"encryption_key_id": "k", "encryption_keys": {"k": {"public": "P"}}, "encryption_key_id": null,
			"nodes": [{"host": "a", "host": "b"}]}}}`
	c, err := Parse("f.json", []byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSite(t, c, "s")
	if s.EncryptionKeyID != "" || len(c.BackupSites) != 1 || s.Nodes[0].Params["host"] != "b" {
		t.Errorf("not the last values: encryption_key_id %q, sites %v, host %q", s.EncryptionKeyID, c.SiteNames(), s.Nodes[0].Params["host"])
	}
	want := []string{
		"backup_sites: duplicate key: the last one is used, as PGHoard does",
		"backup_sites.s.encryption_key_id: duplicate key: the last one is used, as PGHoard does",
		"backup_sites.s.nodes[0].host: duplicate key: the last one is used, as PGHoard does",
	}
	if diff := cmp.Diff(want, c.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}
