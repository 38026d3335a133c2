package pgtest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// StallProxy forwards one loopback connection to a server and can stop
// reading what the client sends, as a frozen server or a partition does:
// the client's writes then fill the socket buffers and block, and its
// reads wait for answers that never come.
type StallProxy struct {
	// Addr is the proxy's host:port on loopback.
	Addr string

	mu    sync.Mutex
	stall bool
	stop  chan struct{} // closed to stop reading from the client
}

// StartStallProxy listens on loopback and forwards the first connection
// it accepts to target (host:port). Its read buffer for the client is
// small, so that a stalled client's writes block after a few kilobytes.
// t.Cleanup closes everything.
func StartStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &StallProxy{Addr: ln.Addr().String(), stop: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.StopReading(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		client, err := ln.Accept()
		if err != nil {
			return
		}
		defer client.Close()
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
				// Hold both connections open, unread, until the test
				// ends; its context ends before any cleanup, so a
				// client still blocked writing is released first.
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

// StopReading makes the proxy ignore the client from now on.
func (p *StallProxy) StopReading() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stall {
		p.stall = true
		close(p.stop)
	}
}
