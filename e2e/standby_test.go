package e2e

import (
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// startStandby makes a streaming hot standby of primary with Debian's
// pg_basebackup -R (PostgreSQL 15's tool: primary must be major 15) and
// starts it. The standby inherits the primary's postgresql.conf
// (max_wal_senders, wal_level replica) and pg_hba.conf (replication
// allowed over loopback), all a standby needs to serve hoard.
func startStandby(t *testing.T, primary *pgtest.Cluster) *pgtest.Cluster {
	t.Helper()
	data := filepath.Join(pgtest.TempDir(t), "standby")
	cmd := exec.Command(pgtest.Tool(t, "pg_basebackup"), "-h", primary.Host, "-p", strconv.Itoa(primary.Port),
		"-U", "postgres", "-D", data, "-R", "-X", "stream", "-c", "fast")
	cmd.Env = minimalEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	standby := pgtest.StartDataDir(t, primary.Major, data, nil)
	if got := standby.QueryString(t, "select pg_is_in_recovery()::text"); got != "true" {
		t.Fatalf("standby pg_is_in_recovery() = %s, want true", got)
	}
	return standby
}

// startPair starts a PostgreSQL 15 primary with data checksums, 1 MiB
// segments and the settings in conf, holding tl_rows with 100 rows, and a
// hot standby of it (with the same settings).
func startPair(t *testing.T, conf map[string]string) (primary, standby *pgtest.Cluster) {
	t.Helper()
	primary = pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1, DataChecksums: true, Conf: conf})
	primary.Exec(t, "create table tl_rows (id int primary key, phase text not null)")
	primary.Exec(t, "insert into tl_rows select g, 'before' from generate_series(1, 100) g")
	return primary, startStandby(t, primary)
}

// waitReplayed waits until standby has replayed the primary's WAL up to
// the primary's current position.
func waitReplayed(t *testing.T, primary, standby *pgtest.Cluster) {
	t.Helper()
	lsn := primary.QueryString(t, "select pg_current_wal_lsn()::text")
	standby.WaitTrue(t, time.Minute, "select pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn)
}

// standbySite is a streaming site whose only node is standby (the daemon
// streams from it over a slot it makes there), with no backup schedule:
// the test takes each backup with hoard basebackup --local.
func standbySite(t *testing.T, standby *pgtest.Cluster, partialInterval int) *streamSite {
	t.Helper()
	s := newLocalStreamSite(t)
	s.use(standby)
	s.setSiteKey("basebackup_interval_hours", nil)
	s.setSiteKey("pg_data_directory", standby.DataDir)
	s.setSiteKey("wal_partial_upload_interval", partialInterval)
	return s
}

// waitStreaming starts the daemon and waits until it streams.
func (s *streamSite) startStreaming() *daemonProc {
	s.t.Helper()
	d := s.startDaemon()
	d.waitFor("WAL streaming", time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].WAL != nil && st.Sites[s.name].WAL.Connected
	})
	return d
}

// restoreAndStart restores backup (with extra restore flags) into a new
// directory, runs pg_verifybackup on it, starts it and waits for the end
// of recovery.
func (s *site) restoreAndStart(t *testing.T, major int, backup string, extra ...string) *pgtest.Cluster {
	t.Helper()
	target := filepath.Join(pgtest.TempDir(t), "data")
	args := append([]string{"restore", "--target-dir", target, "--basebackup", backup, "--archive-mode", "off"}, extra...)
	s.mustHoard(args...)
	if major == pgtest.DebianMajor {
		// -n: the restored pg_wal is empty (WAL comes from the archive).
		// global/pg_control differs from the manifest by design: restore
		// sets its checkpoint location to 0/DEAD
		// (TestRestoreTablespaceVerify checks it with pg_controldata).
		verify := exec.Command(pgtest.Tool(t, "pg_verifybackup"), "-n", "-i", "global/pg_control", target)
		pgtest.RunAs(verify)
		if out, err := verify.CombinedOutput(); err != nil {
			t.Errorf("pg_verifybackup: %v\n%s", err, out)
		}
	}
	c := pgtest.StartDataDir(t, major, target, noArchiving)
	c.WaitRecoveryDone(t, time.Minute)
	return c
}

// backupEachMode takes a backup of standby with hoard basebackup in each
// mode, local-tar (hoard-source data-directory) and basic (base-backup),
// each after 100 new rows on primary numbered from next, and restores it
// right away: it has the primary's rows.
func backupEachMode(t *testing.T, s *streamSite, primary, standby *pgtest.Cluster, next int) {
	t.Helper()
	for _, mode := range []string{"local-tar", "basic"} {
		t.Run(mode, func(t *testing.T) {
			primary.Exec(t, "insert into tl_rows select g, $1 from generate_series($2::int, $2::int + 99) g", mode, next)
			next += 100
			waitReplayed(t, primary, standby)
			want := rowsOf(t, primary)
			s.setSiteKey("basebackup_mode", mode)
			var b backupJSON
			if out := s.mustHoard("basebackup", "--local", "--json"); json.Unmarshal([]byte(out), &b) != nil {
				t.Fatalf("hoard basebackup --json:\n%s", out)
			}
			if got, want := b.Metadata["hoard-source"], map[string]string{"local-tar": "data-directory", "basic": "base-backup"}[mode]; got != want {
				t.Errorf("backup %s: hoard-source %q, want %q", b.Name, got, want)
			}
			c := s.restoreAndStart(t, primary.Major, b.Name)
			if got := rowsOf(t, c); got != want {
				t.Errorf("restored from the standby's %s backup right after it:\n%.80s\nthe primary has\n%.80s", mode, got, want)
			}
			c.Stop(t)
		})
	}
}

// TestStandby_Backup points a site at a hot standby of a PostgreSQL 15
// primary with data checksums, and at the standby only: the daemon
// streams WAL from it over a slot on the standby (cascading replication)
// and stores the segment in progress every second
// (wal_partial_upload_interval). hoard basebackup takes a backup of the
// standby in each mode, local-tar (pg_backup_start/stop on the standby,
// its data directory read here) and basic (BASE_BACKUP from the standby),
// while the primary is idle: the backup ends in a segment the primary has
// not finished, so it is restorable at once only through the stored
// .partial, and the command waits for that. Each backup restored
// right away (pg_verifybackup, then recovery) has the primary's rows; a
// restore to an LSN between two later writes on the primary has the
// first and not the second; hoard verify sees continuous WAL. A backup
// taken under pgbench load on the primary restores every committed
// transaction; hoard check says the node is a standby.
func TestStandby_Backup(t *testing.T) {
	primary, standby := startPair(t, nil)
	s := standbySite(t, standby, 1)
	d := s.startStreaming()

	backupEachMode(t, s, primary, standby, 101)

	t.Run("PITR", func(t *testing.T) {
		bs := s.listBackups()
		primary.Exec(t, "insert into tl_rows values (10001, 'kept')")
		want := rowsOf(t, primary)
		target := primary.QueryString(t, "select pg_current_wal_insert_lsn()::text")
		primary.Exec(t, "insert into tl_rows values (10002, 'after-target')")
		s.switchAndWaitStored(d, primary, time.Minute)
		c := s.restoreAndStart(t, primary.Major, bs[len(bs)-1].Name, "--target-lsn", target)
		if got := rowsOf(t, c); got != want {
			t.Errorf("restored to %s:\n%.200s\nwant\n%.200s", target, got, want)
		}
		s.mustHoard("verify") // exits 1 on a gap in the WAL after a backup
	})

	// A backup of the standby taken under pgbench load on the primary:
	// restored to the end of the archive after the load, it has every
	// committed transaction and the marker row; the WAL the daemon
	// streamed from the standby is continuous (hoard verify).
	t.Run("Load", func(t *testing.T) {
		pgtest.Pgbench(t, primary, "-i", "-s", "1", "-q")
		primary.Exec(t, "create table marker (id int)")
		load := startPgbench(t, primary, "-T", "8", "-c", "2", "-n")
		time.Sleep(2 * time.Second)
		var b backupJSON
		if out := s.mustHoard("basebackup", "--local", "--json"); json.Unmarshal([]byte(out), &b) != nil {
			t.Fatalf("hoard basebackup --json:\n%s", out)
		}
		load.wait(t)
		primary.Exec(t, "insert into marker values (1)")
		want := dataSummary(t, primary)
		s.switchAndWaitStored(d, primary, time.Minute)
		s.mustHoard("verify")
		c := s.restoreAndStart(t, primary.Major, b.Name)
		if got := dataSummary(t, c); got != want {
			t.Errorf("restored the backup taken under load: %s, the primary has %s", got, want)
		}
	})

	// hoard check on the standby: it says it is one; --archive-switch
	// cannot end a segment there and says what to do instead.
	t.Run("Check", func(t *testing.T) {
		out := s.mustHoard("check")
		if !strings.Contains(out, "a standby (in recovery)") || strings.Contains(out, "wal_partial_upload_interval is 0") {
			t.Errorf("hoard check on a standby, with wal_partial_upload_interval 1:\n%s", out)
		}
		out, _, err := s.hoard("check", "--archive-switch")
		if code := exitCode(err); code != 1 || !strings.Contains(out, "FAILED   archive switch: postgresql node 0 is a standby") ||
			!strings.Contains(out, "pg_switch_wal() on the primary") {
			t.Errorf("hoard check --archive-switch on a standby: exit %d, want 1 and what to do\n%s", code, out)
		}
	})
}

// TestStandby_BackupIdlePrimary takes a local-tar backup of a standby
// whose primary writes nothing, its daemon (which streams from the
// standby with wal_partial_upload_interval 0) stopped: the backup's WAL
// ends in a segment the primary has not finished, and nothing archives
// it. hoard basebackup must not report success for a backup no restore
// can use: it waits for that WAL (--wal-timeout), then fails, saying what
// it waits for and what to do, with the backup stored. Once the daemon
// runs again and the primary switches segments, the backup restores.
func TestStandby_BackupIdlePrimary(t *testing.T) {
	// A running daemon would store the backup's end segment as a .partial
	// within a minute (TestStandby_CLIBackupIdlePrimary).
	primary, s, want := idleStandbyDaemonStopped(t)

	out, errOut, err := s.hoard("basebackup", "--local", "--wal-timeout", "3s")
	if code := exitCode(err); code != 1 {
		t.Errorf("hoard basebackup of a standby whose primary is idle: exit %d, want 1\n%s", code, out)
	}
	for _, w := range []string{"standby", "not archived", "pg_switch_wal()", "wal_partial_upload_interval"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("hoard basebackup's error does not say %q:\n%s", w, errOut)
		}
	}
	// hoard check fails, the backup's WAL not archived yet, and says why:
	// where the archive ends, or, when it holds nothing from the backup's
	// start (the backup starts in the segment the primary writes), that.
	out, _, err = s.hoard("check")
	if !strings.Contains(out, "warning  postgresql node 0: wal_partial_upload_interval is 0") || exitCode(err) != 1 ||
		!strings.Contains(out, "is not restorable yet: the archive ends in ") && !strings.Contains(out, "is not restorable yet: the archive holds none of its WAL") {
		t.Errorf("hoard check, a standby's backup waiting for its WAL, wal_partial_upload_interval 0: exit %d\n%s", exitCode(err), out)
	}
	bs := s.listBackups()
	if len(bs) != 1 {
		t.Fatalf("hoard list: %d backups, want the one stored", len(bs))
	}
	if _, errOut, err := s.hoard("restore", "--target-dir", filepath.Join(pgtest.TempDir(t), "early"), "--basebackup", bs[0].Name); err == nil || !strings.Contains(errOut, bs[0].EndWALSegment) {
		t.Errorf("restore before the backup's WAL is archived: %v, want an error naming %s\n%s", err, bs[0].EndWALSegment, errOut)
	}

	d := s.startStreaming()
	s.switchAndWaitStored(d, primary, time.Minute)
	c := s.restoreAndStart(t, primary.Major, bs[0].Name)
	if got := rowsOf(t, c); got != want {
		t.Errorf("restored:\n%.80s\nthe primary had\n%.80s", got, want)
	}
}

// TestStandby_BackupMajors takes a backup of a standby in each mode,
// local-tar and basic (BASE_BACKUP from the standby), on the oldest and
// newest majors under test other than 15 (pg_start_backup/pg_stop_backup
// on 13 and 14, pg_backup_start/stop from 15) while the primary is idle,
// with the daemon streaming from the standby and storing the segment in
// progress every second, and restores each right away: it has the
// primary's rows.
func TestStandby_BackupMajors(t *testing.T) {
	vs := pgtest.Versions()
	for _, major := range []int{vs[0], vs[len(vs)-1]} {
		if major == pgtest.DebianMajor {
			continue // TestStandby_Backup
		}
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			primary := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1, DataChecksums: true})
			primary.Exec(t, "create table tl_rows (id int primary key, phase text not null)")
			standby := pgtest.StartColdStandby(t, primary)
			s := standbySite(t, standby, 1)
			s.startStreaming()
			backupEachMode(t, s, primary, standby, 1)
		})
	}
}

// TestStandby_BackupIncremental takes a PostgreSQL 17+ block-level
// incremental backup of a standby (summarize_wal = on there; the
// standby inherits the primary's settings) on top of a full basic backup
// of it. Until the primary checkpoints, PostgreSQL refuses it (a
// standby's backup starts at the last checkpoint it replayed, before the
// parent's end), and hoard says so and what to do; after a CHECKPOINT on
// the primary its parent is the full backup, and the chain restored has
// the rows written between the two backups.
func TestStandby_BackupIncremental(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	if major < 17 {
		pgtest.Unavailable(t, "PostgreSQL 17 or later for incremental backups (newest: %d)", major)
	}
	primary := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1, DataChecksums: true,
		Conf: map[string]string{"summarize_wal": "on"}})
	primary.Exec(t, "create table tl_rows (id int primary key, phase text not null)")
	primary.Exec(t, "insert into tl_rows select g, 'full' from generate_series(1, 1000) g")
	standby := pgtest.StartColdStandby(t, primary)
	s := standbySite(t, standby, 1)
	s.setSiteKey("basebackup_mode", "basic")
	s.startStreaming()
	waitReplayed(t, primary, standby)
	var full, inc backupJSON
	if out := s.mustHoard("basebackup", "--local", "--json"); json.Unmarshal([]byte(out), &full) != nil {
		t.Fatalf("hoard basebackup --json:\n%s", out)
	}
	primary.Exec(t, "update tl_rows set phase = 'incremental' where id % 10 = 0")
	primary.Exec(t, "insert into tl_rows select g, 'incremental' from generate_series(1001, 1100) g")
	waitReplayed(t, primary, standby)
	want := rowsOf(t, primary)
	// No checkpoint on the primary since the full backup: the standby's
	// backup would start where the full one did, before its end, which
	// PostgreSQL refuses; hoard says why and what to do.
	if _, errOut, err := s.hoard("basebackup", "--incremental"); exitCode(err) != 1 ||
		!strings.Contains(errOut, "replayed no checkpoint of its primary") || !strings.Contains(errOut, "CHECKPOINT on the primary") {
		t.Errorf("hoard basebackup --incremental of a standby, no checkpoint on the primary since the parent: exit %d, want 1 saying why\n%s", exitCode(err), errOut)
	}
	primary.Exec(t, "checkpoint")
	waitReplayed(t, primary, standby)
	if out := s.mustHoard("basebackup", "--incremental", "--json"); json.Unmarshal([]byte(out), &inc) != nil {
		t.Fatalf("hoard basebackup --incremental --json:\n%s", out)
	}
	if got := inc.Metadata["hoard-incremental-parent"]; got != full.Name {
		t.Fatalf("incremental backup %s of the standby: parent %q, want the full backup %s", inc.Name, got, full.Name)
	}
	c := s.restoreAndStart(t, major, inc.Name)
	if got := rowsOf(t, c); got != want {
		t.Errorf("restored the incremental backup's chain:\n%.200s\nthe primary has\n%.200s", got, want)
	}
}

// TestStandby_BackupArchiveAlways backs up a standby that archives its
// own WAL through hoard wal-push (archive_mode = always, the only mode in
// which a standby archives), site in archive_command mode, while the
// primary is idle: PostgreSQL's pg_backup_stop on such a standby waits,
// without end, for a segment the primary has not finished. hoard
// basebackup must not hang there: it waits --wal-timeout and says why,
// and once the primary switches segments the backup restores.
func TestStandby_BackupArchiveAlways(t *testing.T) {
	// Both archive into the site (the same segments: wal-push stores a
	// segment once), from the primary's first segment on.
	s := newSite(t, siteOptions{})
	primary, standby := startPair(t, map[string]string{"archive_mode": "always", "archive_command": s.archiveCommand()})
	s.use(standby)
	s.setSiteKey("pg_data_directory", standby.DataDir)
	s.setSiteKey("basebackup_mode", "local-tar")
	primary.Exec(t, "insert into tl_rows select g, 'idle-after' from generate_series(101, 200) g")
	waitReplayed(t, primary, standby)
	want := rowsOf(t, primary)

	done := make(chan error, 1)
	var errOut string
	go func() {
		var err error
		_, errOut, err = s.hoard("basebackup", "--wal-timeout", "3s")
		done <- err
	}()
	select {
	case err := <-done:
		if code := exitCode(err); code != 1 || !strings.Contains(errOut, "pg_switch_wal()") {
			t.Errorf("hoard basebackup of an archive_mode = always standby with an idle primary: exit %d, want 1 saying what to do\n%s", code, errOut)
		}
	case <-time.After(time.Minute):
		t.Fatalf("hoard basebackup of an archive_mode = always standby with an idle primary still runs after a minute (--wal-timeout 3s)")
	}
	bs := s.listBackups()
	if len(bs) != 1 {
		t.Fatalf("hoard list: %d backups, want the one stored", len(bs))
	}
	primary.Exec(t, "select pg_switch_wal()")
	standby.WaitTrue(t, time.Minute, "select coalesce(last_archived_wal >= $1, false) from pg_stat_archiver", bs[0].EndWALSegment)
	c := s.restoreAndStart(t, primary.Major, bs[0].Name)
	if got := rowsOf(t, c); got != want {
		t.Errorf("restored:\n%.80s\nthe primary had\n%.80s", got, want)
	}
}

// TestStandby_DaemonBackupIdlePrimary has the daemon take its own
// (scheduled) backup of a standby whose primary writes nothing, with
// wal_partial_upload_interval 0: the backup ends in the segment the
// primary has not finished, which nothing completes. The daemon streams
// that WAL itself and stores the segment in progress as the .partial
// once it has received the backup's end, so the backup is restorable at
// once without any write on the primary: hoard check passes, and the
// backup restores with the primary's rows, its end segment stored only
// as that .partial.
func TestStandby_DaemonBackupIdlePrimary(t *testing.T) {
	primary, standby := startPair(t, nil)
	s := standbySite(t, standby, 0)
	s.setSiteKey("basebackup_mode", "local-tar")
	s.setSiteKey("basebackup_interval_hours", 24) // none stored: one at once
	// Rows after the segment switch that made the standby: the
	// standby's replay position is in the segment the primary writes.
	primary.Exec(t, "insert into tl_rows select g, 'idle-after' from generate_series(101, 200) g")
	waitReplayed(t, primary, standby)
	want := rowsOf(t, primary)

	d := s.startDaemon()
	d.waitFirstBackup(s.name, 2*time.Minute, true)
	bs := s.listBackups()
	if len(bs) != 1 {
		t.Fatalf("hoard list: %d backups, want the daemon's one", len(bs))
	}
	end := bs[0].EndWALSegment
	d.waitFor("the backup's end segment "+end+" stored as a .partial", time.Minute, func() bool {
		return s.stored(end + ".partial")
	})
	if s.stored(end) {
		t.Errorf("the backup's end segment %s is stored complete: the primary was to stay idle", end)
	}
	d.waitFor("the daemon's log saying so", time.Minute, func() bool {
		return strings.Contains(d.out.String(), "the standby backup's WAL is stored through its end")
	})
	if out, _, err := s.hoard("check"); exitCode(err) != 0 || strings.Contains(out, "not restorable yet") {
		t.Errorf("hoard check after the daemon's backup of a standby, idle primary: exit %d\n%s", exitCode(err), out)
	}
	c := s.restoreAndStart(t, primary.Major, bs[0].Name)
	if got := rowsOf(t, c); got != want {
		t.Errorf("restored the daemon's backup right after it:\n%.80s\nthe primary has\n%.80s", got, want)
	}
}

// TestStandby_DaemonResumesBackupWAL takes a backup of a standby with
// hoard basebackup --no-wait while the daemon, which streams from the
// standby with wal_partial_upload_interval 0, is stopped, its primary
// idle: nothing stores the segment the backup ends in. Started again,
// the daemon sees the newest backup's WAL is not stored and stores that
// segment as the .partial once its receiver has it, so the backup
// restores without any write on the primary.
func TestStandby_DaemonResumesBackupWAL(t *testing.T) {
	primary, s, want := idleStandbyDaemonStopped(t)
	var b backupJSON
	if out := s.mustHoard("basebackup", "--local", "--no-wait", "--json"); json.Unmarshal([]byte(out), &b) != nil {
		t.Fatalf("hoard basebackup --json:\n%s", out)
	}
	end := b.EndWALSegment
	if end == "" || s.stored(end) || s.partialThrough(end, b.EndLSN) {
		t.Fatalf("backup %s: its WAL through %s (segment %q) already stored before the daemon runs again", b.Name, b.EndLSN, end)
	}

	d := s.startStreaming()
	d.waitFor("the backup's end segment "+end+" stored as a .partial through "+b.EndLSN, time.Minute, func() bool {
		return s.partialThrough(end, b.EndLSN)
	})
	c := s.restoreAndStart(t, primary.Major, b.Name)
	if got := rowsOf(t, c); got != want {
		t.Errorf("restored:\n%.80s\nthe primary had\n%.80s", got, want)
	}
}

// TestStandby_CLIBackupIdlePrimary takes a backup of a standby with hoard
// basebackup --local (the command, not the daemon's schedule: as an
// operator does, or an incremental backup, always taken in the command)
// while the daemon streams from the standby with
// wal_partial_upload_interval 0 and the primary is idle. The daemon sees
// the new backup in the site and stores the segment it ends in as the
// .partial, so the command, which waits for that WAL, returns success,
// and the backup restores right after it with the primary's rows, no
// write on the primary. The command tells the daemon of the backup over
// its HTTP API, which then lists the backups at once rather than within
// the minute (the command took 15 s here, 75 s untold).
func TestStandby_CLIBackupIdlePrimary(t *testing.T) {
	primary, standby := startPair(t, nil)
	s := standbySite(t, standby, 0)
	s.setSiteKey("basebackup_mode", "local-tar")
	d := s.startStreaming()
	primary.Exec(t, "insert into tl_rows select g, 'idle-after' from generate_series(101, 200) g")
	waitReplayed(t, primary, standby)
	want := rowsOf(t, primary)

	started := time.Now()
	out, errOut, err := s.hoard("basebackup", "--local", "--json")
	took := time.Since(started)
	var b backupJSON
	if code := exitCode(err); code != 0 || json.Unmarshal([]byte(out), &b) != nil {
		t.Fatalf("hoard basebackup --local of a standby, idle primary, the daemon streaming: exit %d, want 0\n%s\n%s", code, out, errOut)
	}
	for _, w := range []string{"waiting for the archive to hold the standby backup's WAL", "at_most=5m0s", "segment=" + b.EndWALSegment,
		"A hoard daemon streaming this site's WAL stores the segment as a .partial within about a minute",
		"told the running daemon of the backup"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("hoard basebackup's output while it waits does not say %q:\n%s", w, errOut)
		}
	}
	end := b.EndWALSegment
	if !s.stored(end+".partial") || s.stored(end) {
		t.Errorf("the backup's end segment %s: .partial stored %v, complete stored %v; want the .partial only (idle primary)",
			end, s.stored(end+".partial"), s.stored(end))
	}
	if log := d.out.String(); !strings.Contains(log, b.Name) || !strings.Contains(log, "told of a stored backup: listing the backups") {
		t.Errorf("the daemon's log does not say it was told of the backup and name the backup %s it stored the WAL of", b.Name)
	}
	// Not asserted (the standby's WAL sender and the command's polling
	// set it): told, the daemon lists the backups at once, untold within
	// the minute.
	t.Logf("hoard basebackup --local returned after %v", took)
	c := s.restoreAndStart(t, primary.Major, b.Name)
	if got := rowsOf(t, c); got != want {
		t.Errorf("restored right after hoard basebackup returned:\n%.80s\nthe primary has\n%.80s", got, want)
	}
}

// idleStandbyDaemonStopped starts a primary and its standby, a local-tar
// site on the standby with wal_partial_upload_interval 0, and its daemon
// long enough to create the slot, then stops the daemon and writes rows
// on the primary after the segment switch that made the standby, so the
// standby's replay position is in the segment the primary writes. It
// returns the primary, the site and the primary's rows.
//
// The daemon's stop stores the segment it was receiving as a .partial
// when WAL reached it (walstream's stream-end copy), and the primary
// writes some on its own after the switch (a standby snapshot within
// 15 s): so the daemon is made to receive WAL there before its stop, and
// the segment the rows go to is always stored as a .partial that holds
// none of them.
func idleStandbyDaemonStopped(t *testing.T) (*pgtest.Cluster, *streamSite, string) {
	t.Helper()
	primary, standby := startPair(t, nil)
	s := standbySite(t, standby, 0)
	s.setSiteKey("basebackup_mode", "local-tar")
	d := s.startStreaming() // creates the slot
	after := lsnOf(t, primary.QueryString(t, "select pg_logical_emit_message(false, 'hoard-e2e', 'before the stop')::text"))
	waitReplayed(t, primary, standby)
	d.waitFlushed(s.name, after, time.Minute)
	if code := d.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("hoard daemon: exit %d after SIGTERM, want 0", code)
	}
	primary.Exec(t, "insert into tl_rows select g, 'idle-after' from generate_series(101, 200) g")
	waitReplayed(t, primary, standby)
	return primary, s, rowsOf(t, primary)
}

// partialThrough reports whether xlog/<seg>.partial is stored and holds
// the WAL up to lsn (1 MiB segments): a stored .partial holds the WAL from
// the segment's start, not padded. One that cannot be read (replaced
// while read) does not count.
func (s *streamSite) partialThrough(seg, lsn string) bool {
	s.t.Helper()
	const segSize = 1 << 20
	start, err := wal.ParseSegmentName(seg, segSize)
	if err != nil {
		s.t.Fatal(err)
	}
	want, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		s.t.Fatalf("LSN %q: %v", lsn, err)
	}
	rc, _, err := (&archive.Codec{}).Open(s.t.Context(), s.store, s.name+"/xlog/"+seg+wal.PartialSuffix)
	if err != nil {
		return false
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	return err == nil && start.StartLSN(segSize)+pglogrepl.LSN(n) >= want
}
