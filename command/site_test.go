package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/storage"
)

// storageConfig is what openStore gives storage.Open for a site's
// object_storage.
func storageConfig(t *testing.T, objectStorage string) storage.Config {
	t.Helper()
	js := `{"backup_location": "/var/lib/hoard", "backup_sites": {"s": {}}}`
	if objectStorage != "" {
		js = `{"backup_location": "/var/lib/hoard", "backup_sites": {"s": {"object_storage": ` + objectStorage + `}}}`
	}
	cfg := parseTestConfig(t, js)
	return cfg.BackupSites["s"].ObjectStorage.StorageConfig()
}

func TestObjectStorage_StorageConfig(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name, storage string
		want          storage.Config
	}{
		{"Implicit", "", storage.Config{Type: "local", Directory: "/var/lib/hoard"}},
		{"Local", `{"storage_type": "local", "directory": "/archive", "prefix": "p"}`,
			storage.Config{Type: "local", Directory: "/archive", Prefix: "p"}},
		{"URL", `{"url": "s3://b?region=r", "prefix": "p"}`, storage.Config{URL: "s3://b?region=r", Prefix: "p"}},
		{"S3", `{"storage_type": "s3", "region": "r", "bucket_name": "b", "aws_access_key_id": "id",
			"aws_secret_access_key": "secret", "aws_session_token": "token", "host": "minio", "port": 9000,
			"is_secure": true, "is_verify_tls": true, "cert_path": "/ca.pem", "addressing_style": "virtual",
			"segment_size": 1048576, "encrypted": true, "prefix": "p"}`,
			storage.Config{Type: "s3", Region: "r", BucketName: "b", AccessKeyID: "id", SecretAccessKey: "secret",
				SessionToken: "token", Host: "minio", Port: 9000, IsSecure: true, IsVerifyTLS: &yes, CertPath: "/ca.pem",
				AddressingStyle: "virtual", SegmentSize: 1 << 20, Encrypted: true, Prefix: "p"}},
		// rohmu's default is_verify_tls for s3 is false, for an endpoint
		// of the user's (host): it is passed on, not left to storage's
		// nil (verify).
		{"S3HostDefaults", `{"storage_type": "s3", "region": "r", "bucket_name": "b", "host": "minio", "port": 9000}`,
			storage.Config{Type: "s3", Region: "r", BucketName: "b", Host: "minio", Port: 9000, IsVerifyTLS: &no}},
		// AWS's own endpoints (no host) are always verified: rohmu gives
		// botocore no verify argument there, whatever is_verify_tls says.
		{"S3Defaults", `{"storage_type": "s3", "region": "r", "bucket_name": "b"}`,
			storage.Config{Type: "s3", Region: "r", BucketName: "b"}},
		{"S3AWSVerifyFalse", `{"storage_type": "s3", "region": "r", "bucket_name": "b", "is_verify_tls": false}`,
			storage.Config{Type: "s3", Region: "r", BucketName: "b"}},
		{"Google", `{"storage_type": "google", "project_id": "p", "bucket_name": "b",
			"credentials": {"type": "service_account"}}`,
			storage.Config{Type: "google", ProjectID: "p", BucketName: "b",
				CredentialsJSON: json.RawMessage(`{"type":"service_account"}`)}},
		{"GoogleFile", `{"storage_type": "google", "bucket_name": "b", "credential_file": "/c.json"}`,
			storage.Config{Type: "google", BucketName: "b", CredentialFile: "/c.json"}},
		{"Azure", `{"storage_type": "azure", "account_name": "a", "account_key": "k", "sas_token": "t",
			"bucket_name": "c", "host": "azurite", "port": 10000, "azure_cloud": "china"}`,
			storage.Config{Type: "azure", AccountName: "a", AccountKey: "k", SASToken: "t", BucketName: "c",
				Host: "azurite", Port: 10000, IsSecure: true, AzureCloud: "china"}},
		{"Swift", `{"storage_type": "swift", "user": "u", "key": "k", "auth_url": "https://keystone:5000/v3",
			"auth_version": "3.0", "container_name": "c", "tenant_name": "t", "tenant_id": "ti", "region_name": "r",
			"user_id": "ui", "user_domain_id": "udi", "user_domain_name": "udn", "project_id": "pi", "project_name": "pn",
			"project_domain_id": "pdi", "project_domain_name": "pdn", "service_type": "object-store",
			"endpoint_type": "internalURL", "segment_size": 1073741824, "prefix": "p"}`,
			storage.Config{Type: "swift", User: "u", Key: "k", AuthURL: "https://keystone:5000/v3", AuthVersion: "3.0",
				ContainerName: "c", TenantName: "t", TenantID: "ti", RegionName: "r", UserID: "ui", UserDomainID: "udi",
				UserDomainName: "udn", ProjectID: "pi", ProjectName: "pn", ProjectDomainID: "pdi", ProjectDomainName: "pdn",
				ServiceType: "object-store", EndpointType: "internalURL", SegmentSize: 1 << 30, Prefix: "p"}},
		{"SFTP", `{"storage_type": "sftp", "server": "backup.example.com", "port": 2222, "username": "u", "password": "p",
			"private_key": "/k", "known_hosts_file": "/kh", "directory": "/srv", "prefix": "p"}`,
			storage.Config{Type: "sftp", Server: "backup.example.com", Port: 2222, Username: "u", Password: "p",
				PrivateKey: "/k", KnownHostsFile: "/kh", Directory: "/srv", Prefix: "p"}},
		// rohmu's auth_version default, 2.0, is storage's when unset.
		{"SwiftDefaults", `{"storage_type": "swift", "user": "u", "key": "k", "auth_url": "http://a", "container_name": "c"}`,
			storage.Config{Type: "swift", User: "u", Key: "k", AuthURL: "http://a", ContainerName: "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, storageConfig(t, tc.storage)); diff != "" {
				t.Errorf("storage.Config (-want +got):\n%s", diff)
			}
		})
	}
}

// TestObjectStorage_EveryKey gives each object_storage key of each storage
// type two values and checks that storage.Config tells them apart, so a
// key added to config and not to storage (or spelled differently) fails.
func TestObjectStorage_EveryKey(t *testing.T) {
	// A valid object_storage of each type; keys that must come in pairs are
	// both set, and s3 has a host (is_verify_tls applies to one only) and
	// is_verify_tls true (cert_path needs it). The key under test is given
	// again: the last value wins.
	base := map[string]string{
		storage.TypeLocal:  `"directory": "/archive"`,
		storage.TypeS3:     `"region": "r", "bucket_name": "b", "aws_access_key_id": "id", "aws_secret_access_key": "s", "host": "h", "port": 1, "is_verify_tls": true`,
		storage.TypeGoogle: `"bucket_name": "b"`,
		storage.TypeAzure:  `"account_name": "a", "host": "h", "port": 1`,
		storage.TypeSwift:  `"user": "u", "key": "k", "auth_url": "http://a", "container_name": "c"`,
		storage.TypeSFTP:   `"server": "s", "username": "u", "password": "p"`,
	}
	values := map[string][2]string{
		"string": {`"one"`, `"two"`}, "integer": {"7", "8"}, "boolean": {"true", "false"},
		"JSON object":      {`{"a": 1}`, `{"a": 2}`},
		"addressing_style": {`"virtual"`, `"auto"`}, "azure_cloud": {`"china"`, `"germany"`},
		"auth_version": {`"3.0"`, `"1.0"`}, "service_type": {`"object-store"`, `""`},
		"endpoint_type":        {`"internalURL"`, `"adminURL"`},
		"host_key_fingerprint": {`"SHA256:a"`, `"SHA256:b"`},
	}
	const prefix = "backup_sites.<site>.object_storage."
	n := 0
	for _, k := range config.Keys() {
		name, ok := strings.CutPrefix(k.Path, prefix)
		if !ok {
			continue
		}
		v, ok := values[name]
		if !ok {
			v = values[k.Type]
		}
		for _, typ := range k.Storage {
			if typ == config.StorageURL {
				continue
			}
			obj := `{"storage_type": "` + typ + `", ` + base[typ] + `, "` + name + `": `
			if cmp.Equal(storageConfig(t, obj+v[0]+"}"), storageConfig(t, obj+v[1]+"}")) {
				t.Errorf("object_storage.%s of %s storage does not reach storage.Config", name, typ)
			}
			n++
		}
	}
	if n < 20 {
		t.Errorf("checked %d keys: the schema's object_storage keys were not found", n)
	}
}

// TestLoadConfig_ErrNoConfig: a command run without --config (a newcomer's
// first try, or an archive_command that lost its flag) is told that no file
// was read, not only which HOARD_* setting is missing; with no HOARD_*
// variable either, that no configuration was found at all.
func TestLoadConfig_ErrNoConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"ErrNothing", nil, "no configuration: no --config FILE, no HOARD_CONFIG, and no HOARD_* variables in the environment"},
		{"ErrEnvIncomplete", map[string]string{"HOARD_STORAGE_TYPE": "local"}, "hint: no --config FILE was given (nor HOARD_CONFIG)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearConfigEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			app := App("test")
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "list"}))
			if got := ExitCode(err); got != ExitUsage {
				t.Errorf("hoard list: exit %d (%v), want %d", got, err, ExitUsage)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("hoard list: %v, want it to say %q", err, c.want)
			}
		})
	}
}

// TestOpenStore_LogsSkippedLink: a local store's listings log, once per
// link, each link under the prefix that they pass over, so that an
// operator learns that something in the store is ignored.
func TestOpenStore_LogsSkippedLink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var log bytes.Buffer
	st, err := openStore(ctx, config.ObjectStorage{Config: localConfig(dir)}, storage.RateLimits{}, zerolog.New(&log))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(ctx, "s/xlog/000000010000000000000001", strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "s", "xlog", "planted")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := st.List(ctx, "s/xlog/", func(storage.Object) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"key":"s/xlog/planted"`) || !strings.Contains(lines[0], "out of the storage directory") {
		t.Errorf("log after two listings:\n%s\nwant one warning naming s/xlog/planted, a link out of the storage directory", log.String())
	}
}

// TestOpenSite_EnvOnlySiteName: with no configuration file the HOARD_*
// variables make one site, named HOARD_SITE or "default", and its name is
// in its objects' keys (<name>/xlog/...). --site naming another site does
// not rename it (the daemon, run with the same variables, writes under
// the variables' name): the command fails naming both names, the keys
// each reads, and HOARD_SITE as the fix; wal-fetch, as restore_command
// writes it (--site NAME), stops recovery with it (exit 255) rather than
// read another site's WAL.
func TestOpenSite_EnvOnlySiteName(t *testing.T) {
	store := t.TempDir()
	for _, tc := range []struct {
		name, hoardSite, site string
		want                  []string // nil: exit 0
	}{
		{"OK", "", "", nil},
		{"OKDefault", "", "default", nil},
		{"OKNamed", "prod", "prod", nil},
		{"OKHoardSiteOnly", "prod", "", nil},
		{"ErrNoHoardSite", "", "prod", []string{`--site prod`, `HOARD_SITE`, `"default"`, `"default/"`, `"prod/"`, "HOARD_SITE=prod"}},
		{"ErrHoardSiteDiffers", "staging", "prod", []string{`--site prod`, `HOARD_SITE=staging`, `"staging/"`, `"prod/"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearConfigEnv(t)
			t.Setenv("HOARD_STORAGE_TYPE", "local")
			t.Setenv("HOARD_LOCAL_DIRECTORY", store)
			if tc.hoardSite != "" {
				t.Setenv("HOARD_SITE", tc.hoardSite)
			}
			args := []string{"hoard", "list"}
			if tc.site != "" {
				args = []string{"hoard", "--site", tc.site, "list"}
			}
			app := App("test")
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			err := app.RunContext(context.Background(), OrderArgs(app, args))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("%s: %v", strings.Join(args, " "), err)
				}
				return
			}
			if got := ExitCode(err); got != ExitUsage {
				t.Errorf("%s: exit %d (%v), want %d", strings.Join(args, " "), got, err, ExitUsage)
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %v, want it to say %s", strings.Join(args, " "), err, w)
				}
			}
		})
	}
	t.Run("ErrWALFetch", func(t *testing.T) {
		clearConfigEnv(t)
		t.Setenv("HOARD_STORAGE_TYPE", "local")
		t.Setenv("HOARD_LOCAL_DIRECTORY", store)
		app := App("test")
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		args := []string{"hoard", "wal-fetch", "--site", "prod", "000000010000000000000003", filepath.Join(t.TempDir(), "RECOVERYXLOG")}
		err := PostgresStatus(app, args, app.RunContext(context.Background(), OrderArgs(app, args)))
		if got, want := ExitCode(err), exitWALFatal; got != want {
			t.Errorf("exit %d, want %d (%v)", got, want, err)
		}
		if err == nil || !strings.Contains(err.Error(), "HOARD_SITE=prod") {
			t.Errorf("wal-fetch --site prod: %v, want it to name HOARD_SITE=prod", err)
		}
	})
}

// TestLoadConfig_UnknownEnv: a misspelt HOARD_* variable is a warning with
// the name it misspells, logged and listed by config show; the command
// line's own variables (HOARD_LOG_LEVEL, restore's
// HOARD_PRIMARY_CONNINFO_FILE) and the test harness's are not.
func TestLoadConfig_UnknownEnv(t *testing.T) {
	clearConfigEnv(t)
	file := filepath.Join(t.TempDir(), "hoard.json")
	js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {}}}`, t.TempDir())
	if err := os.WriteFile(file, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"HOARD_BASEBACKUP_CONT": "30", "HOARD_LOG_LEVEL": "info", "HOARD_PRIMARY_CONNINFO_FILE": "/x",
		"HOARD_TEST_STRICT": os.Getenv("HOARD_TEST_STRICT"), "HOARD_CACHE": "/var/cache/hoard",
	} {
		t.Setenv(k, v)
	}
	app := App("test")
	var out, log bytes.Buffer
	app.Writer, app.ErrWriter = &out, &log
	if err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "config", "show", "--json", "--config", file})); err != nil {
		t.Fatal(err)
	}
	var got struct{ Warnings []string }
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"HOARD_BASEBACKUP_CONT: unknown variable (did you mean HOARD_BASEBACKUP_COUNT?)"}
	if diff := cmp.Diff(want, got.Warnings); diff != "" {
		t.Errorf("config show warnings (-want +got):\n%s", diff)
	}
}
