package storage_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestStalledSFTPFails is TestStalledStoreFails for SFTP: a server that
// stops answering in the middle of a session (a proxy to a real sshd that
// stops forwarding) fails the operation waiting on it, with an error that
// says so, instead of holding it for ever; a read from an object opened
// before the stall fails too; once the server answers again the next
// operation connects anew. Without a deadline on its context, only the
// stall timeout can end these operations.
func TestStalledSFTPFails(t *testing.T) {
	srv := storetest.SFTP(t)
	p := newFreezeProxy(t, net.JoinHostPort(srv.Config.Server, strconv.Itoa(srv.Config.Port)))
	c := srv.Config
	c.Directory = t.TempDir()
	c.Port = p.port()
	c.KnownHostsFile = ""
	c.HostKeyFingerprint = ssh.FingerprintSHA256(srv.HostKey)

	old := storage.StallTimeout
	storage.StallTimeout = 300 * time.Millisecond
	st, err := storage.Open(context.Background(), c)
	storage.StallTimeout = old // the store keeps the value it was opened with
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	const first, second = "site/xlog/000000010000000000000001", "site/xlog/000000010000000000000002"
	if err := st.Put(ctx, first, strings.NewReader(strings.Repeat("wal ", 64<<10)), nil); err != nil {
		t.Fatal(err)
	}
	rc, _, err := st.Open(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	p.set(true)
	defer p.set(false) // before the deferred Closes, should the test fail
	// Each operation runs in a goroutine: a hang must fail the test, not
	// hold it until go test's own timeout.
	stalled := func(what string, op func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- op() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "answered nothing") {
				t.Errorf("%s on a stalled server = %v, want an error saying it answered nothing", what, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s on a stalled server still waiting after a minute", what)
		}
	}
	stalled("Put", func() error { return st.Put(ctx, second, strings.NewReader("second"), nil) })
	stalled("Read of an object opened before", func() error { _, err := io.ReadAll(rc); return err })
	// The next operation connects again: the handshake through the frozen
	// proxy times out too (no SSH version arrives).
	done := make(chan error, 1)
	go func() { _, err := st.Stat(ctx, first); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Stat through a stalled server succeeded")
		}
	case <-time.After(time.Minute):
		t.Fatal("Stat on a stalled server still waiting after a minute")
	}

	p.set(false)
	if err := st.Put(ctx, second, strings.NewReader("second"), nil); err != nil {
		t.Fatalf("Put once the server answers again: %v", err)
	}
	if _, err := st.Stat(ctx, first); err != nil {
		t.Errorf("Stat once the server answers again: %v", err)
	}
}

// TestSFTP_ContextEndsStalledOperation: with the stall timeout far away,
// an operation on a server that stopped answering ends shortly after its
// context does (the session is closed under it).
func TestSFTP_ContextEndsStalledOperation(t *testing.T) {
	srv := storetest.SFTP(t)
	p := newFreezeProxy(t, net.JoinHostPort(srv.Config.Server, strconv.Itoa(srv.Config.Port)))
	c := srv.Config
	c.Directory = t.TempDir()
	c.Port = p.port()
	c.KnownHostsFile = ""
	c.HostKeyFingerprint = ssh.FingerprintSHA256(srv.HostKey)
	defer storage.SetStallGrace(100 * time.Millisecond)()
	st, err := storage.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(context.Background(), "site/xlog/000000010000000000000001", strings.NewReader("first"), nil); err != nil {
		t.Fatal(err)
	}
	p.set(true)
	defer p.set(false)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- st.Put(ctx, "site/xlog/000000010000000000000002", strings.NewReader("second"), nil) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Put to a stalled server = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Put to a stalled server still waiting a minute after its context ended")
	}
	p.set(false)
	if err := st.Put(context.Background(), "site/xlog/000000010000000000000002", strings.NewReader("second"), nil); err != nil {
		t.Fatalf("Put once the server answers again: %v", err)
	}
}

// TestSFTP_List_RemovesStaleTemps: temp files a killed upload left on the
// server are never objects, and a listing removes them once they have not
// been written for StaleTempAge, as the local store's does; fresh ones and
// other hidden files stay.
func TestSFTP_List_RemovesStaleTemps(t *testing.T) {
	srv := storetest.SFTP(t)
	c := srv.Config
	c.Directory = t.TempDir()
	ctx := context.Background()
	st, err := storage.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	xlog := filepath.Join(c.Directory, "site", "xlog")
	old := time.Now().Add(-storage.StaleTempAge - time.Hour)
	files := map[string]bool{ // name -> removed
		".000000010000000000000002.tmp-0123456789abcdef":          true,
		".000000010000000000000002.metadata_tmp-0123456789abcdef": true,
		"000000010000000000000003.metadata_tmp":                   true,
		".000000010000000000000004.tmp-fresh":                     false,
		".000000010000000000000004.metadata_tmp-fedcba9876543210": false,
		".keep": false,
	}
	for name, stale := range files {
		p := filepath.Join(xlog, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if stale || name == ".keep" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	var keys []string
	if err := st.List(ctx, "site/", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "site/xlog/000000010000000000000001" {
		t.Errorf("List = %v, want only the one object", keys)
	}
	for name, stale := range files {
		_, err := os.Stat(filepath.Join(xlog, name))
		if gone := errors.Is(err, os.ErrNotExist); gone != stale {
			t.Errorf("%s: removed = %v, want %v", name, gone, stale)
		}
	}
}

// freezeProxy forwards TCP connections to a server and, while frozen,
// holds every byte in both directions: a server that stopped answering
// without closing its connections.
type freezeProxy struct {
	l      net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	conns  []net.Conn
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{l: l}
	p.cond = sync.NewCond(&p.mu)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go p.pipe(u, c)
			go p.pipe(c, u)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.set(false)
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *freezeProxy) port() int { return p.l.Addr().(*net.TCPAddr).Port }

func (p *freezeProxy) set(frozen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = frozen
	p.cond.Broadcast()
}

func (p *freezeProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
