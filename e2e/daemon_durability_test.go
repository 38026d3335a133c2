package e2e

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// The tests in this file put the streaming daemon through what must lose
// no committed WAL, and end as an operator would: hoard verify --full finds
// every segment from the first backup on, and hoard restore of that backup
// recovers exactly the committed rows.

// verifyFullReport is the part of `hoard verify --full --json` the tests
// read.
type verifyFullReport struct {
	Backups []struct {
		Name    string   `json:"name"`
		Status  string   `json:"status"`
		Reach   string   `json:"reach_wal_segment"`
		Gaps    []any    `json:"wal_gaps"`
		Problem []string `json:"problems"`
	} `json:"backups"`
	Problems []string `json:"problems"`
}

// finishAndCheck writes a marker row, waits until its segment is stored,
// stops the daemon with SIGTERM, and checks the archive: no complete
// segment stored as a .partial (only the stop's copy of the segment in
// progress, past every complete one), the segment holding a record
// fsynced before the stop stored (as that copy, or whole when the stream
// ended on a segment boundary), no wal_hole_error, verify --full sound and
// reaching the marker, and a restore of backup with every committed row.
// It returns the restored cluster, running.
func (s *streamSite) finishAndCheck(t *testing.T, d *daemonProc, src *pgtest.Cluster, backup string) *pgtest.Cluster {
	t.Helper()
	src.Exec(t, "create table if not exists marker (id int)")
	src.Exec(t, "insert into marker values (42)")
	want := dataSummary(t, src)
	last := s.switchAndWaitStored(d, src, 2*time.Minute)
	// A record past last, fsynced by the daemon before the stop: the
	// SIGTERM then has a segment in progress to store as .partial
	// (otherwise only when the server wrote a standby snapshot or a
	// checkpoint in time), unless the server completed that segment
	// before the stop.
	after := lsnOf(t, src.QueryString(t, "select pg_logical_emit_message(false, 'hoard-e2e', 'after')::text"))
	d.waitFlushed(s.name, after, 2*time.Minute)
	if code := d.stop(syscall.SIGTERM, 90*time.Second); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}
	if strings.Contains(d.out.String(), "wal hole") {
		t.Errorf("the daemon reported a wal hole:\n%s", d.out.String())
	}
	if _, err := os.Stat(filepath.Join(s.alertDir, "wal_hole_error")); err == nil {
		t.Error("wal_hole_error raised")
	}
	stored := s.storedWAL()
	t.Logf("%d WAL objects stored", len(stored))
	// The daemon's SIGTERM stores the fsynced part of the segment it was
	// receiving as <segment>.partial (walstream/streamend.go): after
	// last, the server may have written a record or two (a standby
	// snapshot, a checkpoint) before the stop. That copy is the only
	// .partial allowed: it lies past last (and verify --full below finds
	// a hole before it). A .partial at or before last is a complete
	// segment left as a .partial.
	stopCopy := false
	for _, name := range stored {
		if !wal.IsPartialName(name) {
			continue
		}
		if seg := strings.TrimSuffix(name, wal.PartialSuffix); seg <= last {
			t.Errorf("%s stored as a .partial on a timeline that did not end (last complete segment %s)", name, last)
		} else {
			stopCopy = true
		}
	}
	// A stream that ended on a segment boundary has no segment in
	// progress: the server wrote the rest of the segment holding after
	// (autovacuum once the load stopped, say) and the stop stored it
	// whole, as it must (walstream's drain at a stop waits for queued
	// uploads too).
	afterSeg := src.QueryString(t, "select pg_walfile_name('"+after.String()+"')")
	if !stopCopy && !s.stored(afterSeg) {
		t.Errorf("neither a .partial copy of the segment in progress past %s nor the complete segment %s holding %s stored at the SIGTERM; the newest object is %s", last, afterSeg, after, stored[len(stored)-1])
	}

	out, errOut, err := s.hoard("verify", "--full", "--json")
	var rep verifyFullReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("verify --full --json: %v (exit %v)\n%s\n%s", jerr, err, out, errOut)
	}
	if err != nil || len(rep.Problems) > 0 || len(rep.Backups) == 0 {
		t.Errorf("verify --full: exit %v, report %+v", err, rep)
	}
	for _, b := range rep.Backups {
		if b.Status != "ok" || len(b.Gaps) > 0 || b.Reach < last {
			t.Errorf("verify --full: backup %s is %s with gaps %v, reaching %s (want %s)", b.Name, b.Status, b.Gaps, b.Reach, last)
		}
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir, "--basebackup", backup)
	c := pgtest.StartDataDir(t, src.Major, dir, noArchiving)
	// TestDaemonChaos's long variant (HOARD_CHAOS_LONG=1) replays about
	// 2.7 GB of WAL here, some 6 minutes on a busy 2-core machine.
	c.WaitRecoveryDone(t, 15*time.Minute)
	if got := dataSummary(t, c); got != want {
		t.Errorf("restored cluster has %s, source committed %s", got, want)
	}
	return c
}

// TestDaemonKillLoop kills hoard daemon with SIGKILL at random moments, 24
// times, under pgbench on a cluster with 1 MiB segments (several segments
// complete each second, so kills land inside every step of completing
// one), restarting it each time. Then the archive must be whole from the
// first backup on, and a restore must hold every committed transaction.
func TestDaemonKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	s := newMinIOStreamSite(t)
	src := s.startSource(pgtest.Options{})
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")

	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, false)
	first := s.listBackups()[0]

	// pgbench's transactions are what the restore must hold; a second
	// pgbench writing large rows (about 6 MB/s) makes several segments
	// complete every second, so that kills land inside the steps of
	// completing one.
	src.Exec(t, "create table filler (id int, pad text)")
	script := filepath.Join(t.TempDir(), "filler.sql")
	if err := os.WriteFile(script, []byte("insert into filler select g, repeat('x', 1000) from generate_series(1, 150) g;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const kills = 24
	load := startPgbench(t, src, "-T", "600", "-c", "2", "-n")
	filler := startPgbench(t, src, "-T", "600", "-c", "1", "-n", "-R", "40", "-f", script)
	for i := range kills {
		if i%4 == 0 {
			// Now and then let it stream, so that the loop makes progress
			// whatever the random delays.
			d.waitFor("streaming", time.Minute, func() bool {
				st, ok := d.status()
				return ok && st.Sites[s.name].WAL != nil && st.Sites[s.name].WAL.Connected
			})
		}
		time.Sleep(time.Duration(100+rand.IntN(700)) * time.Millisecond)
		d.stop(syscall.SIGKILL, 10*time.Second)
		d = s.startDaemon()
	}
	load.stop(t)
	filler.stop(t)
	want := src.QueryString(t, "select count(*)::text from filler")
	t.Logf("%d kills under load; %s filler rows", kills, want)
	c := s.finishAndCheck(t, d, src, first.Name)
	if got := c.QueryString(t, "select count(*)::text from filler"); got != want {
		t.Errorf("restored cluster has %s filler rows, source committed %s", got, want)
	}
}

// TestDaemonSpoolFullStorageDown runs the daemon with its spool on a
// 12 MiB tmpfs while MinIO is unreachable, under pgbench: the spool fills
// with segments that cannot be uploaded. With min_disk_free_bytes at 4 MiB
// and the timer check at its 10 s default, the guard asked before each new
// segment file must pause receiving before the disk is full (the WAL
// waits on the server, in the slot). Once MinIO is back the spool drains,
// receiving resumes, and nothing is missing.
func TestDaemonSpoolFullStorageDown(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	s, proxy := newProxiedStreamSite(t)
	spool := pgtest.MountTmpfs(t, 12)
	s.editConfig(func(cfg map[string]any) {
		cfg["backup_location"] = spool
		site := cfg["backup_sites"].(map[string]any)[s.name].(map[string]any)
		site["pg_receivexlog"] = map[string]any{"min_disk_free_bytes": 4 << 20}
	})
	src := s.startSource(pgtest.Options{})
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")

	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, false)
	first := s.listBackups()[0]

	proxy.down()
	load := startPgbench(t, src, "-T", "600", "-c", "2", "-n")
	d.waitFor("receiving paused by the disk guard", 3*time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].WAL != nil && st.Sites[s.name].WAL.Paused
	})
	// Paused, the slot holds the WAL: pgbench goes on committing.
	time.Sleep(2 * time.Second)
	if strings.Contains(d.out.String(), "no space left") || strings.Contains(d.out.String(), "spool disk full") {
		t.Errorf("the spool ran out of space:\n%s", tailLines(d.out.String(), 40))
	}
	proxy.up()
	d.waitFor("receiving resumed", 3*time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].WAL != nil && !st.Sites[s.name].WAL.Paused
	})
	load.stop(t)
	s.finishAndCheck(t, d, src, first.Name)
}
