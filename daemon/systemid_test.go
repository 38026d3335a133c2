package daemon

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// deadNode listens on a free port, accepts connections and never
// answers, as a node whose host hangs: a client waits for its timeout. It
// returns a connection string to it and the number of connections it
// accepted.
func deadNode(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	port := testio.FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var conns []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return fmt.Sprintf("host=127.0.0.1 port=%d user=nobody dbname=nobody sslmode=disable", port), &n
}

// TestSupervisor_DeadNodeOnePass: in archive_command mode a node that
// does not answer (its host hangs) costs the backup loop's pass one
// timeout of its system identifier's query, not one per caller (the look
// for other systems' history files, the schedule's decision, retention).
func TestSupervisor_DeadNodeOnePass(t *testing.T) {
	conn, accepted := deadNode(t)
	d := testDaemon(t)
	d.opts.RetentionInterval = time.Hour
	s := newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn})
	d.sups["main"] = s
	arch := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Site: "main"}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.backups(ctx, arch) }()
	defer func() {
		cancel()
		<-done
	}()
	started := time.Now()
	deadline := started.Add(2 * time.Minute)
	for {
		s.mu.Lock()
		passed := s.st.LastRetentionError != ""
		s.mu.Unlock()
		if passed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backup loop's first pass did not reach retention within 2m")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the first pass connected to the dead node %d times (%v), want once (one %v timeout)", n, time.Since(started).Round(time.Second), serverVersionTimeout)
	}
}
