package config

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

func TestKeys(t *testing.T) {
	keys := Keys()
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.Path] {
			t.Errorf("%s listed twice", k.Path)
		}
		seen[k.Path] = true
		if k.Doc == "" {
			t.Errorf("%s: no doc in the schema", k.Path)
		}
		if k.Type == "" {
			t.Errorf("%s: no type", k.Path)
		}
	}
	// Every variable but HOARD_SITE names a key of the registry.
	for _, ev := range EnvVars {
		if ev.Key == "" {
			continue
		}
		p := ev.Key
		if ev.Site {
			p = "backup_sites.<site>." + p
		}
		if !seen[p] {
			t.Errorf("%s overrides %s, which is not a key", ev.Name, p)
		}
	}
	byPath := map[string]KeyDoc{}
	for _, k := range keys {
		byPath[k.Path] = k
	}
	for path, want := range map[string]KeyDoc{
		"http_port":                            {Type: "integer", Default: "16000", Env: "HOARD_HTTP_PORT"},
		"backup_sites.<site>.basebackup_count": {Type: "integer or null", Default: "2", Env: "HOARD_BASEBACKUP_COUNT"},
		"backup_sites.<site>.object_storage.aws_secret_access_key":     {Type: "string", Env: "HOARD_S3_SECRET_ACCESS_KEY", Secret: true},
		"backup_sites.<site>.object_storage.bucket_name":               {Type: "string", Env: "HOARD_S3_BUCKET_NAME, HOARD_GCS_BUCKET_NAME, HOARD_AZURE_BUCKET_NAME"},
		"compression.thread_count":                                     {Type: "integer", Default: "CPU count + 1"},
		"backup_sites.<site>.pg_receivexlog.disk_space_check_interval": {Type: "seconds", Default: "10"},
	} {
		got := byPath[path]
		if got.Type != want.Type || got.Default != want.Default || got.Secret != want.Secret {
			t.Errorf("%s = %+v, want type %q default %q secret %v", path, got, want.Type, want.Default, want.Secret)
		}
		if got.Env != want.Env {
			t.Errorf("%s: env %q, want %q", path, got.Env, want.Env)
		}
	}
	if got := byPath["backup_sites.<site>.object_storage.bucket_name"].Storage; strings.Join(got, ",") != "s3,google,azure" {
		t.Errorf("bucket_name storage types = %v", got)
	}
}

func TestConfig_Values(t *testing.T) {
	dir := t.TempDir()
	c, err := Load("", mapEnv(map[string]string{
		"HOARD_BACKUP_LOCATION":             "/var/lib/hoard",
		"HOARD_STORAGE_TYPE":                "s3",
		"HOARD_S3_REGION":                   "r",
		"HOARD_S3_BUCKET_NAME":              "b",
		"HOARD_S3_ACCESS_KEY_ID":            "AKID",
		"HOARD_S3_SECRET_ACCESS_KEY":        "s3cr3t",
		"HOARD_PG_URI":                      "postgres://rep:pw@db/postgres",
		"HOARD_WEBSERVER_USERNAME":          "u",
		"HOARD_WEBSERVER_PASSWORD":          "webpw",
		"HOARD_ENCRYPTION_KEY_ID":           "k1",
		"HOARD_ENCRYPTION_PUBLIC_KEY":       "PUBLIC",
		"HOARD_ENCRYPTION_PRIVATE_KEY_FILE": writeFile(t, dir, "priv", "PRIVATE KEY\n"),
	}))
	if err != nil {
		t.Fatal(err)
	}
	vals := c.Values()
	b, err := json.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cr3t", "webpw", "PRIVATE KEY", ":pw@"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("Values shows %q", secret)
		}
	}
	got := map[string]Value{}
	for _, v := range vals {
		got[v.Path] = v
	}
	for path, want := range map[string]Value{
		"backup_location":               {Value: "/var/lib/hoard", Source: "env HOARD_BACKUP_LOCATION"},
		"http_port":                     {Value: 16000, Source: "default"},
		"webserver_password":            {Value: "xxxxx", Source: "env HOARD_WEBSERVER_PASSWORD"},
		"backup_sites.default.nodes[0]": {Value: "postgres://rep:xxxxx@db/postgres", Source: "env HOARD_PG_URI"},
		"backup_sites.default.object_storage.storage_type":          {Value: "s3", Source: "env HOARD_STORAGE_TYPE"},
		"backup_sites.default.object_storage.aws_secret_access_key": {Value: "xxxxx", Source: "env HOARD_S3_SECRET_ACCESS_KEY"},
		"backup_sites.default.encryption_keys.k1.private":           {Value: "xxxxx", Source: "env HOARD_ENCRYPTION_PRIVATE_KEY_FILE"},
		"backup_sites.default.encryption_keys.k1.public":            {Value: "PUBLIC", Source: "env HOARD_ENCRYPTION_PUBLIC_KEY"},
		"backup_sites.default.basebackup_count":                     {Value: 2, Source: "default"},
		"statsd":                                                    {Value: nil, Source: "default"},
	} {
		v, ok := got[path]
		if !ok {
			t.Errorf("%s missing", path)
			continue
		}
		if v.Value != want.Value || v.Source != want.Source {
			t.Errorf("%s = %#v from %q, want %#v from %q", path, v.Value, v.Source, want.Value, want.Source)
		}
	}
	if _, ok := got["backup_sites.default.object_storage.account_key"]; ok {
		t.Error("s3 storage shows azure keys")
	}
}

// TestConfig_ValuesEveryKey checks that `hoard config show` prints every
// key of the reference: each key of Keys, with a site, a key pair and every
// optional object set, appears in Values (an object through its keys,
// nodes as nodes[0]), for every storage type and url.
func TestConfig_ValuesEveryKey(t *testing.T) {
	for _, typ := range append(slices.Clone(storage.Types), StorageURL) {
		storageKey := `"storage_type": "` + typ + `"`
		if typ == StorageURL {
			storageKey = `"url": "mem://"`
		}
		data := `{"statsd": {}, "pushgateway": {}, "prometheus": {}, "backup_sites": {"s": {
			"encryption_keys": {"k": {}}, "object_storage": {` + storageKey + `}}}}`
		root, err := decodeJSON([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		c := New()
		d := &decoder{c: c}
		d.object("", root, globalKeys, reflect.ValueOf(c).Elem()) // not validated: Values shows any config
		if d.ps != nil || d.warnings != nil {
			t.Fatalf("%s: %v %v", typ, d.ps, d.warnings)
		}
		c.finish("/")
		shown := map[string]bool{}
		for _, v := range c.Values() {
			for p := v.Path; p != ""; p = parentPath(p) {
				shown[p] = true
			}
		}
		r := strings.NewReplacer(sitePlaceholder, "s", keyPlaceholder, "k")
		for _, k := range Keys() {
			p := r.Replace(k.Path)
			if k.Storage != nil && !slices.Contains(k.Storage, typ) || typ == StorageURL && p == "backup_sites.s.object_storage.storage_type" {
				continue
			}
			if !shown[p] {
				t.Errorf("%s storage: config show does not print %s", typ, p)
			}
		}
	}
}
