package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// requestDaemon returns a daemon for the backup loop of site main
// (archiveCommandLoop) that logs into logs, the node's connection string,
// at which no server answers (a requested backup fails and waits to be
// retried), and the site's archive, in memory.
func requestDaemon(t *testing.T) (d *daemon, logs *testio.SyncBuffer, conn string, arch *archive.Archive) {
	t.Helper()
	d = testDaemon(t)
	d.opts.RetentionInterval = time.Hour
	logs = &testio.SyncBuffer{}
	d.log = zerolog.New(logs)
	conn = fmt.Sprintf("host=127.0.0.1 port=%d user=nobody dbname=nobody connect_timeout=2", testio.FreePort(t))
	arch = &archive.Archive{Codec: &archive.Codec{}, Site: "main", Store: storage.NewMem()}
	return d, logs, conn, arch
}

// TestSupervisor_RequestDropped: a basebackup request that the daemon's
// shutdown cuts short is lost (it was answered when queued), and the
// backup loop says so at warning level, naming the site, whether the loop
// had taken the request yet or not.
func TestSupervisor_RequestDropped(t *testing.T) {
	for _, taken := range []bool{false, true} {
		t.Run(fmt.Sprintf("taken=%v", taken), func(t *testing.T) {
			d, logs, conn, arch := requestDaemon(t)
			var s *supervisor
			var stop func() error
			if taken {
				s, stop = archiveCommandLoop(t, d, conn, arch)
				if _, err := d.requestBackup("main"); err != nil {
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
				if _, err := d.requestBackup("main"); err != nil {
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

// TestSupervisor_RequestAfterStop: a request that arrives once the site's
// backup loop has ended (a shutdown, or a reload restarting the site,
// before its supervisor is replaced) would run nowhere: it is refused
// with ErrSiteStopping (503 over http) instead of being answered as
// queued, and nothing is logged as dropped.
func TestSupervisor_RequestAfterStop(t *testing.T) {
	d, logs, conn, arch := requestDaemon(t)
	_, stop := archiveCommandLoop(t, d, conn, arch)
	if err := stop(); err != nil {
		t.Fatalf("backup loop: %v", err)
	}
	_, err := d.requestBackup("main")
	if !errors.Is(err, ErrSiteStopping) || !strings.Contains(err.Error(), "site main") {
		t.Fatalf("request after the backup loop ended: %v, want ErrSiteStopping naming site main", err)
	}
	// What hoard basebackup sees: 503 and why, which it reports with a
	// non-zero exit (it takes no backup itself: a daemon answered).
	srv := startHTTP(t, HTTPOptions{RequestBackup: d.requestBackup, Logger: zerolog.Nop()})
	h := HTTPConfig{Address: "127.0.0.1", Port: srv.addr.(*net.TCPAddr).Port}
	_, err = RequestBackup(context.Background(), h, "main", "")
	if err == nil || errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "site is stopping") {
		t.Errorf("hoard basebackup's request: %v, want the daemon's 503 saying the site is stopping", err)
	}
	if strings.Contains(logs.String(), "basebackup request dropped") {
		t.Errorf("a refused request was logged as dropped:\n%s", logs)
	}
}

// TestSupervisor_RequestServedAtStop: a requested backup that is stored
// as the daemon stops (its context cancelled before the backup returns)
// served the request: it is logged as stored, and no warning says the
// request was dropped and must be made again.
func TestSupervisor_RequestServedAtStop(t *testing.T) {
	d, logs, conn, arch := requestDaemon(t)
	s := newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn})
	d.sups["main"] = s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := 0
	s.runBackup = func(_ context.Context, o basebackup.Options) (*archive.BackupInfo, error) {
		runs++
		cancel() // the daemon stops while the backup completes
		return &archive.BackupInfo{Name: "2026-12-05_05-00_0", BackupReason: o.Reason}, nil
	}
	if _, err := d.requestBackup("main"); err != nil {
		t.Fatal(err)
	}
	if err := s.backups(ctx, arch); err != nil {
		t.Fatalf("backup loop: %v", err)
	}
	if runs != 1 {
		t.Fatalf("%d backups taken, want the one requested", runs)
	}
	if !strings.Contains(logs.String(), `"message":"basebackup stored"`) {
		t.Errorf("the backup stored at the stop is not logged as stored:\n%s", logs)
	}
	if strings.Contains(logs.String(), "basebackup request dropped") {
		t.Errorf("a request its backup served was logged as dropped:\n%s", logs)
	}
}
