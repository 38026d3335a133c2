package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestSupervisor_RelistFlood: whoever reaches the HTTP port can POST
// /<site>/backup-stored as often as it likes; the backup loop lists the
// backups for it at most once per relistMinInterval, and logs that it was
// told once per listing, so a flood neither lists the bucket in a loop nor
// logs at its rate. The loop, waiting to list, still ends at once with its
// context.
func TestSupervisor_RelistFlood(t *testing.T) {
	d := testDaemon(t)
	d.opts.RetentionInterval = time.Hour
	logs := &testio.SyncBuffer{}
	d.log = zerolog.New(logs)
	// No server answers on the port: the system identifier stays unknown.
	conn := fmt.Sprintf("host=127.0.0.1 port=%d user=nobody dbname=nobody connect_timeout=2", testio.FreePort(t))
	arch := &archive.Archive{Codec: &archive.Codec{}, Site: "main"}
	store := &storetest.Counter{Store: storage.NewMem()}
	listed := func() int { return store.Lists(arch.Layout.Dir(archive.BasebackupDir)) }
	arch.Store = store
	_, stop := archiveCommandLoop(t, d, conn, arch)
	deadline := time.Now().Add(time.Minute)
	for listed() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the backup loop did not list the backups within 1m")
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := listed()
	flood := time.Now().Add(3 * time.Second)
	for time.Now().Before(flood) {
		if err := d.backupStored("main"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	told := strings.Count(logs.String(), "told of a stored backup")
	if n := listed() - first; n > 1 || told > 1 {
		t.Errorf("3 s of POST /main/backup-stored: the backups listed %d more times, %d lines \"told of a stored backup\"; want at most 1 of each (relistMinInterval %s)", n, told, relistMinInterval)
	}
	if err := stop(); err != nil {
		t.Errorf("backup loop: %v", err)
	}
}

// archiveCommandLoop runs the backup loop of site main of d, in
// archive_command mode, its node at conn, on arch. stop (also at the
// test's cleanup) cancels it and returns its error, failing the test when
// it does not end within 30 s: waiting, it must end at once.
func archiveCommandLoop(t *testing.T, d *daemon, conn string, arch *archive.Archive) (s *supervisor, stop func() error) {
	t.Helper()
	s = newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn})
	d.sups["main"] = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.backups(ctx, arch) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Error("the backup loop did not end within 30 s of its context")
			<-done
			return nil
		}
	})
	t.Cleanup(func() { _ = stop() })
	return s, stop
}
