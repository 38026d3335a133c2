package walstream

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestReceiver_StalledStream streams from a real server through a proxy
// that then passes nothing either way (a network path that drops every
// packet) while the server goes on writing WAL. The receiver must not
// report itself streaming on a connection on which nothing arrives:
// within ReceiveTimeout (after asking the server for a keepalive at
// half of it) it ends the connection, says why, and is disconnected
// (hoard_wal_connected 0, the HoardWALNotStreaming alert) while it
// cannot reconnect. An idle server with a working path is not taken for
// a stalled one: it answers the keepalive request.
func TestReceiver_StalledStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	p := pgtest.StartFreezeProxy(t, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	host, port, _ := net.SplitHostPort(p.Addr)
	const timeout = 2 * time.Second
	r, err := New(Options{
		ConnString:     "host=" + host + " port=" + port + " user=postgres dbname=postgres sslmode=disable",
		Slot:           "hoard",
		SpoolDir:       t.TempDir(),
		Uploader:       newSink(t),
		StatusInterval: 10 * time.Second, // longer than the timeout: only the keepalive request keeps it
		ReceiveTimeout: timeout,
		Logger:         zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.retryMin, r.retryMax = 20*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Errorf("Run did not return after cancel")
		}
	})
	waitFor(t, "receiver streaming", func() bool { return r.Status().Connected })

	// An idle server on a working path: still connected after several
	// timeouts.
	time.Sleep(3 * timeout)
	if st := r.Status(); !st.Connected {
		t.Fatalf("idle server, working path: disconnected (%s)", st.LastError)
	}

	p.Freeze()
	frozenAt := time.Now()
	for i := 0; i < 20; i++ {
		c.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', repeat('x', 10000))")
		if !r.Status().Connected {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	st := r.Status()
	if st.Connected {
		t.Fatalf("path frozen %s ago while the server writes WAL: the receiver still reports itself streaming (received %s, server %s)",
			time.Since(frozenAt).Round(time.Second), st.Received, st.ServerLSN)
	}
	if !strings.Contains(st.LastError, "nothing received from the server") {
		t.Errorf("last error %q, want it to say nothing was received from the server", st.LastError)
	}
}
