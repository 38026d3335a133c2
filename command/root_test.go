package command

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/restore"
)

// TestDaemon_Root: hoard daemon as root exits 2 before reading anything,
// saying how to run it as PostgreSQL's user; --allow-root lets it go on
// (here to the missing --config). Not as root, it goes on.
func TestDaemon_Root(t *testing.T) {
	code, msg := runErr(t, "daemon")
	refused := strings.Contains(msg, "refuses to run as root")
	if os.Geteuid() != 0 {
		if refused {
			t.Fatalf("hoard daemon not as root: %s", msg)
		}
		return
	}
	if code != ExitUsage || !refused || !strings.Contains(msg, "sudo -u postgres hoard daemon") || !strings.Contains(msg, "--allow-root") {
		t.Errorf("hoard daemon as root: exit %d, %q; want %d, refused with the fix", code, msg, ExitUsage)
	}
	if _, msg := runErr(t, "daemon", "--allow-root"); strings.Contains(msg, "refuses to run as root") {
		t.Errorf("hoard daemon --allow-root as root: %s", msg)
	}
}

// TestPrintRestored_Owner: the restore summary tells to chown the
// restored directories only when root owns them; otherwise it names the
// owner to start PostgreSQL as.
func TestPrintRestored_Owner(t *testing.T) {
	dir := filepath.Join(pgtest.TempDir(t), "data")
	spc := filepath.Join(pgtest.TempDir(t), "spc")
	for _, d := range []string{dir, spc} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	summary := func() string {
		var buf bytes.Buffer
		printRestored(&buf, restore.Options{TargetDir: dir}, &restore.Result{
			Backup: &archive.BackupInfo{Name: "b1"}, Tablespaces: map[string]string{"spc": spc}, Elapsed: time.Second,
		}, nil)
		return buf.String()
	}
	if os.Geteuid() == 0 {
		if got, want := summary(), "chown -R postgres:postgres "+dir+" "+spc+"\n"; !strings.Contains(got, want) {
			t.Errorf("restored as root, the summary does not say %q:\n%s", want, got)
		}
		pgtest.Chown(t, dir)
		pgtest.Chown(t, spc)
	}
	got := summary()
	if strings.Contains(got, "chown") {
		t.Errorf("restored directories not root's, the summary still says chown:\n%s", got)
	}
	if want := "as its owner, " + ownerName(dir) + ":"; !strings.Contains(got, want) {
		t.Errorf("the summary does not say %q:\n%s", want, got)
	}
}

// TestRefuseRootStore: as root, a command that stores objects refuses a
// local store another user owns (here nobody, 65534), naming the owner
// and the fix, also before the store's directory exists (its parent
// decides), and stores nothing; --allow-root lets it store, and so does a
// store root owns. Not as root nothing is refused (not run here).
func TestRefuseRootStore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the refusal is of root")
	}
	for _, c := range []struct {
		name  string
		owner int
		sub   string // the store below the owned directory ("" = itself)
		flags []string
		ok    bool
	}{
		{name: "OwnedByAnother", owner: 65534},
		{name: "NotYetMade", owner: 65534, sub: "new/store"},
		{name: "OddPath", owner: 65534, sub: "my store/it's $HOME"},
		{name: "AllowRoot", owner: 65534, flags: []string{"--allow-root"}, ok: true},
		{name: "OwnedByRoot", owner: 0, ok: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			owned := filepath.Join(dir, "owned")
			if err := os.Mkdir(owned, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(owned, c.owner, c.owner); err != nil {
				t.Fatal(err)
			}
			store := filepath.Join(owned, c.sub)
			cfg := writeSiteConfig(t, localConfig(store))
			src := filepath.Join(dir, "in")
			if err := os.WriteFile(src, []byte("hello\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			code, msg := runErr(t, append([]string{"object", "put", "--config", cfg, src, "s/misc/greeting"}, c.flags...)...)
			_, statErr := os.Stat(filepath.Join(store, "s", "misc", "greeting"))
			stored := statErr == nil
			if c.ok {
				if code != 0 || !stored {
					t.Fatalf("exit %d (%s), stored %v; want it stored", code, msg, stored)
				}
				return
			}
			if code != ExitUsage || stored {
				t.Fatalf("exit %d, stored %v; want %d and nothing stored", code, stored, ExitUsage)
			}
			for _, want := range []string{"as root", store, "nobody", "sudo -u nobody hoard object put", "--allow-root"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q:\n%s", want, msg)
				}
			}
			// The chown it names pastes into a shell as it reads.
			m := regexp.MustCompile(`and (chown .*) afterwards`).FindStringSubmatch(msg)
			if m == nil {
				t.Fatalf("no chown command in %q", msg)
			}
			if got, want := shellWords(t, m[1]), []string{"chown", "-R", "nobody", store}; !slices.Equal(got, want) {
				t.Errorf("the hint's command %s reads in sh as %q, want %q", m[1], got, want)
			}
		})
	}
}

// TestRefuseRootStore_Commands: wal-push and archive-sync, which store
// objects too, refuse as object put does, naming themselves in the fix.
func TestRefuseRootStore_Commands(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the refusal is of root")
	}
	dir := t.TempDir()
	store := filepath.Join(dir, "owned")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(store, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cfg := writeSiteConfig(t, localConfig(store))
	for _, args := range [][]string{
		{"wal-push", "--config", cfg, filepath.Join(dir, "000000010000000000000001")},
		{"archive-sync", "--config", cfg},
	} {
		code, msg := runErr(t, args...)
		if code != ExitUsage {
			t.Errorf("%s: exit %d (%s), want %d", args[0], code, msg, ExitUsage)
		}
		if want := "sudo -u nobody hoard " + args[0]; !strings.Contains(msg, want) {
			t.Errorf("%s: message lacks %q:\n%s", args[0], want, msg)
		}
	}
	if ents, err := os.ReadDir(store); err != nil || len(ents) != 0 {
		t.Errorf("store holds %d entries (%v), want none", len(ents), err)
	}
}
