package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// printedStart is the start command of hoard restore's summary when the
// restored cluster's port is in use: its -o options and the port they set.
var printedStart = regexp.MustCompile(`pg_ctl -D \S+ -o "(-p ([0-9]+))" start`)

// TestRestoreBesideRunning restores a backup on the host of its source,
// which still runs and listens where its own configuration says, the
// restored copy's too: only on TCP, on 127.0.0.2 (not the loopback
// address a probe of localhost would find), then only on a Unix socket in
// a directory of its own (not one of the usual socket directories).
// hoard restore's summary says the port is in use, naming the address or
// socket, and gives a pg_ctl command on another port; the copy, started
// with that command's options, listens where its configuration says on
// that port and holds the source's rows.
func TestRestoreBesideRunning(t *testing.T) {
	for _, tc := range []struct {
		name   string
		socket bool
	}{{"TCP", false}, {"Socket", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, siteOptions{})
			at := pgtest.Listen{Port: testio.FreePort(t), Addresses: "127.0.0.2"}
			if tc.socket {
				at.Addresses, at.SocketDirs = "", pgtest.TempDir(t)
			}
			hba := append([]string{"host all all 127.0.0.2/32 trust", "host replication all 127.0.0.2/32 trust"}, pgtest.DefaultHBA...)
			src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: s.clusterConf(), Listen: &at, HBA: hba})
			// A port taken before the server bound it moves it to another.
			at.Port = src.Port
			where := "127.0.0.2:" + strconv.Itoa(at.Port)
			if tc.socket {
				where = at.SocketDirs + "/.s.PGSQL." + strconv.Itoa(at.Port)
			}
			s.use(src)
			src.Exec(t, "create table t (id int primary key)")
			src.Exec(t, "insert into t select generate_series(1, 100)")
			s.mustHoard("basebackup", "--fast")
			switchAndWaitArchived(t, src)

			dir := pgtest.TempDir(t) + "/data"
			out := s.mustHoard("restore", "--target-dir", dir, "--archive-mode", "off")
			if want := "port " + strconv.Itoa(at.Port) + " is in use on this host (" + where; !strings.Contains(out, want) {
				t.Fatalf("restore beside the running source: the summary does not say %q:\n%s", want, out)
			}
			m := printedStart.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("the summary gives no start command on another port:\n%s", out)
			}
			// The port was free when hoard restore looked; should another
			// process take it before the copy binds it, the copy starts
			// on another free port (pgtest's retry).
			at.Port, _ = strconv.Atoi(m[2])
			c := pgtest.StartDataDirListening(t, 15, dir, m[1], at)
			c.WaitRecoveryDone(t, 3*time.Minute)
			if got, want := tableRows(t, c), tableRows(t, src); got != want {
				t.Errorf("restored table t: %s, want the source's %s", got, want)
			}
		})
	}
}
