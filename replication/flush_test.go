package replication

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// stallProxy forwards one loopback connection to a server and can stop
// reading what the client sends, as a frozen server or a partition does:
// the client's writes then fill the socket buffers and block.
type stallProxy struct {
	addr  string
	mu    sync.Mutex
	stall bool
	stop  chan struct{} // closed to stop reading from the client
}

// startStallProxy listens on loopback and forwards to target.
func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String(), stop: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.stopReading(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		client, err := ln.Accept()
		if err != nil {
			return
		}
		defer client.Close()
		// Small buffers fill after a few statuses.
		_ = client.(*net.TCPConn).SetReadBuffer(4096)
		server, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer server.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(client, server)
		}()
		buf := make([]byte, 1)
		for {
			select {
			case <-p.stop:
				<-t.Context().Done()
				return
			default:
			}
			n, err := client.Read(buf)
			if n > 0 {
				if _, err := server.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

// stopReading makes the proxy ignore the client from now on.
func (p *stallProxy) stopReading() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stall {
		p.stall = true
		close(p.stop)
	}
}

func TestConn_SendStandbyStatus_ErrStalledServer(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: 17})
	p := startStallProxy(t, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	host, port, _ := net.SplitHostPort(p.addr)
	conn, err := Connect(testContext(t), "host="+host+" port="+port+" user=postgres sslmode=disable")
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	ctx := testContext(t)
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.StartReplication(ctx, StartOptions{Start: sys.XLogPos - sys.XLogPos%(16<<20), Timeline: sys.Timeline}); err != nil {
		t.Fatalf("StartReplication: %v", err)
	}
	_ = conn.PgConn().Conn().(*net.TCPConn).SetWriteBuffer(4096)
	p.stopReading()

	// Status updates go on until the buffers are full; then one blocks
	// until the context ends.
	const limit = 2 * time.Second
	sctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		st := StandbyStatus{Write: sys.XLogPos, Flush: sys.XLogPos, Apply: sys.XLogPos}
		for {
			if err := conn.SendStandbyStatus(sctx, st); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("SendStandbyStatus = %v, want a context.DeadlineExceeded", err)
		}
	case <-time.After(limit + 10*time.Second):
		// Unblock the writer so the test can end.
		_ = conn.PgConn().Conn().Close()
		<-done
		t.Fatalf("SendStandbyStatus blocked 10s past its context's deadline against a server that stopped reading")
	}
}
