package replication

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// connectStalling connects to a new PostgreSQL 17 through a StallProxy.
func connectStalling(t *testing.T) (*Conn, *pgtest.StallProxy) {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: 17})
	p := pgtest.StartStallProxy(t, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	host, port, _ := net.SplitHostPort(p.Addr)
	conn, err := Connect(testContext(t), "host="+host+" port="+port+" user=postgres sslmode=disable")
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, p
}

func TestConn_SendStandbyStatus_ErrStalledServer(t *testing.T) {
	conn, p := connectStalling(t)
	ctx := testContext(t)
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.StartReplication(ctx, StartOptions{Start: sys.XLogPos - sys.XLogPos%(16<<20), Timeline: sys.Timeline}); err != nil {
		t.Fatalf("StartReplication: %v", err)
	}
	_ = conn.PgConn().Conn().(*net.TCPConn).SetWriteBuffer(4096)
	p.StopReading()

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

// Against a server that stops reading, StartBaseBackup returns when its
// context ends and says so, even while blocked sending its command.
func TestConn_StartBaseBackup_ErrStalledServer(t *testing.T) {
	conn, p := connectStalling(t)
	_ = conn.PgConn().Conn().(*net.TCPConn).SetWriteBuffer(4096)
	p.StopReading()

	// A label too long for the socket buffers blocks the command's send.
	label := strings.Repeat("x", 1<<20)
	const limit = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	done := make(chan error, 1)
	began := time.Now()
	go func() {
		bb, err := conn.StartBaseBackup(ctx, BaseBackupOptions{Label: label, Fast: true})
		if err == nil {
			_, _, ferr := bb.Finish(context.Background())
			err = errors.Join(errors.New("started"), ferr)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("StartBaseBackup = %v, want a context.DeadlineExceeded", err)
		}
		// Not closeTimeout more for a Terminate stuck behind the command.
		if took := time.Since(began); took > limit+time.Second {
			t.Errorf("StartBaseBackup returned after %v, want about %v", took, limit)
		}
	case <-time.After(limit + 10*time.Second):
		_ = conn.PgConn().Conn().Close()
		<-done
		t.Fatalf("StartBaseBackup blocked 10s past its context's deadline against a server that stopped reading")
	}
}
