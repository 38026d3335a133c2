package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// newLocalStreamSite writes a configuration for a pg_receivexlog site
// storing into a local directory, which the test also opens directly.
func newLocalStreamSite(t *testing.T) *streamSite {
	t.Helper()
	storeDir := filepath.Join(pgtest.TempDir(t), "store")
	s := newStreamSiteStoring(t, map[string]any{"storage_type": "local", "directory": storeDir},
		storage.Config{Type: "local", Directory: storeDir}, nil)
	s.storeDir = storeDir
	return s
}

// storedHistory reports whether timeline/<name> exists.
func (s *streamSite) storedHistory(name string) bool {
	_, err := s.store.Stat(context.Background(), s.name+"/timeline/"+name)
	return err == nil
}

// rowsOf lists every row of the test table, in order, as one string.
func rowsOf(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	return c.QueryString(t, `select count(*)::text || ' rows: ' ||
		coalesce(string_agg(id::text || '=' || phase, ',' order by id), '-') from tl_rows`)
}

// TestDaemonTimelineSwitch streams with hoard daemon from a standby (made
// by Debian's pg_basebackup -R, so PostgreSQL 15 only), which also serves
// the daemon's first basebackup. The primary writes rows that reach the
// standby and the archive; then the primary stops and the standby is
// promoted to timeline 2 under the daemon, and writes more rows. The
// daemon must store 00000002.history and the timeline 2 segment holding
// them, exit 0 on SIGTERM, and a restore of its backup must recover
// exactly the promoted standby's rows, from both timelines. The site has
// keys: the daemon signs 00000002.history with the system identifier
// IDENTIFY_SYSTEM gave it, and the restore's wal-fetch reads it for the
// restored data directory's system.
func TestDaemonTimelineSwitch(t *testing.T) {
	major := pgtest.DebianMajor
	primary := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	primary.Exec(t, "create table tl_rows (id int primary key, phase text not null)")
	primary.Exec(t, "insert into tl_rows select g, 'before-backup' from generate_series(1, 100) g")

	standby := startStandby(t, primary)

	s := newLocalStreamSite(t)
	s.mustHoard("create-keys", "--key-id", "e2e-key")
	s.use(standby)
	d := s.startDaemon()
	d.waitFor("the first basebackup, taken from the standby", 2*time.Minute, func() bool {
		st, ok := d.status()
		site := st.Sites[s.name]
		return ok && site.Backups >= 1 && !site.BackupRunning
	})
	d.waitFor("WAL streaming from the standby", time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].WAL != nil && st.Sites[s.name].WAL.Connected
	})

	// Timeline 1: rows written on the primary reach the standby and, as a
	// closed segment, the archive.
	primary.Exec(t, "insert into tl_rows select g, 'timeline-1' from generate_series(101, 200) g")
	primary.Exec(t, "select pg_logical_emit_message(false, 'hoard-e2e', 'switch')")
	seg1 := primary.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	end1 := primary.QueryString(t, "select pg_current_wal_lsn()::text")
	primary.Exec(t, "select pg_switch_wal()")
	d.waitFor("the standby replaying "+end1, time.Minute, func() bool {
		return standby.QueryString(t, "select (pg_last_wal_replay_lsn() >= $1::pg_lsn)::text", end1) == "true"
	})
	d.waitFor("timeline 1 segment "+seg1+" stored", time.Minute, func() bool { return s.stored(seg1) })

	// The primary goes away; the standby is promoted to timeline 2 while
	// the daemon streams from it.
	primary.Exec(t, "insert into tl_rows select g, 'timeline-1-last' from generate_series(201, 250) g")
	primary.Stop(t)
	standby.Promote(t)
	standby.WaitRecoveryDone(t, time.Minute)
	standby.Exec(t, "insert into tl_rows select g, 'timeline-2' from generate_series(251, 400) g")
	standby.Exec(t, "select pg_logical_emit_message(false, 'hoard-e2e', 'switch')")
	seg2 := standby.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	standby.Exec(t, "select pg_switch_wal()")
	if !strings.HasPrefix(seg2, "00000002") {
		t.Fatalf("segment %s after promotion, want timeline 2", seg2)
	}
	d.waitFor("00000002.history stored", time.Minute, func() bool { return s.storedHistory("00000002.history") })
	if obj, err := s.store.Stat(context.Background(), s.name+"/timeline/00000002.history"); err != nil {
		t.Error(err)
	} else if sys, err := archive.ClusterSystemID(standby.DataDir); err != nil {
		t.Error(err)
	} else if got, want := obj.Metadata[archive.MetaSystemID], strconv.FormatUint(sys, 10); got != want {
		t.Errorf("00000002.history is signed for system %q, want the standby's %s", got, want)
	}
	d.waitFor("timeline 2 segment "+seg2+" stored", time.Minute, func() bool { return s.stored(seg2) })
	want := rowsOf(t, standby)
	if !strings.HasPrefix(want, "400 rows: ") {
		t.Fatalf("the promoted standby has %.60s..., want 400 rows", want)
	}

	d.stopClean()
	t.Logf("stored WAL: %v", s.storedWAL())

	bs := s.listBackups()
	if len(bs) == 0 {
		t.Fatal("hoard list: no backups")
	}
	newest := bs[len(bs)-1]
	if !strings.HasPrefix(newest.StartWALSegment, "00000001") {
		t.Errorf("backup %s starts in %s, want timeline 1 (taken before the promotion)", newest.Name, newest.StartWALSegment)
	}
	target := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", target, "--basebackup", newest.Name, "--archive-mode", "off")
	if _, err := os.Stat(filepath.Join(target, "standby.signal")); err == nil {
		t.Errorf("restored %s keeps the standby's standby.signal", target)
	}
	c := pgtest.StartDataDir(t, major, target, noArchiving)
	c.WaitRecoveryDone(t, time.Minute)
	if got := rowsOf(t, c); got != want {
		t.Errorf("restored cluster has\n%s\nthe promoted standby has\n%s", got, want)
	}
	// Recovery followed timeline 2 to its end and forked timeline 3.
	if got := c.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())"); !strings.HasPrefix(got, "00000003") {
		t.Errorf("restored cluster writes %s, want timeline 3 (after timeline 2)", got)
	}
}
