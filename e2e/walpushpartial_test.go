package e2e

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestFailover_WALPushPartialAfterDaemon: a site archived both ways at
// once, as PGHoard users run it: the streaming daemon, and PostgreSQL's
// archive_command (hoard wal-push) on the primary and on its standby.
// The daemon stores a .partial copy of the segment it is receiving, then
// stops (a restart, a host down) while the primary writes on; the
// primary stops and the standby is promoted. The promoted server
// archives its old timeline's last segment as <segment>.partial, holding
// more WAL than the daemon's copy under that name. wal-push must store
// it over the shorter copy (or count the longer one): before, it failed
// as "a different file is already archived under this name" at every
// try, and PostgreSQL's archiver, which retries the oldest file first,
// archived nothing of the new timeline.
func TestFailover_WALPushPartialAfterDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	s := newLocalStreamSite(t)
	s.setSiteKey("wal_partial_upload_interval", 1)
	primary := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1, Conf: s.clusterConf()})
	primary.Exec(t, "create table tl_rows (id int primary key, phase text not null)")
	primary.Exec(t, "insert into tl_rows select g, 'before' from generate_series(1, 100) g")
	standby := pgtest.StartColdStandby(t, primary) // archive_mode and archive_command copied: archives once promoted
	s.use(primary)
	d := s.startDaemon()
	d.waitFirstBackup(s.name, 2*time.Minute, true)

	// The daemon's .partial copy of the segment in progress.
	s.switchAndWaitStored(d, primary, time.Minute)
	primary.Exec(t, "insert into tl_rows select g, 'copied' from generate_series(101, 150) g")
	seg := primary.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	d.waitFlushed(s.name, lsnOf(t, primary.QueryString(t, "select pg_current_wal_lsn()::text")), time.Minute)
	d.stopClean()
	if !s.stored(seg + ".partial") {
		t.Fatalf("the daemon stored no %s.partial at its stop: %v", seg, s.storedWAL())
	}

	// More WAL of that segment, on the standby only; then the failover.
	primary.Exec(t, "insert into tl_rows select g, 'after-copy' from generate_series(151, 200) g")
	waitReplayed(t, primary, standby)
	primary.Kill(t) // a crash: no switch to a new segment at shutdown
	standby.Promote(t)
	standby.WaitRecoveryDone(t, time.Minute)
	standby.Exec(t, "insert into tl_rows select g, 'timeline-2' from generate_series(201, 250) g")
	last := standby.SwitchWAL(t)
	if !strings.HasPrefix(last, "00000002") {
		t.Fatalf("segment %s after the promotion, want timeline 2", last)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		got := standby.QueryString(t, "select coalesce(last_archived_wal, '-') || ' ' || failed_count || ' ' || coalesce(last_failed_wal, '-') from pg_stat_archiver")
		if strings.HasPrefix(got, last+" ") && strings.Contains(got, " 0 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the promoted server's archiver (last archived, failures, last failed): %s, want %s archived with no failure\n%s",
				got, last, tailLines(standby.Log(), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !s.stored(seg+".partial") || !s.stored(last) {
		t.Fatalf("stored WAL %v, want %s.partial and %s", s.storedWAL(), seg, last)
	}
	// What is stored is the promoted server's file, all the WAL it had.
	plain := filepath.Join(s.dir, "plain-"+seg+".partial")
	s.mustHoard("object", "get", archive.Layout{Prefix: s.name}.WALKey(seg+".partial"), "-o", plain)
	if !bytes.Equal(readFile(t, plain), readFile(t, filepath.Join(standby.DataDir, "pg_wal", seg+".partial"))) {
		t.Errorf("the stored %s.partial is not the promoted server's file", seg)
	}
	if out, errOut, err := s.hoard("verify"); err != nil {
		t.Errorf("hoard verify: %v\n%s%s", err, out, errOut)
	}
}
