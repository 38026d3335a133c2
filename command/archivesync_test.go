package command

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/verify"
	"github.com/hoardbackup/hoard/wal"
)

// archive-sync whose gap is the newest segment in pg_wal (an idle server
// right after pg_switch_wal, the next segment not begun: the backup's
// WARNING sends the user here) exits 1 saying the segment is in pg_wal and
// may still be written, and to run again once the server has written into
// the next one, not that the segments are no longer in pg_wal and a new
// basebackup is needed.
func TestArchiveSync_ErrGapInProgress(t *testing.T) {
	name := wal.Segment{Timeline: 1, No: 3}.Name(syncSegSize)
	code, msg := archiveSyncGap(t, 3)
	if code != ExitFailure {
		t.Fatalf("archive-sync: exit %d (%s), want %d", code, msg, ExitFailure)
	}
	if strings.Contains(msg, "no longer in pg_wal") || !strings.Contains(msg, name+" is in pg_wal") || !strings.Contains(msg, "run archive-sync again") {
		t.Errorf("message %q; want it to say %s is in pg_wal and to run archive-sync again", msg, name)
	}

	// Segments 3 and 4 have left pg_wal (5 stored, 6 in progress): a
	// new basebackup.
	code, msg = archiveSyncGap(t, 5, 6)
	if code != ExitFailure || !strings.Contains(msg, "no longer in pg_wal; take a new basebackup") || strings.Contains(msg, "run archive-sync again") {
		t.Errorf("archive-sync with segments gone: exit %d, %q; want exit %d saying they are no longer in pg_wal", code, msg, ExitFailure)
	}
}

const syncSegSize = 1 << 20

// archiveSyncGap runs archive-sync on a site whose one backup starts in
// segment 3, with a pg_wal holding segments nos (the last one in
// progress), and returns its exit code and message.
func archiveSyncGap(t *testing.T, nos ...uint64) (int, string) {
	return archiveSyncGapArgs(t, nil, nos...)
}

// archiveSyncGapArgs is archiveSyncGap with more arguments for archive-sync.
func archiveSyncGapArgs(t *testing.T, args []string, nos ...uint64) (int, string) {
	return runErr(t, append([]string{"archive-sync", "--allow-root", "--config", gapSiteConfig(t, nos...)}, args...)...)
}

// gapSiteConfig writes archiveSyncGap's site and returns its configuration.
func gapSiteConfig(t *testing.T, nos ...uint64) string {
	const segSize, system = syncSegSize, 7123456789012345678
	dir := t.TempDir()
	pgdata := filepath.Join(dir, "data")
	for _, d := range []string{filepath.Join(pgdata, "pg_wal"), filepath.Join(pgdata, "global")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), binary.LittleEndian.AppendUint64(nil, system), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, no := range nos {
		name := wal.Segment{Timeline: 1, No: no}.Name(segSize)
		if err := os.WriteFile(filepath.Join(pgdata, "pg_wal", name), waltest.Segment(t, name, segSize, 0), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	store := filepath.Join(dir, "store")
	a := archivetest.Local(t, store, "s", &archive.Codec{})
	archivetest.PutBackupInfo(t, a, "2026-01-01_00-00_0", archivetest.SegmentBackupInfo(3, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), system, segSize))
	cfg := filepath.Join(dir, "hoard.json")
	// No server answers on the node: the newest local segment is taken
	// for the one being written.
	js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"pg_data_directory": %q, "pg_version": 150004,
		"nodes": [{"host": "127.0.0.1", "port": 1}],
		"object_storage": {"storage_type": "local", "directory": %q}}}}`, filepath.Join(dir, "state"), pgdata, store)
	if err := os.WriteFile(cfg, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A gap only at the segment left out as being written is not one a new
// basebackup closes: --create-new-backup-on-failure takes none (the node
// does not answer, so an attempt would fail the command with "the new
// basebackup failed") and exits 1 with the advice to run again; a gap
// before it still makes it try one.
func TestArchiveSync_NewBackupOnlyForGoneWAL(t *testing.T) {
	name := wal.Segment{Timeline: 1, No: 3}.Name(syncSegSize)
	code, msg := archiveSyncGapArgs(t, []string{"--create-new-backup-on-failure"}, 3)
	if code != ExitFailure || strings.Contains(msg, "basebackup failed") || !strings.Contains(msg, name+" is in pg_wal") {
		t.Errorf("gap at the segment being written: exit %d, %q; want exit %d saying %s is in pg_wal, no basebackup tried", code, msg, ExitFailure, name)
	}
	code, msg = archiveSyncGapArgs(t, []string{"--create-new-backup-on-failure"}, 5, 6)
	if code == 0 || !strings.Contains(msg, "the new basebackup failed") {
		t.Errorf("gap before the segment being written: exit %d, %q; want a basebackup tried (and failed: no server)", code, msg)
	}
}

// archive-sync --json prints an empty list of gaps, not null, when the
// archive is continuous.
func TestArchiveSync_JSONNoGaps(t *testing.T) {
	code, res, msg, _ := runSync(t, gapSiteConfig(t, 3, 4, 5))
	if code != ExitOK || res.Continuous == nil || !*res.Continuous {
		t.Fatalf("archive-sync: exit %d (%s), continuous %v; want 0, continuous", code, msg, res.Continuous)
	}
	if got := string(res.Gaps); got != "[]" {
		t.Errorf("wal_gaps %s, want []", got)
	}
}

// syncOutput is what archive-sync --json prints, as far as the tests of a
// real server look.
type syncOutput struct {
	Pushed     []string `json:"pushed"`
	InProgress string   `json:"segment_in_progress"`
	Flushed    string   `json:"server_flushed_lsn"`
	Continuous *bool    `json:"continuous"`
	NewBackup  string   `json:"new_basebackup"`
	// DamagedHistory is the refusal for a timeline history file stored
	// damaged, when there is one.
	DamagedHistory string `json:"damaged_history"`
	// Gaps is wal_gaps as printed.
	Gaps json.RawMessage `json:"wal_gaps"`
}

// runSync runs hoard archive-sync --json --allow-root with cfg and args,
// and returns its exit status, its output, its error message and its log.
func runSync(t *testing.T, cfg string, args ...string) (int, syncOutput, string, string) {
	t.Helper()
	return runSyncContext(context.Background(), t, cfg, args...)
}

// runSyncContext is runSync under ctx.
func runSyncContext(ctx context.Context, t *testing.T, cfg string, args ...string) (int, syncOutput, string, string) {
	t.Helper()
	app := App("test")
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	app.Before = func(c *cli.Context) error { // the log to errOut, not os.Stderr
		l, err := newLogger(&errOut, "info", c.String("log-format"), false)
		c.App.Metadata = map[string]any{"logger": l}
		return err
	}
	full := append([]string{"hoard", "--config", cfg, "archive-sync", "--json", "--allow-root"}, args...)
	err := app.RunContext(ctx, OrderArgs(app, full))
	var res syncOutput
	if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil && out.Len() > 0 {
		t.Fatalf("archive-sync --json: %v\n%s", jerr, out.String())
	}
	t.Logf("hoard archive-sync %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	if err != nil {
		return ExitCode(err), res, ErrorMessage(err), errOut.String()
	}
	return ExitOK, res, "", errOut.String()
}

// syncSiteConfig writes the configuration of site db storing into store,
// reading pg_wal from pgdata, whose one node is node.
func syncSiteConfig(t *testing.T, store storage.Config, pgdata string, node map[string]any) string {
	t.Helper()
	site := checkSite(t, store, config.ModePGReceiveXLog, node)
	site["pg_data_directory"] = pgdata
	return writeDBSiteConfigWith(t, site, map[string]any{"http_port": testio.FreePort(t)})
}

// storedWAL reports whether the local store holds segment name of site db.
func storedWAL(t *testing.T, store storage.Config, name string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(store.Directory, "db", "xlog", name))
	return err == nil
}

// syncCluster starts a PostgreSQL cluster of major with 1 MiB segments and
// takes a basebackup of it into a new local store, whose WAL nothing
// archives (a streaming site, no daemon running). The backup ends with a
// WAL switch, and the server is idle after it: its end segment is
// complete, the next one not begun.
func syncCluster(t *testing.T, major int) (*pgtest.Cluster, storage.Config) {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	return c, syncBackup(t, c)
}

// syncBackup takes a basebackup of c into a new local store, as
// syncCluster does, and returns the store.
func syncBackup(t *testing.T, c *pgtest.Cluster) storage.Config {
	t.Helper()
	store := storetest.Local(t)
	cfg := syncSiteConfig(t, store, c.DataDir, clusterNode(c))
	if code, out := runOutput(t, "--config", cfg, "basebackup", "--local", "--fast", "--no-wait"); code != ExitOK {
		t.Fatalf("basebackup: exit %d, want %d:\n%s", code, ExitOK, out)
	}
	return store
}

// backupEnd returns the end segment of the one basebackup of site db in
// the local store, from its metadata sidecar.
func backupEnd(t *testing.T, store storage.Config) string {
	t.Helper()
	return backupEndOf(t, store, "*")
}

// backupEndOf is backupEnd of backup name of several.
func backupEndOf(t *testing.T, store storage.Config, name string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(store.Directory, "db", "basebackup", name+archive.ControlSuffix+".metadata"))
	if err != nil || len(files) != 1 {
		t.Fatalf("backup metadata: %v %v, want one file", files, err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	if err := json.Unmarshal(data, &md); err != nil {
		t.Fatalf("%s: %v", files[0], err)
	}
	end, _ := md[archive.MetaEndWALSegment].(string)
	if !wal.IsSegmentName(end) {
		t.Fatalf("%s: no end segment: %s", files[0], data)
	}
	return end
}

// countBackups returns how many basebackups the local store holds for
// site db.
func countBackups(t *testing.T, store storage.Config) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(store.Directory, "db", "basebackup"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), archive.ControlSuffix) {
			n++
		}
	}
	return n
}

// TestArchiveSync_SwitchedSegment: on an idle server right after a WAL
// switch (a basebackup's end, pg_switch_wal), the switched segment is the
// newest in pg_wal but complete: the server's flush position is at the
// start of the next segment. archive-sync asks the server and stores it,
// the archive is continuous and exit 0, and
// --create-new-backup-on-failure takes no new basebackup. A segment the
// server is writing (its flush position inside it) is not stored, until
// it is switched. PostgreSQL 18 leaves the rest of a switched segment
// zero, page headers included; earlier majors write its page headers.
func TestArchiveSync_SwitchedSegment(t *testing.T) {
	pgtest.ForEachVersion(t, testSwitchedSegment)
}

func testSwitchedSegment(t *testing.T, major int) {
	c, store := syncCluster(t, major)
	cfg := syncSiteConfig(t, store, c.DataDir, clusterNode(c))
	end := backupEnd(t, store)
	t.Logf("after the backup ending in %s: flushed to %s", end, c.QueryString(t, "select pg_current_wal_flush_lsn()::text"))

	code, res, msg, _ := runSync(t, cfg, "--create-new-backup-on-failure")
	if code != ExitOK {
		t.Fatalf("archive-sync: exit %d (%s), want %d", code, msg, ExitOK)
	}
	if !storedWAL(t, store, end) || !slices.Contains(res.Pushed, end) {
		t.Errorf("the backup's end segment %s, complete, is not stored (pushed %v)", end, res.Pushed)
	}
	if res.Continuous == nil || !*res.Continuous {
		t.Errorf("archive not continuous after the sync")
	}
	if res.NewBackup != "" || countBackups(t, store) != 1 {
		t.Errorf("a new basebackup %q was taken for a gap the sync closes", res.NewBackup)
	}
	if res.Flushed == "" {
		t.Errorf("server_flushed_lsn not reported")
	}

	t.Run("Writing", func(t *testing.T) {
		// WAL in the next segment, flushed: its segment is being written.
		lsn := c.QueryString(t, "select pg_logical_emit_message(false, 'hoard-test', 'mid')::text")
		c.WaitTrue(t, time.Minute, "select pg_current_wal_flush_lsn() >= $1::pg_lsn", lsn)
		cur := c.QueryString(t, "select pg_walfile_name($1::pg_lsn)", lsn)
		code, res, msg, _ := runSync(t, cfg)
		if code != ExitOK {
			t.Fatalf("archive-sync: exit %d (%s), want %d", code, msg, ExitOK)
		}
		if storedWAL(t, store, cur) || res.InProgress != cur {
			t.Errorf("segment %s, being written, stored: %v; segment_in_progress %q", cur, storedWAL(t, store, cur), res.InProgress)
		}
		// Switched, it is complete.
		if got := c.SwitchWAL(t); got != cur {
			t.Fatalf("switched %s, want %s", got, cur)
		}
		if code, res, msg, _ = runSync(t, cfg); code != ExitOK || !storedWAL(t, store, cur) {
			t.Errorf("archive-sync after the switch: exit %d (%s), %s stored: %v, want %d and stored", code, msg, cur, storedWAL(t, store, cur), ExitOK)
		}
	})
}

// TestArchiveSync_ErrNodeUnreachable: when the node cannot be asked where
// the server's WAL is flushed, archive-sync leaves the newest segment in
// pg_wal out as the one being written, as before, and warns that it does
// so and why: the backup's end segment, complete after the switch, is a
// gap, exit 1, with the advice to run again.
func TestArchiveSync_ErrNodeUnreachable(t *testing.T) {
	c, store := syncCluster(t, pgtest.DebianMajor)
	cfg := syncSiteConfig(t, store, c.DataDir, closedNode)
	end := backupEnd(t, store)
	code, res, msg, log := runSync(t, cfg)
	if code != ExitFailure || !strings.Contains(msg, "run archive-sync again") {
		t.Errorf("archive-sync: exit %d (%s), want %d and the advice to run again", code, msg, ExitFailure)
	}
	if storedWAL(t, store, end) || res.InProgress != end {
		t.Errorf("%s stored: %v, segment_in_progress %q; want it left out", end, storedWAL(t, store, end), res.InProgress)
	}
	if !strings.Contains(log, "the newest segment in pg_wal is left out") {
		t.Errorf("no warning that the newest segment is left out without the server's position:\n%s", log)
	}
}

// TestArchiveSync_Standby: on a standby, the flush position is what it
// received (or replayed): after a switch on the idle primary (the end of
// a backup of the primary, then pg_switch_wal), the switched segments in
// the standby's pg_wal are complete and stored.
func TestArchiveSync_Standby(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})
	standby := pgtest.StartColdStandby(t, c)
	store := syncBackup(t, c)
	cfg := syncSiteConfig(t, store, standby.DataDir, clusterNode(standby))
	sw := c.SwitchWAL(t)
	standby.WaitTrue(t, time.Minute, "select pg_last_wal_receive_lsn() >= $1::pg_lsn", c.QueryString(t, "select pg_current_wal_flush_lsn()::text"))
	code, res, msg, _ := runSync(t, cfg, "--create-new-backup-on-failure")
	if code != ExitOK {
		t.Fatalf("archive-sync on the standby: exit %d (%s), want %d", code, msg, ExitOK)
	}
	if !storedWAL(t, store, sw) || !slices.Contains(res.Pushed, sw) {
		t.Errorf("switched segment %s not stored from the standby's pg_wal (pushed %v)", sw, res.Pushed)
	}
	if end := backupEnd(t, store); !storedWAL(t, store, end) {
		t.Errorf("the backup's end segment %s not stored", end)
	}
	if res.Continuous == nil || !*res.Continuous || res.NewBackup != "" || countBackups(t, store) != 1 {
		t.Errorf("continuous %v, new backup %q; want continuous and none", res.Continuous, res.NewBackup)
	}
}

// TestArchiveSync_CutCopyLeftOut: a node of the same database system that is
// not the server writing pg_data_directory (a primary, for a standby's
// data directory) has flushed further than the local copy of a segment
// holds: a copy whose WAL stops before its end, zeros after, is not
// stored as complete, and the log says to check the node; the whole
// copy, full of WAL to its end and no switch in it, is stored.
func TestArchiveSync_CutCopyLeftOut(t *testing.T) {
	const segSize = 1 << 20
	c := pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})
	start := c.QueryString(t, "select pg_current_wal_insert_lsn()::text")
	c.Exec(t, "create table r (id int, pad text)")
	c.Exec(t, "insert into r select g, repeat('x', 300) from generate_series(1, 20000) g")
	startLSN, err := pglogrepl.ParseLSN(start)
	if err != nil {
		t.Fatal(err)
	}
	full := wal.Segment{Timeline: 1, No: uint64(startLSN)/segSize + 1}
	name := full.Name(segSize)
	c.WaitTrue(t, time.Minute, "select pg_current_wal_flush_lsn() >= $1::pg_lsn", full.StartLSN(segSize).String())
	c.WaitTrue(t, time.Minute, "select pg_current_wal_flush_lsn() >= $1::pg_lsn", (full.StartLSN(segSize) + 2*segSize).String())
	data, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
	if err != nil {
		t.Fatal(err)
	}

	pgdata := t.TempDir()
	for _, d := range []string{"pg_wal", "global"} {
		if err := os.Mkdir(filepath.Join(pgdata, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	control, err := os.ReadFile(filepath.Join(c.DataDir, "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), control, 0o600); err != nil {
		t.Fatal(err)
	}
	cut := slices.Clone(data)
	clear(cut[segSize/2:])
	if err := os.WriteFile(filepath.Join(pgdata, "pg_wal", name), cut, 0o600); err != nil {
		t.Fatal(err)
	}
	store := storetest.Local(t)
	cfg := syncSiteConfig(t, store, pgdata, clusterNode(c))
	code, res, msg, log := runSync(t, cfg, "--no-verify")
	if code != ExitOK {
		t.Fatalf("archive-sync: exit %d (%s), want %d", code, msg, ExitOK)
	}
	if storedWAL(t, store, name) || res.InProgress != name {
		t.Errorf("cut copy of %s stored: %v, segment_in_progress %q; want it left out", name, storedWAL(t, store, name), res.InProgress)
	}
	if !strings.Contains(log, "the local copy's WAL stops before its end") {
		t.Errorf("no warning about the cut copy:\n%s", log)
	}

	if err := os.WriteFile(filepath.Join(pgdata, "pg_wal", name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, res, msg, _ = runSync(t, cfg, "--no-verify"); code != ExitOK || !storedWAL(t, store, name) {
		t.Errorf("archive-sync of the whole copy: exit %d (%s), stored %v; want %d and stored", code, msg, storedWAL(t, store, name), ExitOK)
	}
}

// TestGapAdvice_Flushed: a gap at the segment the server is writing, by
// its flush position, says so and how to finish it, not that it may be
// complete; one before it still needs a new basebackup.
func TestGapAdvice_Flushed(t *testing.T) {
	cur := wal.Segment{Timeline: 1, No: 7}.Name(syncSegSize)
	before := wal.Segment{Timeline: 1, No: 5}.Name(syncSegSize)
	got := gapAdvice([]verify.Gap{{First: cur, Last: cur, Count: 1}}, cur, "0/700100")
	if !strings.Contains(got, cur+" is in pg_wal, the segment the server is writing (its WAL is flushed to 0/700100)") ||
		!strings.Contains(got, "pg_switch_wal()") || strings.Contains(got, "basebackup") {
		t.Errorf("advice %q", got)
	}
	got = gapAdvice([]verify.Gap{{First: before, Last: cur, Count: 3}}, cur, "0/700100")
	if !strings.Contains(got, "the server is writing") || !strings.Contains(got, "take a new basebackup") {
		t.Errorf("advice for a gap from before the segment being written %q", got)
	}
}

// archive-sync's check after the sync followed the WAL below a timeline
// history file stored damaged (in local storage, a FIFO under
// 00000002.history) as if it were absent, and exited 0, the archive
// continuous, while hoard restore refuses every restore of the backup
// (PostgreSQL's latest probe asks for the file, wal-fetch fails on it).
// It exits 1 naming the file, as hoard check does.
func TestArchiveSync_ErrDamagedHistory(t *testing.T) {
	cfg := gapSiteConfig(t, 3, 4, 5)
	a := archivetest.Local(t, filepath.Join(filepath.Dir(cfg), "store"), "s", &archive.Codec{})
	archivetest.PushWAL(t, a, "00000002.history", []byte("1\t0/7000000\tno recovery target specified\n"), 7123456789012345678)
	key := a.Layout.WALKey("00000002.history")
	testio.ReplaceFile(t, filepath.Join(filepath.Dir(cfg), "store", filepath.FromSlash(key)), testio.OddEntries[0].Make)

	code, msg := runErr(t, "archive-sync", "--allow-root", "--config", cfg)
	if code != ExitFailure || !strings.Contains(msg, key+" is stored damaged") || !strings.Contains(msg, "not restorable") {
		t.Errorf("archive-sync with %s a FIFO: exit %d, %q; want exit %d saying the backup is not restorable, naming %s as stored damaged", key, code, msg, ExitFailure, key)
	}
	code, res, msg, _ := runSync(t, cfg)
	if code != ExitFailure || !strings.Contains(msg, key+" is stored damaged") || !strings.Contains(res.DamagedHistory, key+" is stored damaged") {
		t.Errorf("archive-sync --json with %s a FIFO: exit %d, %q, damaged_history %q; want exit %d naming it", key, code, msg, res.DamagedHistory, ExitFailure)
	}
}
