package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_OtherSystemHistories: a site with keys holding 00000002.history
// signed for another database system (the old cluster's, left by a
// pg_upgrade into the same site) above the node's timeline 1: the daemon
// logs once, at error level, the files' timeline and system, the node's,
// and what to do, after the backup loop first lists the backups; with the
// WAL stream (IDENTIFY_SYSTEM gives the node's timeline) and in
// archive_command mode (pg_control_checkpoint() over an ordinary
// connection gives it). In a site without keys (archive_command mode),
// the same by the system the file's metadata claims, saying so.
func TestRun_OtherSystemHistories(t *testing.T) {
	for _, c := range []struct {
		mode string
		keys bool
	}{{WALStream, true}, {WALArchiveCommand, true}, {WALArchiveCommand, false}} {
		name := c.mode
		if !c.keys {
			name += "_keyless"
		}
		t.Run(name, func(t *testing.T) { testOtherSystemHistories(t, c.mode, c.keys) })
	}
}

func testOtherSystemHistories(t *testing.T, mode string, keys bool) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	site := streamingSiteTo(t, c.ConnString("postgres"), storage.NewLocal(t.TempDir()))
	if mode == WALArchiveCommand {
		site.ActiveBackupMode, site.WAL, site.Slot = "archive_command", WALArchiveCommand, ""
	}
	storeHistoryOf(t, site, 7000000000000000001, keys)
	rd := runDaemon(t, Options{Sites: []Site{site}})
	want := "the site holds timeline history files of database system 7000000000000000001 on timeline 2, above timeline 1 of this cluster (system "
	if !keys {
		want = "by their metadata's claim (not authenticated: this site has no keys)"
	}
	waitOneErrorLine(t, rd, want)
}

// TestRun_OtherSystemHistories_NewSystem: a daemon in archive_command
// mode keeps running while its node becomes another cluster (what
// pg_upgrade gives: a new system identifier, timeline 1; here another
// cluster started on the node's port). 00000002.history, the first
// node's own, is not another system's for it: no line. Once the daemon
// learns the new system identifier (systemIDRefresh), it looks again and
// logs the line naming both systems.
func TestRun_OtherSystemHistories_NewSystem(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	c1 := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	c2 := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	c2.Stop(t)
	sys1, err := archive.ClusterSystemID(c1.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	sys2, err := archive.ClusterSystemID(c2.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	site := streamingSiteTo(t, c1.ConnString("postgres"), storage.NewLocal(t.TempDir()))
	site.ActiveBackupMode, site.WAL, site.Slot = "archive_command", WALArchiveCommand, ""
	storeHistoryOf(t, site, sys1, true)
	refresh := systemIDRefresh
	systemIDRefresh = 100 * time.Millisecond
	t.Cleanup(func() { systemIDRefresh = refresh }) // after the daemon stopped
	rd := runDaemon(t, Options{Sites: []Site{site}, RetentionInterval: 200 * time.Millisecond})

	// The backup loop has looked at the first node once it ran retention,
	// which comes after the look in the same pass.
	rd.waitFor("retention", func(st Status) bool { return st.Sites["test"].LastRetention != nil })
	const line = "the site holds timeline history files of database system "
	if strings.Contains(rd.logs.String(), line) {
		t.Fatalf("the daemon warned of the first node's own history file:\n%s", rd.logs.String())
	}
	c1.Stop(t)
	c2.Port = c1.Port
	c2.Start(t)
	if c2.Port != c1.Port {
		t.Fatalf("the second cluster could not take the first one's port %d", c1.Port)
	}
	waitOneErrorLine(t, rd, fmt.Sprintf("%s%d on timeline 2, above timeline 1 of this cluster (system %d)", line, sys1, sys2))
}

// storeHistoryOf gives site's archive a key pair, with keys, and stores
// in it a 00000002.history of system (signed for it, or, without keys,
// claiming it).
func storeHistoryOf(t *testing.T, site Site, system uint64, keys bool) {
	t.Helper()
	ctx := context.Background()
	arch, _, err := site.OpenArchive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keys {
		archivetest.AddKeys(t, arch.Codec)
	}
	path := filepath.Join(t.TempDir(), "00000002.history")
	if err := os.WriteFile(path, []byte("1\t0/5000000\tno recovery target specified\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := arch.PushWAL(ctx, path, archive.PushOptions{SystemID: system}); err != nil {
		t.Fatal(err)
	}
}

// waitOneErrorLine waits until rd logged want, stops the daemon and
// fails unless exactly one line, at error level, has it, saying what to
// do after pg_upgrade.
func waitOneErrorLine(t *testing.T, rd *runningDaemon, want string) {
	t.Helper()
	deadline := time.Now().Add(runTimeout)
	for !strings.Contains(rd.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within %s", want, runTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rd.stop()
	var lines []string
	for _, l := range strings.Split(rd.logs.String(), "\n") {
		if strings.Contains(l, want) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"error"`) || !strings.Contains(lines[0], "backup_sites.") ||
		!strings.Contains(lines[0], "after pg_upgrade") {
		t.Errorf("want one error line saying what to do after pg_upgrade, got %d:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}
