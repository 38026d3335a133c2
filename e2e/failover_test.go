package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// walStatus is the site's wal object of GET /status, with the fields
// the failover test reads.
type walStatus struct {
	Connected bool   `json:"connected"`
	Timeline  int32  `json:"timeline"`
	Flushed   string `json:"flushed_lsn"`
	LastError string `json:"last_error"`
	// FormerSlot is set once the daemon created its slot on a server
	// that lacked it after it had streamed through it elsewhere.
	FormerSlot *struct {
		Slot             string `json:"slot"`
		Timeline         int32  `json:"timeline"`
		StreamedTimeline int32  `json:"streamed_timeline"`
		Hint             string `json:"hint"`
	} `json:"former_slot"`
	Holes []struct {
		First string `json:"first"`
		Last  string `json:"last"`
	} `json:"holes"`
}

// walStatusOf fetches the site's wal status; ok is false while the daemon
// does not answer.
func (d *daemonProc) walStatusOf(site string) (walStatus, bool) {
	var st struct {
		Sites map[string]struct {
			WAL *walStatus `json:"wal"`
		} `json:"backup_sites"`
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/status", d.s.httpPort))
	if err != nil {
		return walStatus{}, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(body, &st) != nil || st.Sites[site].WAL == nil {
		return walStatus{}, false
	}
	return *st.Sites[site].WAL, true
}

// TestDaemonFailover is the weekly failover of a site under Patroni or
// repmgr: hoard daemon streams from the primary through the address the
// site names (a loopback proxy: the virtual IP), the primary goes down,
// its streaming standby is promoted to timeline 2 and the address moves to
// it. The promoted server has no slot of the daemon's. The daemon must
// create its slot there, store 00000002.history and timeline 1's last
// segment as its .partial, stream timeline 2 with no hole reported, and
// take a backup on timeline 2 when asked. Then hoard verify exits 0, and
// restores bring back the promoted server's rows: the latest (from the
// backup taken after the failover) and a --target-time between two
// batches committed on timeline 2 (from the backup taken before it,
// crossing the switch).
func TestDaemonFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	for _, major := range []int{15, 17} {
		t.Run("PG"+strconv.Itoa(major), func(t *testing.T) { testDaemonFailover(t, major) })
	}
}

// startFailoverSite starts a primary of major with 1 MB segments and 100
// rows in tl_rows, its streaming standby, and a local site whose daemon
// streams from the primary through proxy (the virtual IP the failover
// tests move), and waits for the daemon's first backup and for its WAL
// streaming.
func startFailoverSite(t *testing.T, major int) (primary, standby *pgtest.Cluster, proxy *tcpProxy, s *streamSite, d *daemonProc) {
	t.Helper()
	primary = pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	primary.Exec(t, "create table tl_rows (id int primary key, phase text not null)")
	primary.Exec(t, "insert into tl_rows select g, 'before-backup' from generate_series(1, 100) g")
	standby = pgtest.StartColdStandby(t, primary)
	proxy = newTCPProxy(t, net.JoinHostPort(primary.Host, strconv.Itoa(primary.Port)))
	s = newLocalStreamSite(t)
	s.use(primary)
	s.env = append(s.env, "PGPORT="+strconv.Itoa(proxy.port()))
	d = s.startDaemon()
	d.waitFirstBackup(s.name, 2*time.Minute, true)
	d.waitFor("WAL streaming from the primary", time.Minute, func() bool {
		st, ok := d.walStatusOf(s.name)
		return ok && st.Connected
	})
	// The first slot of a new site leaves nothing behind.
	if st, _ := d.walStatusOf(s.name); st.FormerSlot != nil || strings.Contains(d.out.String(), formerSlotWarning) {
		t.Errorf("a new site's first slot: /status wal.former_slot %+v, or the log warns of a slot left behind:\n%s", st.FormerSlot, tailLines(d.out.String(), 20))
	}
	return primary, standby, proxy, s, d
}

// formerSlotWarning is the warning the daemon logs when it created its
// slot on a server that lacked it, after streaming through it elsewhere.
const formerSlotWarning = "created the replication slot on a server that lacked it"

// checkFormerSlot checks what the daemon tells of the slot it left on the
// server it streamed from before the address moved: the warning, once,
// naming the slot and how to drop it, and /status wal.former_slot with the
// promoted server's timeline tli and the timeline streamed before it.
func (s *streamSite) checkFormerSlot(d *daemonProc, tli, streamed int32) {
	s.t.Helper()
	drop := "pg_drop_replication_slot('hoard_e2e')"
	log := d.out.String()
	if n := strings.Count(log, formerSlotWarning); n != 1 {
		s.t.Errorf("the log warns %d times %q, want once:\n%s", n, formerSlotWarning, tailLines(log, 30))
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, formerSlotWarning) && (!strings.Contains(line, "WRN") || !strings.Contains(line, drop)) {
			s.t.Errorf("the warning is not at warn level or does not say %s:\n%s", drop, line)
		}
	}
	st, _ := d.walStatusOf(s.name)
	if f := st.FormerSlot; f == nil || f.Slot != "hoard_e2e" || f.Timeline != tli || f.StreamedTimeline != streamed || !strings.Contains(f.Hint, drop) {
		s.t.Errorf("/status wal.former_slot %+v, want slot hoard_e2e, timeline %d, streamed_timeline %d and a hint saying %s", f, tli, streamed, drop)
	}
}

func testDaemonFailover(t *testing.T, major int) {
	primary, standby, proxy, s, d := startFailoverSite(t, major)
	before := s.listBackups()

	// Timeline 1: rows the daemon acknowledged to the primary, the last
	// of them in the segment the primary is writing when it stops.
	primary.Exec(t, "insert into tl_rows select g, 'timeline-1' from generate_series(101, 200) g")
	s.switchAndWaitStored(d, primary, time.Minute)
	primary.Exec(t, "insert into tl_rows select g, 'timeline-1-last' from generate_series(201, 250) g")
	d.waitFlushed(s.name, lsnOf(t, primary.QueryString(t, "select pg_current_wal_lsn()::text")), time.Minute)
	waitReplayed(t, primary, standby)

	// The failover: the primary stops, the standby is promoted and the
	// address moves to it.
	primary.Stop(t)
	standby.Promote(t)
	standby.WaitRecoveryDone(t, time.Minute)
	proxy.retarget(net.JoinHostPort(standby.Host, strconv.Itoa(standby.Port)))

	d.waitFor("the daemon streaming timeline 2", time.Minute, func() bool {
		st, ok := d.walStatusOf(s.name)
		return ok && st.Connected && st.Timeline == 2
	})
	if got := standby.QueryString(t, "select count(*)::text from pg_replication_slots where slot_name = 'hoard_e2e' and slot_type = 'physical'"); got != "1" {
		t.Errorf("the promoted server has %s physical slot hoard_e2e, want 1", got)
	}
	// The former primary still has its slot: the advice is true.
	if _, err := os.Stat(filepath.Join(primary.DataDir, "pg_replslot", "hoard_e2e", "state")); err != nil {
		t.Errorf("the former primary's slot hoard_e2e: %v", err)
	}
	s.checkFormerSlot(d, 2, 1)
	standby.Exec(t, "insert into tl_rows select g, 'timeline-2-a' from generate_series(251, 300) g")
	time.Sleep(1100 * time.Millisecond)
	between := standby.QueryString(t, "select clock_timestamp()::text")
	time.Sleep(1100 * time.Millisecond)
	standby.Exec(t, "insert into tl_rows select g, 'timeline-2-b' from generate_series(301, 400) g")
	seg2 := s.switchAndWaitStored(d, standby, time.Minute)
	if !strings.HasPrefix(seg2, "00000002") {
		t.Fatalf("segment %s after the promotion, want timeline 2", seg2)
	}

	s.checkSwitchStored(d, standby)

	// A backup on timeline 2, asked of the running daemon.
	s.backupOnTimeline2(t, before, "failover")
	seg2 = s.switchAndWaitStored(d, standby, time.Minute)
	want := rowsOf(t, standby)
	if !strings.HasPrefix(want, "400 rows: ") {
		t.Fatalf("the promoted server has %.60s..., want 400 rows", want)
	}
	d.stopClean()
	t.Logf("stored WAL: %v", s.storedWAL())

	if out, errOut, err := s.hoard("verify"); err != nil {
		t.Errorf("hoard verify after the failover: %v\n%s%s", err, out, errOut)
	}
	rep := s.verifyReach()
	// The stop stores the segment in progress as .partial: the end is
	// seg2 or that copy after it.
	if rep.WALEnd == nil || !strings.HasPrefix(rep.WALEnd.File, "00000002") || rep.WALEnd.File[:24] < seg2 {
		t.Errorf("verify --json wal_end %+v, want timeline 2's %s or after", rep.WALEnd, seg2)
	}

	// The latest: the backup taken on timeline 2 and its WAL.
	_, c := s.restoreLatest(t, major, want, "the promoted server")
	c.Stop(t)

	// Between the two batches of timeline 2: the backup taken on timeline
	// 1, recovery crossing the switch.
	target := filepath.Join(pgtest.TempDir(t), "between")
	out := s.mustHoard("restore", "--target-dir", target, "--target-time", between)
	if !strings.Contains(out, before[len(before)-1].Name) {
		t.Errorf("restore --target-time %s does not name the backup taken before the failover, %s:\n%s", between, before[len(before)-1].Name, out)
	}
	c = pgtest.StartDataDir(t, major, target, noArchiving)
	c.WaitRecoveryDone(t, time.Minute)
	if got := c.QueryString(t, "select count(*)::text || ' ' || max(id)::text from tl_rows"); got != "300 300" {
		t.Errorf("restored to %s (between the timeline 2 batches): rows %q, want \"300 300\"", between, got)
	}
	if got := c.QueryString(t, "select count(*)::text from tl_rows where phase = 'timeline-1-last'"); got != "50" {
		t.Errorf("restored to %s: %s rows of timeline 1's last segment, want 50", between, got)
	}
}

// TestDaemonFailoverRecycled: the daemon cannot reach the address while
// the failover happens (the old primary stopped cleanly, the daemon
// stored all of timeline 1), and the promoted server writes, switches and
// checkpoints meanwhile, recycling the WAL from its promotion on. When the
// address reaches it, the daemon's new slot is past the spool's position:
// WAL of timeline 2 is lost, and streaming cannot resume. The daemon must
// exit 1 with an error that says what to do (move the spool's files
// away, take a new basebackup); doing that (a restart after the move)
// must resume at the slot with the hole in /status, and the next backup
// must make the site restorable: the latest restore has every row of the
// promoted server.
func TestDaemonFailoverRecycled(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	major := pgtest.DebianMajor
	primary, standby, proxy, s, d := startFailoverSite(t, major)
	primary.Exec(t, "insert into tl_rows select g, 'timeline-1' from generate_series(101, 200) g")
	d.waitFlushed(s.name, lsnOf(t, primary.QueryString(t, "select pg_current_wal_lsn()::text")), time.Minute)
	waitReplayed(t, primary, standby)

	primary.Stop(t)
	proxy.down()
	standby.Promote(t)
	standby.WaitRecoveryDone(t, time.Minute)
	for i := 0; i < 4; i++ {
		standby.Exec(t, "insert into tl_rows select g, 'timeline-2' from generate_series($1::int, $1::int + 9) g", 1000+i*10)
		standby.SwitchWAL(t)
		standby.Exec(t, "checkpoint")
	}
	proxy.retarget(net.JoinHostPort(standby.Host, strconv.Itoa(standby.Port)))
	proxy.up()

	spool := filepath.Join(s.dir, "state", s.name, "xlog_incoming")
	select {
	case <-d.exited:
	case <-time.After(time.Minute):
		t.Fatalf("the daemon still runs a minute after the promoted server refused the spool's WAL\n%s", tailLines(d.out.String(), 30))
	}
	if code := exitCode(d.err); code != 1 {
		t.Errorf("hoard daemon exited %d, want 1", code)
	}
	last := tailLines(d.out.String(), 2)
	for _, want := range []string{"WAL needed to resume was removed from the server", "move the files out of " + spool, "hoard basebackup"} {
		if !strings.Contains(last, want) {
			t.Errorf("the daemon's last words do not say %q:\n%s", want, last)
		}
	}

	// The refused resume left the new slot where it was created: a
	// status update reporting the spool's position as flushed would
	// move it back to WAL the server no longer has, and every later
	// start from an empty spool, at the slot, would be refused too.
	if got := standby.QueryString(t, `select restart_lsn::text || ' ' || exists (select from pg_ls_waldir()
		where name = pg_walfile_name(restart_lsn))::text from pg_replication_slots where slot_name = 'hoard_e2e'`); !strings.HasSuffix(got, " true") {
		t.Fatalf("after the refused resume the slot's restart_lsn and whether the server has its WAL: %s, want WAL the server has", got)
	}
	// What the error says to do.
	moved := filepath.Join(pgtest.TempDir(t), "spool-moved")
	if err := os.Rename(spool, moved); err != nil {
		t.Fatal(err)
	}
	d = s.startDaemon()
	var st walStatus
	d.waitFor("streaming timeline 2 with the hole reported", time.Minute, func() bool {
		var ok bool
		st, ok = d.walStatusOf(s.name)
		return ok && st.Connected && st.Timeline == 2 && len(st.Holes) > 0
	})
	t.Logf("holes: %v", st.Holes)
	standby.Exec(t, "insert into tl_rows select g, 'after' from generate_series(2000, 2099) g")
	s.mustHoard("basebackup", "--wait")
	seg := s.switchAndWaitStored(d, standby, time.Minute)
	if !strings.HasPrefix(seg, "00000002") {
		t.Fatalf("stored %s, want timeline 2", seg)
	}
	want := rowsOf(t, standby)
	d.stopClean()
	// verify names the hole: the old backup cannot recover past it.
	out, errOut, err := s.hoard("verify")
	hole := st.Holes[0].First + ".." + st.Holes[0].Last
	if !strings.HasPrefix(hole, "00000002") {
		t.Errorf("/status names the hole %s, want timeline 2's segments", hole)
	}
	if code := exitCode(err); code != 1 || !strings.Contains(out, hole) {
		t.Errorf("hoard verify after the hole: exit %d, want 1 naming %s\n%s%s", code, hole, out, errOut)
	}

	s.restoreLatest(t, major, want, "the promoted server")
}

// backupOnTimeline2 asks the running daemon for a backup (hoard
// basebackup --wait) after the switch to timeline 2 (what: the failover
// or the switchover) and returns the backups then stored: one more than
// before, the new one starting on timeline 2.
func (s *streamSite) backupOnTimeline2(t *testing.T, before []backupJSON, what string) []backupJSON {
	t.Helper()
	s.mustHoard("basebackup", "--wait")
	after := s.listBackups()
	if len(after) != len(before)+1 || !strings.HasPrefix(after[len(after)-1].StartWALSegment, "00000002") {
		t.Fatalf("backups after the %s %+v, want one more, starting on timeline 2", what, after)
	}
	return after
}

// restoreLatest restores the site's latest backup into a new directory,
// starts it and checks it has want, the rows of the server called what;
// it returns restore's output and the started cluster.
func (s *streamSite) restoreLatest(t *testing.T, major int, want, what string) (string, *pgtest.Cluster) {
	t.Helper()
	target := filepath.Join(pgtest.TempDir(t), "latest")
	out := s.mustHoard("restore", "--target-dir", target)
	c := pgtest.StartDataDir(t, major, target, noArchiving)
	c.WaitRecoveryDone(t, time.Minute)
	if got := rowsOf(t, c); got != want {
		t.Errorf("latest restore has\n%.100s\n%s has\n%.100s", got, what, want)
	}
	return out, c
}

// checkSwitchStored waits until the daemon stored what the archive must
// hold of promoted's switch from timeline 1 to 2: 00000002.history and
// timeline 1's last segment as .partial (not as complete), and checks that
// /status reports no hole and no error.
func (s *streamSite) checkSwitchStored(d *daemonProc, promoted *pgtest.Cluster) {
	s.t.Helper()
	const segSize = 1 << 20
	d.waitFor("00000002.history stored", time.Minute, func() bool { return s.storedHistory("00000002.history") })
	content, err := os.ReadFile(filepath.Join(promoted.DataDir, "pg_wal", "00000002.history"))
	if err != nil {
		s.t.Fatal(err)
	}
	h, err := wal.ParseHistory(2, content)
	if err != nil {
		s.t.Fatal(err)
	}
	end, _, ok := h.Switch(1)
	if !ok {
		s.t.Fatalf("00000002.history %q: no switch from timeline 1", content)
	}
	last1 := wal.SegmentOf(1, end, segSize).Name(segSize)
	d.waitFor("timeline 1's last segment "+last1+".partial stored", time.Minute, func() bool { return s.stored(last1 + ".partial") })
	if s.stored(last1) {
		s.t.Errorf("timeline 1's last segment %s is stored as complete; it ends at the switch %s", last1, end)
	}
	st, _ := d.walStatusOf(s.name)
	if len(st.Holes) != 0 || st.LastError != "" {
		s.t.Errorf("/status wal after the failover: holes %v, last_error %q; want none", st.Holes, st.LastError)
	}
}
