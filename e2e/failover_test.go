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
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// walStatus is the site's wal object of GET /status, with the fields
// the failover test reads.
type walStatus struct {
	Connected bool   `json:"connected"`
	Timeline  int32  `json:"timeline"`
	Flushed   string `json:"flushed_lsn"`
	LastError string `json:"last_error"`
	Holes     []struct {
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
	primary := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	primary.Exec(t, "create table tl_rows (id int primary key, phase text not null)")
	primary.Exec(t, "insert into tl_rows select g, 'before-backup' from generate_series(1, 100) g")
	standby := pgtest.StartColdStandby(t, primary)
	proxy := newTCPProxy(t, net.JoinHostPort(primary.Host, strconv.Itoa(primary.Port)))
	s := newLocalStreamSite(t)
	s.use(primary)
	s.env = append(s.env, "PGPORT="+strconv.Itoa(proxy.port()))
	d := s.startDaemon()
	d.waitFirstBackup(s.name, 2*time.Minute, true)
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
	if code := d.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}
	// verify names the hole: the old backup cannot recover past it.
	out, errOut, err := s.hoard("verify")
	hole := st.Holes[0].First + ".." + st.Holes[0].Last
	if !strings.HasPrefix(hole, "00000002") {
		t.Errorf("/status names the hole %s, want timeline 2's segments", hole)
	}
	if code := exitCode(err); code != 1 || !strings.Contains(out, hole) {
		t.Errorf("hoard verify after the hole: exit %d, want 1 naming %s\n%s%s", code, hole, out, errOut)
	}

	target := filepath.Join(pgtest.TempDir(t), "latest")
	s.mustHoard("restore", "--target-dir", target)
	c := pgtest.StartDataDir(t, major, target, noArchiving)
	c.WaitRecoveryDone(t, time.Minute)
	if got := rowsOf(t, c); got != want {
		t.Errorf("latest restore has\n%.100s\nthe promoted server has\n%.100s", got, want)
	}
}
