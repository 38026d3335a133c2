package e2e

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestDaemonSwitchover is a planned switchover that leaves the daemon's
// address on the old primary: the primary A stops cleanly (its standby B
// has received all of its WAL), B is promoted (timeline 2), and A starts
// again as a standby of B. The daemon, still pointed at A, must follow
// timeline 2 through A (cascading from a standby): store 00000002.history
// and timeline 1's last segment as .partial, with no hole, and take a
// backup of A as a standby when asked. Then the address moves to B: the
// daemon creates its slot there and goes on with no hole. hoard verify
// exits 0 and the latest restore has exactly B's rows.
func TestDaemonSwitchover(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	for _, major := range []int{15, 17} {
		t.Run("PG"+strconv.Itoa(major), func(t *testing.T) { testDaemonSwitchover(t, major) })
	}
}

func testDaemonSwitchover(t *testing.T, major int) {
	a, b, proxy, s, d := startFailoverSite(t, major)
	before := s.listBackups()
	a.Exec(t, "insert into tl_rows select g, 'timeline-1' from generate_series(101, 200) g")
	d.waitFlushed(s.name, lsnOf(t, a.QueryString(t, "select pg_current_wal_lsn()::text")), time.Minute)
	waitReplayed(t, a, b)

	// The switchover: A stops cleanly; its walsender sends all of its WAL,
	// the shutdown checkpoint included, before it exits, and B says where
	// it ended: with all of it received by B, A can follow B's timeline 2
	// with no pg_rewind.
	a.Stop(t)
	b.WaitForLog(t, "End of WAL reached on timeline 1", time.Minute)
	m := regexp.MustCompile(`End of WAL reached on timeline 1 at (\S+)\.`).FindStringSubmatch(b.Log())
	if m == nil {
		t.Fatalf("B's log does not say where A's WAL ended:\n%s", tailLines(b.Log(), 10))
	}
	if got := b.QueryString(t, "select (pg_last_wal_receive_lsn() >= $1::pg_lsn)::text", m[1]); got != "true" {
		t.Fatalf("B received A's WAL up to %s only, A's ends at %s", b.QueryString(t, "select pg_last_wal_receive_lsn()::text"), m[1])
	}
	b.Promote(t)
	b.WaitRecoveryDone(t, time.Minute)
	pgtest.AppendConf(t, a.DataDir, map[string]string{"primary_conninfo": b.ConnString("postgres")})
	if err := os.WriteFile(filepath.Join(a.DataDir, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, filepath.Join(a.DataDir, "standby.signal"))
	a.Start(t)
	b.Exec(t, "insert into tl_rows select g, 'timeline-2' from generate_series(201, 300) g")
	waitReplayed(t, b, a)
	if got := a.QueryString(t, "select pg_is_in_recovery()::text"); got != "true" {
		t.Fatalf("A pg_is_in_recovery() = %s after the switchover, want true", got)
	}

	d.waitFor("the daemon streaming timeline 2 through A", time.Minute, func() bool {
		st, ok := d.walStatusOf(s.name)
		return ok && st.Connected && st.Timeline == 2
	})
	seg := s.switchAndWaitStored(d, b, time.Minute)
	if !strings.HasPrefix(seg, "00000002") {
		t.Fatalf("segment %s after the switchover, want timeline 2", seg)
	}
	s.checkSwitchStored(d, b)
	// A kept its slot through the switchover: the daemon streams through
	// it, creates none and warns of none.
	if got := a.QueryString(t, "select active::text from pg_replication_slots where slot_name = 'hoard_e2e'"); got != "true" {
		t.Errorf("A's slot hoard_e2e active: %q, want true", got)
	}
	if st, _ := d.walStatusOf(s.name); st.FormerSlot != nil || strings.Contains(d.out.String(), formerSlotWarning) {
		t.Errorf("streaming through A's own slot: /status wal.former_slot %+v, or the log warns of a slot left behind", st.FormerSlot)
	}

	// A backup of A as a standby, asked of the running daemon.
	after := s.backupOnTimeline2(t, before, "switchover")

	// The operator moves the address to B: the daemon's slot on A stays
	// behind, a new one is created on B.
	proxy.retarget(net.JoinHostPort(b.Host, strconv.Itoa(b.Port)))
	b.Exec(t, "insert into tl_rows select g, 'on-b' from generate_series(301, 400) g")
	d.waitFor("the daemon streaming from B", time.Minute, func() bool {
		st, ok := d.walStatusOf(s.name)
		return ok && st.Connected && st.Timeline == 2 &&
			b.QueryString(t, "select count(*)::text from pg_replication_slots where slot_name = 'hoard_e2e' and active") == "1"
	})
	seg = s.switchAndWaitStored(d, b, time.Minute)
	// Streaming again: the cut connection's error no longer holds.
	if st, _ := d.walStatusOf(s.name); len(st.Holes) != 0 || st.LastError != "" {
		t.Errorf("/status wal after the address moved to B: holes %v, last_error %q; want none", st.Holes, st.LastError)
	}
	s.checkFormerSlot(d, 2, 2)
	// The slot on A is left behind, inactive, holding A's WAL from its
	// restart_lsn on until someone drops it.
	if got := a.QueryString(t, "select count(*)::text from pg_replication_slots where slot_name = 'hoard_e2e' and not active and restart_lsn is not null"); got != "1" {
		t.Errorf("A has %s inactive slot hoard_e2e left behind, want 1", got)
	}

	want := rowsOf(t, b)
	if !strings.HasPrefix(want, "400 rows: ") {
		t.Fatalf("B has %.60s..., want 400 rows", want)
	}
	d.stopClean()
	t.Logf("stored WAL: %v", s.storedWAL())
	if out, errOut, err := s.hoard("verify"); err != nil {
		t.Errorf("hoard verify after the switchover: %v\n%s%s", err, out, errOut)
	}
	if rep := s.verifyReach(); rep.WALEnd == nil || rep.WALEnd.File[:24] < seg {
		t.Errorf("verify --json wal_end %+v, want %s or after", rep.WALEnd, seg)
	}
	if out, _ := s.restoreLatest(t, major, want, "B"); !strings.Contains(out, after[len(after)-1].Name) {
		t.Errorf("the latest restore does not name the backup of A as a standby, %s:\n%s", after[len(after)-1].Name, out)
	}
}
