package command

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// TestSiteCodec_ErrKeyMismatch: a key whose public and private halves
// come from two key pairs (the public key of one pasted beside the
// private key of another, in the file or in the variables) is refused
// when the configuration loads, naming the key id and where each half
// came from, before anything is stored under a public key whose objects
// its private key cannot read. A pair, a public half alone and a private
// half alone load as before.
func TestSiteCodec_ErrKeyMismatch(t *testing.T) {
	a, b := checkKeyPair(t), checkKeyPair(t)
	file := func(t *testing.T, keys map[string]any, id string) string {
		t.Helper()
		clearConfigEnv(t)
		dir := t.TempDir()
		site := map[string]any{"object_storage": storetest.ObjectStorage(storetest.Local(t)), "encryption_keys": keys}
		if id != "" {
			site["encryption_key_id"] = id
		}
		js, err := json.Marshal(map[string]any{"backup_location": filepath.Join(dir, "state"), "backup_sites": map[string]any{"s": site}})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "hoard.json")
		if err := os.WriteFile(p, js, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		keys map[string]any
		id   string
	}{
		{"OKPair", map[string]any{"k1": map[string]any{"public": a.pub, "private": a.priv}}, "k1"},
		{"OKPublicOnly", map[string]any{"k1": map[string]any{"public": a.pub}}, "k1"},
		{"OKPrivateOnly", map[string]any{"k1": map[string]any{"public": a.pub}, "k0": map[string]any{"private": b.priv}}, "k1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, msg := runErr(t, "--config", file(t, tc.keys, tc.id), "list"); code != ExitOK {
				t.Errorf("list: exit %d, %s", code, msg)
			}
		})
	}
	t.Run("ErrFile", func(t *testing.T) {
		// The mismatched key is an old one, not encryption_key_id's:
		// restore and wal-fetch would fail on every object stored under it.
		cfg := file(t, map[string]any{"k1": map[string]any{"public": a.pub, "private": a.priv},
			"k0": map[string]any{"public": a.pub, "private": b.priv}}, "k1")
		for _, cmd := range [][]string{{"list"}, {"wal-push", "--allow-root", "000000010000000000000001"}, {"check"}} {
			code, msg := runErr(t, append([]string{"--config", cfg}, cmd...)...)
			want := "backup_sites.s.encryption_keys.k0: the public and private keys are from different key pairs " +
				"(public from backup_sites.s.encryption_keys.k0.public, private from backup_sites.s.encryption_keys.k0.private)"
			if code != ExitUsage || !strings.Contains(msg, want) {
				t.Errorf("%s: exit %d, %q; want %d and %q", cmd[0], code, msg, ExitUsage, want)
			}
		}
	})
	t.Run("ErrDaemon", func(t *testing.T) {
		// The daemon refuses to start, and a reload (SIGHUP) to such a
		// configuration is refused while the running one is kept,
		// rather than stopping the daemon when the site's archive opens.
		cfg, err := config.Load(file(t, map[string]any{"k1": map[string]any{"public": a.pub, "private": b.priv}}, "k1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = daemonOptions(testCLIContext(), cfg)
		if want := "backup_sites.s.encryption_keys.k1: the public and private keys are from different key pairs"; ExitCode(err) != ExitUsage || !strings.Contains(ErrorMessage(err), want) {
			t.Errorf("daemonOptions: %v (exit %d), want a usage error with %q", err, ExitCode(err), want)
		}
	})
	t.Run("ErrKeysDir", func(t *testing.T) {
		clearConfigEnv(t)
		keys := t.TempDir()
		for name, text := range map[string]string{"k1.public.pem": a.pub, "k1.private.pem": b.priv} {
			if err := os.WriteFile(filepath.Join(keys, name), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range map[string]string{
			"HOARD_STORAGE_TYPE": "local", "HOARD_LOCAL_DIRECTORY": t.TempDir(), "HOARD_BACKUP_LOCATION": t.TempDir(),
			"HOARD_ENCRYPTION_KEY_ID": "k1", "HOARD_ENCRYPTION_KEYS_DIR": keys,
		} {
			t.Setenv(k, v)
		}
		code, msg := runErr(t, "list")
		want := "backup_sites.default.encryption_keys.k1: the public and private keys are from different key pairs " +
			"(public from " + filepath.Join(keys, "k1.public.pem") + ", private from " + filepath.Join(keys, "k1.private.pem") + ")"
		if code != ExitUsage || !strings.Contains(msg, want) {
			t.Errorf("list: exit %d, %q; want %d and %q", code, msg, ExitUsage, want)
		}
	})
	t.Run("ErrEnv", func(t *testing.T) {
		clearConfigEnv(t)
		priv := filepath.Join(t.TempDir(), "k1.private.pem")
		if err := os.WriteFile(priv, []byte(b.priv), 0o600); err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{
			"HOARD_STORAGE_TYPE": "local", "HOARD_LOCAL_DIRECTORY": t.TempDir(), "HOARD_BACKUP_LOCATION": t.TempDir(),
			"HOARD_ENCRYPTION_KEY_ID": "k1", "HOARD_ENCRYPTION_PUBLIC_KEY": a.pub, "HOARD_ENCRYPTION_PRIVATE_KEY_FILE": priv,
		} {
			t.Setenv(k, v)
		}
		code, msg := runErr(t, "list")
		want := "backup_sites.default.encryption_keys.k1: the public and private keys are from different key pairs " +
			"(public from HOARD_ENCRYPTION_PUBLIC_KEY, private from HOARD_ENCRYPTION_PRIVATE_KEY_FILE)"
		if code != ExitUsage || !strings.Contains(msg, want) {
			t.Errorf("list: exit %d, %q; want %d and %q", code, msg, ExitUsage, want)
		}
	})
}
