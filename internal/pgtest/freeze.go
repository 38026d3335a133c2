package pgtest

import (
	"net"
	"sync"
	"testing"
)

// FreezeProxy forwards loopback connections to a server until Freeze:
// from then on it passes nothing either way and accepts no more
// connections, yet keeps every socket open, as a network path that drops
// every packet (or a server frozen whole) looks to the client: its reads
// wait for messages that never come, and no error ends them.
type FreezeProxy struct {
	// Addr is the proxy's host:port on loopback.
	Addr string

	frozen chan struct{} // closed by Freeze
	once   sync.Once

	mu    sync.Mutex
	conns []net.Conn // closed at the test's end
}

// StartFreezeProxy listens on loopback and forwards each connection it
// accepts to target (host:port). t.Cleanup closes everything.
func StartFreezeProxy(t testing.TB, target string) *FreezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FreezeProxy{Addr: ln.Addr().String(), frozen: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		p.Freeze()
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			p.hold(client)
			select {
			case <-p.frozen:
				// Held open, unanswered, until the test ends.
				continue
			default:
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			p.hold(server)
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(client, server) }()
			go func() { defer wg.Done(); p.pipe(server, client) }()
		}
	}()
	return p
}

// pipe copies from src to dst until an error or Freeze; after Freeze it
// drops what it reads, and both sockets stay open until the test ends.
func (p *FreezeProxy) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			// Dropped; the sockets stay open until the test ends.
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// hold records c, to be closed when the test ends.
func (p *FreezeProxy) hold(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}

// Freeze stops the proxy passing anything, either way, from now on.
func (p *FreezeProxy) Freeze() {
	p.once.Do(func() { close(p.frozen) })
}
