package storage_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	c, p := sftpThroughProxy(t, srv)
	c.Directory = t.TempDir()

	old := storage.StallTimeout
	// Short enough to keep the test quick, long enough that an SSH
	// handshake and keepalive answers on a loaded machine (load 25 on two
	// cores) are not taken for a stall: at 300 ms they were, now and then.
	storage.StallTimeout = 2 * time.Second
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

	p.Freeze(true)
	defer p.Freeze(false) // before the deferred Closes, should the test fail
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

	p.Freeze(false)
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
	c, p := sftpThroughProxy(t, srv)
	c.Directory = t.TempDir()
	defer storage.SetStallGrace(100 * time.Millisecond)()
	st, err := storage.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(context.Background(), "site/xlog/000000010000000000000001", strings.NewReader("first"), nil); err != nil {
		t.Fatal(err)
	}
	p.Freeze(true)
	defer p.Freeze(false)
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
	p.Freeze(false)
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
	st, err := storage.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkListRemovesStaleTemps(t, st, filepath.Join(c.Directory, "site", "xlog"), map[string]tempFile{
		".000000010000000000000002.tmp-0123456789abcdef":          {aged: true, removed: true},
		".000000010000000000000002.metadata_tmp-0123456789abcdef": {aged: true, removed: true},
		"000000010000000000000003.metadata_tmp":                   {aged: true, removed: true},
		".000000010000000000000004.tmp-fresh":                     {},
		".000000010000000000000004.metadata_tmp-fedcba9876543210": {},
		".keep": {aged: true},
	})
}
