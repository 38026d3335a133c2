package command

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/verify"
)

// storedWALBytes returns segment name of site db in the local store,
// decoded (decompressed, its hash checked).
func storedWALBytes(t *testing.T, store storage.Config, name string) []byte {
	t.Helper()
	a := archivetest.Local(t, store.Directory, "db", &archive.Codec{})
	data, _ := archivetest.Decode(t, a.Codec, a.Store, a.Layout.WALKey(name))
	return data
}

// sameAsPrimary fails unless segment name is stored with the bytes of the
// primary's copy in its pg_wal.
func sameAsPrimary(t *testing.T, store storage.Config, primary *pgtest.Cluster, name string) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(primary.DataDir, "pg_wal", name))
	if err != nil {
		t.Fatal(err)
	}
	if got := storedWALBytes(t, store, name); !bytes.Equal(got, want) {
		t.Errorf("stored %s (%d bytes) differs from the primary's copy (%d bytes)", name, len(got), len(want))
	}
}

// emitOnPrimary writes a WAL record on primary, waits until standby has
// received it, and returns the segment it ends in.
func emitOnPrimary(t *testing.T, primary, standby *pgtest.Cluster, what string) string {
	t.Helper()
	lsn := primary.QueryString(t, "select pg_logical_emit_message(false, 'hoard-test', $1::text)::text", what)
	primary.WaitTrue(t, time.Minute, "select pg_current_wal_flush_lsn() >= $1::pg_lsn", lsn)
	standby.WaitTrue(t, time.Minute, "select greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) >= $1::pg_lsn", lsn)
	return primary.QueryString(t, "select pg_walfile_name($1::pg_lsn)", lsn)
}

// TestArchiveSync_StandbyWriting: archive-sync on a streaming standby's
// host, with a backup of the standby. The backup ends in the segment the
// primary is writing; while the primary writes into it, that segment is
// left out as in progress (not stored: the standby's copy is not
// complete), the archive has a gap only there, archive-sync exits 1 saying
// to run again, and --create-new-backup-on-failure takes no basebackup.
// Once the primary switched and has just written into the next segment,
// the backup's end segment is stored with the primary's bytes, the new
// segment is left out as in progress, and the archive is continuous: exit
// 0, no new backup.
func TestArchiveSync_StandbyWriting(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})
	c.Exec(t, "create table r (id int primary key)")
	c.Exec(t, "insert into r select generate_series(1, 100)")
	standby := pgtest.StartColdStandby(t, c)
	emitOnPrimary(t, c, standby, "before")
	store := syncBackup(t, standby)
	cfg := syncSiteConfig(t, store, standby.DataDir, clusterNode(standby))
	end := backupEnd(t, store)

	// The primary writes into the backup's end segment.
	if cur := emitOnPrimary(t, c, standby, "writing"); cur != end {
		t.Fatalf("primary writes into %s, want the backup's end segment %s", cur, end)
	}
	code, res, msg, _ := runSync(t, cfg, "--create-new-backup-on-failure")
	if code != ExitFailure || !strings.Contains(msg, end+" is in pg_wal, the segment the server is writing") || !strings.Contains(msg, "run archive-sync again") {
		t.Errorf("archive-sync while %s is written: exit %d (%s), want %d with the advice to run again", end, code, msg, ExitFailure)
	}
	if res.InProgress != end || storedWAL(t, store, end) || slices.Contains(res.Pushed, end) {
		t.Errorf("segment_in_progress %q, %s stored %v (pushed %v); want it left out", res.InProgress, end, storedWAL(t, store, end), res.Pushed)
	}
	if res.Flushed == "" || res.NewBackup != "" || countBackups(t, store) != 1 {
		t.Errorf("server_flushed_lsn %q, new backup %q, %d backups; want the position and no new backup", res.Flushed, res.NewBackup, countBackups(t, store))
	}
	var gaps []verify.Gap
	if err := json.Unmarshal(res.Gaps, &gaps); err != nil || len(gaps) != 1 || gaps[0] != (verify.Gap{First: end, Last: end, Count: 1}) {
		t.Errorf("wal_gaps %s (%v), want %s alone", res.Gaps, err, end)
	}
	for _, n := range res.Pushed {
		sameAsPrimary(t, store, c, n)
	}

	// Switched, and the primary has just written into the next segment.
	if got := c.SwitchWAL(t); got != end {
		t.Fatalf("switched %s, want %s", got, end)
	}
	next := emitOnPrimary(t, c, standby, "next")
	code, res, msg, _ = runSync(t, cfg, "--create-new-backup-on-failure")
	if code != ExitOK {
		t.Fatalf("archive-sync after the switch: exit %d (%s), want %d", code, msg, ExitOK)
	}
	if !slices.Contains(res.Pushed, end) || res.InProgress != next || storedWAL(t, store, next) {
		t.Errorf("pushed %v, segment_in_progress %q, %s stored %v; want %s stored and %s left out", res.Pushed, res.InProgress, next, storedWAL(t, store, next), end, next)
	}
	if res.Continuous == nil || !*res.Continuous || res.NewBackup != "" || countBackups(t, store) != 1 || string(res.Gaps) != "[]" {
		t.Errorf("continuous %v, gaps %s, new backup %q; want continuous, none", res.Continuous, res.Gaps, res.NewBackup)
	}
	sameAsPrimary(t, store, c, end)

	// Run again: nothing more to store, the hashes match.
	if code, res, msg, _ = runSync(t, cfg); code != ExitOK || len(res.Pushed) != 0 {
		t.Errorf("archive-sync again: exit %d (%s), pushed %v; want %d, nothing", code, msg, res.Pushed, ExitOK)
	}
}

// TestArchiveSync_StandbyNewBackup: archive-sync
// --create-new-backup-on-failure on a standby's host whose pg_wal no
// longer holds a segment of the newest backup's WAL takes a new
// basebackup of the standby. A standby's backup ends in the segment its
// primary is writing, which only a later sync stores: archive-sync does
// not wait for it (nothing else stores it), stores the WAL of the new
// backup that pg_wal holds, and says which segment the new backup still
// needs and to run again; once the primary has finished that segment,
// the next run stores it and the new backup's WAL is continuous.
func TestArchiveSync_StandbyNewBackup(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})
	standby := pgtest.StartColdStandby(t, c)
	emitOnPrimary(t, c, standby, "before")
	store := syncBackup(t, standby)
	cfg := syncSiteConfig(t, store, standby.DataDir, clusterNode(standby))
	end := backupEnd(t, store)
	for range 3 {
		c.SwitchWAL(t)
	}
	// A checkpoint on the primary, replayed, lets the standby's
	// restartpoint remove (or recycle) the backup's end segment from its
	// pg_wal, unstored.
	c.Exec(t, "checkpoint")
	cur := emitOnPrimary(t, c, standby, "writing")
	standby.WaitTrue(t, time.Minute, "select pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()")
	standby.Exec(t, "checkpoint")
	if _, err := os.Stat(filepath.Join(standby.DataDir, "pg_wal", end)); !os.IsNotExist(err) {
		t.Fatalf("%s still in the standby's pg_wal after its restartpoint (%v)", end, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	start := time.Now()
	code, res, msg, log := runSyncContext(ctx, t, cfg, "--create-new-backup-on-failure")
	if ctx.Err() != nil {
		t.Fatalf("archive-sync was still running after %v (exit %d, %s)", time.Since(start).Round(time.Second), code, msg)
	}
	if res.NewBackup == "" || countBackups(t, store) != 2 {
		t.Fatalf("new basebackup %q, %d backups; want a new one (exit %d, %s)", res.NewBackup, countBackups(t, store), code, msg)
	}
	if code != ExitFailure || !strings.Contains(msg, cur) || !strings.Contains(msg, "run archive-sync again") {
		t.Errorf("archive-sync: exit %d (%s), want %d naming %s, which the new backup still needs, and to run again", code, msg, ExitFailure, cur)
	}
	if strings.Contains(log, "waiting for the archive to hold the standby backup's WAL") {
		t.Errorf("archive-sync waited for WAL only it stores:\n%s", log)
	}

	// The primary finishes the segment: the next run stores it, and the
	// new backup's WAL is continuous.
	if got := c.SwitchWAL(t); got != cur {
		t.Fatalf("switched %s, want %s", got, cur)
	}
	emitOnPrimary(t, c, standby, "next")
	code, res, msg, _ = runSync(t, cfg, "--create-new-backup-on-failure")
	if code != ExitOK || !slices.Contains(res.Pushed, cur) || res.Continuous == nil || !*res.Continuous || res.NewBackup != "" {
		t.Errorf("archive-sync after the switch: exit %d (%s), pushed %v, continuous %v, new backup %q; want %d, %s stored, continuous, none",
			code, msg, res.Pushed, res.Continuous != nil && *res.Continuous, res.NewBackup, ExitOK, cur)
	}
	sameAsPrimary(t, store, c, cur)
}

// TestArchiveSync_NewBackupStoresItsWAL: archive-sync
// --create-new-backup-on-failure on a primary whose pg_wal no longer holds
// a segment of the newest backup's WAL takes a new basebackup, then
// stores the new backup's WAL from pg_wal, its end segment among them
// (complete: the backup ends with a WAL switch), asking the server again
// where its WAL is flushed: the new backup's WAL is continuous, exit 0.
func TestArchiveSync_NewBackupStoresItsWAL(t *testing.T) {
	c, store := syncCluster(t, pgtest.DebianMajor)
	cfg := syncSiteConfig(t, store, c.DataDir, clusterNode(c))
	end := backupEnd(t, store)
	for range 3 {
		c.SwitchWAL(t)
	}
	c.Exec(t, "checkpoint")
	if _, err := os.Stat(filepath.Join(c.DataDir, "pg_wal", end)); !os.IsNotExist(err) {
		t.Fatalf("%s still in pg_wal after a checkpoint (%v)", end, err)
	}
	code, res, msg, _ := runSync(t, cfg, "--create-new-backup-on-failure")
	if code != ExitOK || res.NewBackup == "" || countBackups(t, store) != 2 {
		t.Fatalf("archive-sync: exit %d (%s), new backup %q, %d backups; want %d and a new backup", code, msg, res.NewBackup, countBackups(t, store), ExitOK)
	}
	if res.Continuous == nil || !*res.Continuous || string(res.Gaps) != "[]" {
		t.Errorf("continuous %v, gaps %s; want the new backup's WAL continuous", res.Continuous != nil && *res.Continuous, res.Gaps)
	}
	newEnd := backupEndOf(t, store, res.NewBackup)
	if !slices.Contains(res.Pushed, newEnd) {
		t.Errorf("the new backup's end segment %s not stored (pushed %v)", newEnd, res.Pushed)
	}
	sameAsPrimary(t, store, c, newEnd)
}
