package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// secretVolume lays dir out as Kubernetes mounts a Secret: the files in
// a timestamped directory, ..data a link to it, and each name a link
// through ..data.
func secretVolume(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_12_06_10_00_00.000000001")
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		writeFile(t, ts, name, text)
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestLoad_KeysDir: HOARD_ENCRYPTION_KEYS_DIR (encryption_keys_dir)
// names a directory of <key-id>.public.pem and <key-id>.private.pem files,
// as create-keys --pem-dir writes them and Kubernetes mounts a Secret, and
// adds each to encryption_keys: a configuration from the environment
// alone holds the old keys after a rotation. A stray file, a missing
// directory and a key the variables set to another text are problems.
func TestLoad_KeysDir(t *testing.T) {
	keys := map[string]string{
		"key1.public.pem": "PUBLIC 1\n", "key1.private.pem": "PRIVATE 1\n",
		"key2.public.pem": "PUBLIC 2\n", "key2.private.pem": "PRIVATE 2\n",
	}
	env := func(dir string, more ...string) func(string) string {
		m := map[string]string{"HOARD_STORAGE_TYPE": "local", "HOARD_LOCAL_DIRECTORY": "/d", "HOARD_BACKUP_LOCATION": "/b",
			"HOARD_ENCRYPTION_KEY_ID": "key2", "HOARD_ENCRYPTION_KEYS_DIR": dir}
		for i := 0; i+1 < len(more); i += 2 {
			m[more[i]] = more[i+1]
		}
		return mapEnv(m)
	}
	t.Run("OK", func(t *testing.T) {
		dir := secretVolume(t, keys)
		c, err := Load("", env(dir))
		if err != nil {
			t.Fatal(err)
		}
		s := mustSite(t, c, "")
		want := map[string]EncryptionKey{"key1": {Public: "PUBLIC 1\n", Private: "PRIVATE 1\n"}, "key2": {Public: "PUBLIC 2\n", Private: "PRIVATE 2\n"}}
		if diff := cmp.Diff(want, s.EncryptionKeys); diff != "" {
			t.Errorf("encryption_keys (-want +got):\n%s", diff)
		}
		if got, want := c.Source("backup_sites.default.encryption_keys.key1.private"), "key file "+filepath.Join(dir, "key1.private.pem"); got != want {
			t.Errorf("source %q, want %q", got, want)
		}
		if got, want := c.Source("backup_sites.default.encryption_keys_dir"), "env HOARD_ENCRYPTION_KEYS_DIR"; got != want {
			t.Errorf("source %q, want %q", got, want)
		}
	})
	t.Run("OKPublicOnly", func(t *testing.T) {
		// The daemon's: public halves only.
		c, err := Load("", env(secretVolume(t, map[string]string{"key1.public.pem": "PUBLIC 1", "key2.public.pem": "PUBLIC 2"})))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]EncryptionKey{"key1": {Public: "PUBLIC 1"}, "key2": {Public: "PUBLIC 2"}}
		if diff := cmp.Diff(want, mustSite(t, c, "").EncryptionKeys); diff != "" {
			t.Errorf("encryption_keys (-want +got):\n%s", diff)
		}
	})
	t.Run("OKSameAsVariable", func(t *testing.T) {
		// The variable and the directory give the same key (one
		// trailing newline aside): no conflict.
		c, err := Load("", env(secretVolume(t, keys), "HOARD_ENCRYPTION_PUBLIC_KEY", "PUBLIC 2"))
		if err != nil {
			t.Fatal(err)
		}
		if got := mustSite(t, c, "").EncryptionKeys["key2"].Public; strings.TrimSpace(got) != "PUBLIC 2" {
			t.Errorf("key2's public key %q", got)
		}
	})
	t.Run("OKFile", func(t *testing.T) {
		dir := secretVolume(t, map[string]string{"key1.private.pem": "PRIVATE 1"})
		c, err := Parse("hoard.json", []byte(`{"backup_sites": {"s": {"object_storage": {"storage_type": "local", "directory": "/d"},
			"encryption_key_id": "key2", "encryption_keys": {"key2": {"public": "PUBLIC 2"}}, "encryption_keys_dir": "`+dir+`"}}}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]EncryptionKey{"key1": {Private: "PRIVATE 1"}, "key2": {Public: "PUBLIC 2"}}
		if diff := cmp.Diff(want, mustSite(t, c, "s").EncryptionKeys); diff != "" {
			t.Errorf("encryption_keys (-want +got):\n%s", diff)
		}
	})
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		more []string
		want string
	}{
		{"ErrMissing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "keys") }, nil,
			"backup_sites.default.encryption_keys_dir: open "},
		{"ErrStrayFile", func(t *testing.T) string {
			return secretVolume(t, map[string]string{"key2.public.pem": "P", "key1.pub.pem": "P"})
		}, nil, "key1.pub.pem: not named <key-id>.public.pem or <key-id>.private.pem"},
		{"ErrConflict", func(t *testing.T) string { return secretVolume(t, keys) }, []string{"HOARD_ENCRYPTION_PUBLIC_KEY", "OTHER"},
			"backup_sites.default.encryption_keys.key2.public: HOARD_ENCRYPTION_PUBLIC_KEY and"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("", env(tc.dir(t), tc.more...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
