package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// archiveSyncJSON is the part of hoard archive-sync --json the tests read.
type archiveSyncJSON struct {
	Pushed      []string          `json:"pushed"`
	HashChecked int               `json:"hash_checked"`
	Mismatches  []string          `json:"hash_mismatches"`
	InProgress  string            `json:"segment_in_progress"`
	Flushed     string            `json:"server_flushed_lsn"`
	Continuous  *bool             `json:"continuous"`
	NewBackup   string            `json:"new_basebackup"`
	Gaps        []json.RawMessage `json:"wal_gaps"`
}

// archiveSync runs hoard archive-sync --json and returns its exit status,
// its output and its log.
func (s *site) archiveSync(args ...string) (int, archiveSyncJSON, string) {
	s.t.Helper()
	out, errOut, err := s.hoard(append([]string{"archive-sync", "--json"}, args...)...)
	var res archiveSyncJSON
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil && out != "" {
		s.t.Fatalf("archive-sync --json: %v\n%s", jerr, out)
	}
	s.t.Logf("archive-sync --json:\n%s", out)
	return exitCode(err), res, errOut
}

// archiveOnlyStandby starts a PostgreSQL 15 primary (1 MiB segments)
// archiving through hoard wal-push into a new site, holding tl_rows, takes
// a basebackup, and restores it as a standby that replays only from the
// archive (--standby, no primary_conninfo: restore_command = hoard
// wal-fetch). The primary then writes rows into three segments, archived,
// which the standby replays; it returns them.
func archiveOnlyStandby(t *testing.T) (s *site, primary, standby *pgtest.Cluster, backup string, segs []string) {
	t.Helper()
	s = newSite(t, siteOptions{})
	primary = pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1, Conf: s.clusterConf()})
	s.use(primary)
	primary.Exec(t, "create table tl_rows (id int primary key, phase text not null)")
	primary.Exec(t, "insert into tl_rows select g, 'before' from generate_series(1, 100) g")
	s.mustHoard("basebackup", "--fast")
	backup = s.listBackups()[0].Name

	data := filepath.Join(pgtest.TempDir(t), "standby")
	s.mustHoard("restore", "--target-dir", data, "--basebackup", backup, "--standby")
	standby = pgtest.StartDataDir(t, pgtest.DebianMajor, data, map[string]string{"wal_retrieve_retry_interval": "200ms"})
	if got := standby.QueryString(t, "select pg_is_in_recovery()::text"); got != "true" {
		t.Fatalf("standby pg_is_in_recovery() = %s, want true", got)
	}
	for i := range 3 {
		primary.Exec(t, "insert into tl_rows select g, 'archived' from generate_series($1::int, $1::int + 99) g", 1000*(i+1))
		segs = append(segs, switchAndWaitArchived(t, primary))
	}
	standby.WaitTrue(t, time.Minute, "select pg_last_wal_replay_lsn() >= $1::pg_lsn", primary.QueryString(t, "select pg_current_wal_lsn()::text"))
	if got := standby.QueryString(t, "select coalesce(pg_last_wal_receive_lsn()::text, 'none')"); got != "none" {
		t.Fatalf("standby received %s by streaming, want none", got)
	}
	return s, primary, standby, backup, segs
}

// TestStandby_ArchiveOnlySync: hoard archive-sync on the host of a
// standby that replays only from the archive (restore_command = hoard
// wal-fetch, no primary_conninfo), its primary archiving through hoard
// wal-push into the same site. The standby's flush position is its replay
// position. archive-sync stores nothing the archive holds (the hashes of
// the standby's restored copies match), stores again with the primary's
// bytes a segment the archive lost that the standby's pg_wal still holds,
// and claims no WAL the standby has not replayed (the primary's segment in
// progress, not archived, is not in the standby's pg_wal and no gap).
// Promoted, the standby archives its new timeline itself; archive-sync
// then runs on it as a primary, and the backup restores to the new
// timeline's rows.
func TestStandby_ArchiveOnlySync(t *testing.T) {
	s, primary, standby, _, segs := archiveOnlyStandby(t)

	// The standby host's configuration: the same site and store, the
	// standby's data directory and node.
	sb := *s
	sb.config = filepath.Join(s.dir, "standby.json")
	cfg, site := s.readConfig()
	site["pg_data_directory"] = standby.DataDir
	sb.writeConfig(sb.config, cfg)
	sb.use(standby)

	code, res, _ := sb.archiveSync("--create-new-backup-on-failure")
	if code != 0 || len(res.Pushed) != 0 || len(res.Mismatches) != 0 || res.HashChecked == 0 || res.Continuous == nil || !*res.Continuous || res.NewBackup != "" {
		t.Fatalf("archive-sync on the archive-only standby: exit %d, %+v; want 0, nothing stored, hashes compared and equal, continuous, no new backup", code, res)
	}
	if res.Flushed == "" || res.Flushed != standby.QueryString(t, "select pg_last_wal_replay_lsn()::text") {
		t.Errorf("server_flushed_lsn %q, want the standby's replay position", res.Flushed)
	}

	// The archive loses a segment the standby's pg_wal still holds.
	victim := segs[1]
	key := filepath.Join(s.storeDir, s.name, "xlog", victim)
	for _, p := range []string{key, key + ".metadata"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	code, res, _ = sb.archiveSync()
	if code != 0 || !slices.Equal(res.Pushed, []string{victim}) || res.Continuous == nil || !*res.Continuous {
		t.Errorf("archive-sync after the archive lost %s: exit %d, pushed %v; want 0, it stored again, continuous", victim, code, res.Pushed)
	}
	fetched := filepath.Join(pgtest.TempDir(t), victim)
	s.mustHoard("wal-fetch", victim, fetched)
	if want := readFile(t, filepath.Join(primary.DataDir, "pg_wal", victim)); !bytes.Equal(readFile(t, fetched), want) {
		t.Errorf("%s stored again differs from the primary's copy", victim)
	}

	// The primary writes into a new segment, not archived: the standby
	// has none of it, and archive-sync claims none of it.
	writing := primary.QueryString(t, "select pg_walfile_name(pg_logical_emit_message(false, 'hoard-test', 'writing'))")
	code, res, _ = sb.archiveSync()
	if code != 0 || len(res.Pushed) != 0 || res.Continuous == nil || !*res.Continuous {
		t.Errorf("archive-sync while the primary writes %s: exit %d, pushed %v; want 0, nothing", writing, code, res.Pushed)
	}
	if _, err := os.Stat(filepath.Join(s.storeDir, s.name, "xlog", writing)); !os.IsNotExist(err) {
		t.Errorf("%s, which the standby does not have, is stored (%v)", writing, err)
	}

	// The archive loses a segment the standby's pg_wal no longer holds
	// (its restartpoint removed it): --create-new-backup-on-failure
	// takes a backup of the standby, whose WAL the archive holds through
	// its end (the standby has only what the archive gave it).
	primary.Exec(t, "checkpoint")
	switchAndWaitArchived(t, primary)
	standby.WaitTrue(t, time.Minute, "select pg_last_wal_replay_lsn() >= $1::pg_lsn", primary.QueryString(t, "select pg_current_wal_lsn()::text"))
	standby.Exec(t, "checkpoint")
	gone := segs[0]
	if _, err := os.Stat(filepath.Join(standby.DataDir, "pg_wal", gone)); !os.IsNotExist(err) {
		t.Fatalf("%s still in the standby's pg_wal after its restartpoint (%v)", gone, err)
	}
	key = filepath.Join(s.storeDir, s.name, "xlog", gone)
	for _, p := range []string{key, key + ".metadata"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	code, res, _ = sb.archiveSync("--create-new-backup-on-failure")
	if code != 0 || res.NewBackup == "" || res.Continuous == nil || !*res.Continuous {
		t.Fatalf("archive-sync after the archive lost %s: exit %d, %+v; want 0, a new backup, its WAL continuous", gone, code, res)
	}
	backup := res.NewBackup
	if code, res, _ = sb.archiveSync("--create-new-backup-on-failure"); code != 0 || res.NewBackup != "" || len(res.Pushed) != 0 {
		t.Errorf("archive-sync again: exit %d, %+v; want 0, no other backup, nothing stored", code, res)
	}

	// Promoted, the standby archives its new timeline (archive_mode on,
	// inherited) into the site; archive-sync runs on it as a primary.
	primary.Stop(t)
	standby.Promote(t)
	standby.WaitRecoveryDone(t, time.Minute)
	standby.Exec(t, "insert into tl_rows select g, 'promoted' from generate_series(5000, 5099) g")
	last := switchAndWaitArchived(t, standby)
	code, res, _ = sb.archiveSync("--create-new-backup-on-failure")
	if code != 0 || len(res.Mismatches) != 0 || res.Continuous == nil || !*res.Continuous || res.NewBackup != "" {
		t.Errorf("archive-sync on the promoted standby: exit %d, %+v; want 0, continuous, no new backup", code, res)
	}
	if _, err := os.Stat(filepath.Join(s.storeDir, s.name, "xlog", last)); err != nil {
		t.Errorf("the new timeline's %s not stored: %v", last, err)
	}

	restored := s.restoreAndStart(t, pgtest.DebianMajor, backup)
	if got, want := rowsOf(t, restored), rowsOf(t, standby); got != want {
		t.Errorf("restored rows %s, want the promoted standby's %s", got, want)
	}
}

// TestStandby_ArchiveOnlyDaemon: hoard daemon streaming (walreceiver,
// into a site of its own) from a standby that replays only from the
// archive. The standby's WAL senders send what it has replayed: the
// daemon stores each segment once the standby has replayed it, with the
// primary's bytes, reports no flush position past the standby's replay
// position, stores nothing of the segment the primary is writing (not
// archived, so not on the standby), logs no error while it waits, and
// stops cleanly.
func TestStandby_ArchiveOnlyDaemon(t *testing.T) {
	_, primary, standby, _, _ := archiveOnlyStandby(t)
	b := standbySite(t, standby, 1)
	d := b.startStreaming()

	primary.Exec(t, "insert into tl_rows select g, 'streamed' from generate_series(9000, 9099) g")
	seg := switchAndWaitArchived(t, primary)
	d.waitFor("segment "+seg+" stored", time.Minute, func() bool { return b.stored(seg) })
	fetched := filepath.Join(pgtest.TempDir(t), seg)
	b.mustHoard("wal-fetch", seg, fetched)
	if want := readFile(t, filepath.Join(primary.DataDir, "pg_wal", seg)); !bytes.Equal(readFile(t, fetched), want) {
		t.Errorf("%s streamed from the standby differs from the primary's copy", seg)
	}

	writing := primary.QueryString(t, "select pg_walfile_name(pg_logical_emit_message(false, 'hoard-test', 'writing'))")
	time.Sleep(3 * time.Second) // the partial upload interval, three times over
	for _, name := range []string{writing, writing + ".partial"} {
		if b.stored(name) {
			t.Errorf("%s stored: the standby has none of it", name)
		}
	}
	replayed, err := pglogrepl.ParseLSN(standby.QueryString(t, "select pg_last_wal_replay_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := d.status(); !ok || st.Sites[b.name].WAL == nil {
		t.Errorf("no WAL status")
	} else if flushed, err := pglogrepl.ParseLSN(st.Sites[b.name].WAL.Flushed); err != nil || flushed > replayed {
		t.Errorf("daemon flushed %s (%v), past the standby's replay position %s", st.Sites[b.name].WAL.Flushed, err, replayed)
	}

	if code := d.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Errorf("hoard daemon exited %d after SIGTERM, want 0", code)
	}
	t.Logf("daemon log:\n%s", tailLines(d.out.String(), 40))
	for _, line := range strings.Split(d.out.String(), "\n") {
		if strings.Contains(line, " ERR ") || strings.Contains(line, " WRN ") {
			t.Errorf("daemon logged: %s", line)
		}
	}
}
