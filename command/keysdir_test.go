package command

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// TestKeysDir_Rotation: a site configured from the environment alone
// rotates its key with a directory of key files (HOARD_ENCRYPTION_KEYS_DIR,
// as create-keys --pem-dir writes it and a Kubernetes Secret is mounted):
// a backup and WAL stored under key1, then key2 made encryption_key_id
// beside it, and the backup restores and key1's and key2's WAL fetch with
// the variables alone. Without key1's private file the same restore fails
// naming key1: it is the directory's old key that reads the old backup.
func TestKeysDir_Rotation(t *testing.T) {
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Debian: true})
	clearConfigEnv(t)
	keys, store := t.TempDir(), t.TempDir()
	for k, v := range map[string]string{
		"HOARD_STORAGE_TYPE": "local", "HOARD_LOCAL_DIRECTORY": store, "HOARD_BACKUP_LOCATION": t.TempDir(),
		"HOARD_PG_URI": c.ConnString("postgres"), "HOARD_ACTIVE_BACKUP_MODE": "archive_command", "HOARD_BASEBACKUP_MODE": "basic",
		"HOARD_HTTP_PORT": itoa(testio.FreePort(t)), "HOARD_ENCRYPTION_KEYS_DIR": keys, "HOARD_ENCRYPTION_KEY_ID": "key1",
	} {
		t.Setenv(k, v)
	}
	mustRun := func(args ...string) string {
		t.Helper()
		code, out := runOutput(t, args...)
		if code != ExitOK {
			t.Fatalf("%s: exit %d:\n%s", args[0], code, out)
		}
		return out
	}
	// pushArchived switches to a new segment, waits until the server
	// archived it, and pushes every segment not pushed yet: what
	// archive_command = 'hoard wal-push %p' would have done.
	pushed := map[string]bool{}
	pushArchived := func() []string {
		t.Helper()
		c.SwitchArchived(t, walDir)
		var names []string
		for _, name := range pgtest.Files(t, walDir) {
			if len(name) != 24 || pushed[name] {
				continue
			}
			mustRun("wal-push", "--allow-root", filepath.Join(walDir, name))
			pushed[name] = true
			names = append(names, name)
		}
		slices.Sort(names)
		return names
	}

	mustRun("create-keys", "--key-id", "key1", "--pem-dir", keys)
	mustRun("basebackup", "--local", "--fast", "--no-wait")
	old := pushArchived()
	if out := mustRun("list", "--json"); !strings.Contains(out, `"encryption-key-id": "key1"`) {
		t.Fatalf("the backup is not stored under key1:\n%s", out)
	}

	// The rotation: key2 beside key1, and new objects under key2.
	mustRun("create-keys", "--key-id", "key2", "--pem-dir", keys)
	t.Setenv("HOARD_ENCRYPTION_KEY_ID", "key2")
	c.Exec(t, "create table after_rotation as select 1 as x")
	rotated := pushArchived()
	if len(old) == 0 || len(rotated) == 0 {
		t.Fatalf("segments pushed under key1 %v, under key2 %v", old, rotated)
	}

	target := filepath.Join(t.TempDir(), "pgdata")
	mustRun("restore", "--target-dir", target)
	if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); err != nil {
		t.Errorf("restored directory: %v", err)
	}
	for _, seg := range []string{old[0], rotated[len(rotated)-1]} {
		mustRun("wal-fetch", seg, filepath.Join(t.TempDir(), "RECOVERYXLOG"))
	}

	t.Run("ErrOldKeyRemoved", func(t *testing.T) {
		if err := os.Remove(filepath.Join(keys, "key1.private.pem")); err != nil {
			t.Fatal(err)
		}
		code, out := runOutput(t, "restore", "--target-dir", filepath.Join(t.TempDir(), "pgdata"))
		if code == ExitOK || !strings.Contains(out, "key1") {
			t.Errorf("restore without key1's private key: exit %d, want a failure naming key1:\n%s", code, out)
		}
	})
}
