package command

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/verify"
)

// TestVerify_ErrPublicKeyOnly: verify in a site that holds only public
// keys (the daemon's or sidecar's configuration, as create-keys
// --pem-dir and docs/kubernetes.md set it up) exits 2 before it reads
// anything, naming where the private key goes. It read on and called
// every encrypted backup "broken" (exit 1), which they are not: only
// this configuration cannot decrypt them.
func TestVerify_ErrPublicKeyOnly(t *testing.T) {
	pair := checkKeyPair(t)
	t.Run("ErrEnvironment", func(t *testing.T) {
		dir := t.TempDir()
		for k, v := range map[string]string{
			"HOARD_CONFIG": "", "PGHOARD_CONFIG": "", "HOARD_SITE": "",
			"HOARD_BACKUP_LOCATION": filepath.Join(dir, "state"),
			"HOARD_STORAGE_TYPE":    "local", "HOARD_LOCAL_DIRECTORY": filepath.Join(dir, "archive"),
			"HOARD_ENCRYPTION_KEY_ID": "k1", "HOARD_ENCRYPTION_PUBLIC_KEY": pair.pub,
		} {
			t.Setenv(k, v)
			if v == "" {
				os.Unsetenv(k)
			}
		}
		msg, code, _ := runLogged("verify")
		if want := "HOARD_ENCRYPTION_PRIVATE_KEY_FILE"; code != ExitUsage || !strings.Contains(msg, want) {
			t.Errorf("verify = exit %d, %q; want exit %d naming %s", code, msg, ExitUsage, want)
		}
	})
	t.Run("ErrFile", func(t *testing.T) {
		cfg, dir := localSiteConfig(t, "archive")
		body := `{"backup_location": "` + dir + `", "backup_sites": {"default": {"object_storage": {"storage_type": "local", "directory": "` +
			filepath.Join(dir, "archive") + `"}, "encryption_key_id": "k1", "encryption_keys": {"k1": {"public": ` + jsonString(t, pair.pub) + `}}}}}`
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"verify"}, {"verify", "--restore"}} {
			msg, code, _ := runLogged(append([]string{"--config", cfg}, args...)...)
			if want := "encryption_keys.k1.private"; code != ExitUsage || !strings.Contains(msg, want) {
				t.Errorf("%v = exit %d, %q; want exit %d naming %s", args, code, msg, ExitUsage, want)
			}
		}
	})
}

// jsonString is s as a JSON string.
func jsonString(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVerify_RestoreTestStorageFailed: a test restore the storage failed
// (verify.RestoreTestResult.StorageFailed) prints NOT RUN, not FAILED,
// and hoard verify --restore exits 1 with the error as RestoreTest words
// it, as verify does for an object the storage failed to send: no
// advice to restore again with overwrite.
func TestVerify_RestoreTestStorageFailed(t *testing.T) {
	var out strings.Builder
	msg := "restore test could not be run: the storage failed, and nothing was found wrong with the backup " +
		"(run the test again once the storage answers): open site/basebackup/b1: 503"
	writeRestoreTest(&out, &verify.RestoreTestResult{StorageFailed: true, Error: msg})
	if got := out.String(); !strings.Contains(got, "restore test NOT RUN (the storage failed)") || strings.Contains(got, "FAILED") ||
		!strings.Contains(got, "error: "+msg) {
		t.Errorf("printed:\n%s", got)
	}
	err := restoreError(errors.New(msg), nil)
	if code := ExitCode(err); code != ExitFailure || ErrorMessage(err) != msg {
		t.Errorf("exit %d, %q; want %d, %q", code, ErrorMessage(err), ExitFailure, msg)
	}
}
