package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestSupervisor_RequestDropped: a basebackup request that the daemon's
// shutdown cuts short is lost (it was answered when queued), and the
// backup loop says so at warning level, naming the site, whether the loop
// had taken the request yet or not.
func TestSupervisor_RequestDropped(t *testing.T) {
	for _, taken := range []bool{false, true} {
		t.Run(fmt.Sprintf("taken=%v", taken), func(t *testing.T) {
			d := testDaemon(t)
			d.opts.RetentionInterval = time.Hour
			logs := &testio.SyncBuffer{}
			d.log = zerolog.New(logs)
			// No server answers on the port: the requested backup fails
			// and waits to be retried.
			conn := fmt.Sprintf("host=127.0.0.1 port=%d user=nobody dbname=nobody connect_timeout=2", testio.FreePort(t))
			arch := &archive.Archive{Codec: &archive.Codec{}, Site: "main", Store: storage.NewMem()}
			var s *supervisor
			var stop func() error
			if taken {
				s, stop = archiveCommandLoop(t, d, conn, arch)
				if err := d.requestBackup("main"); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(time.Minute)
				for !strings.Contains(logs.String(), `"message":"basebackup requested"`) {
					if time.Now().After(deadline) {
						t.Fatalf("the backup loop did not take the request within 1m:\n%s", logs)
					}
					time.Sleep(10 * time.Millisecond)
				}
			} else {
				s = newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn})
				d.sups["main"] = s
				if err := d.requestBackup("main"); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancel() // the daemon stops before the loop sees the request
				stop = func() error { return s.backups(ctx, arch) }
			}
			if err := stop(); err != nil {
				t.Errorf("backup loop: %v", err)
			}
			var dropped []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "basebackup request dropped") {
					dropped = append(dropped, l)
				}
			}
			if len(dropped) != 1 || !strings.Contains(dropped[0], `"level":"warn"`) ||
				!strings.Contains(dropped[0], `"site":"main"`) || !strings.Contains(dropped[0], `"why":"context canceled"`) {
				t.Errorf("log lines of the dropped request: %q, want one warning naming site main and why", dropped)
			}
		})
	}
}
