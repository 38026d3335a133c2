package storage_test

import (
	"net"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// proxy forwards TCP connections to a server. cut closes every connection
// forwarded so far (a lost connection); while frozen it holds every byte in
// both directions (a server that stopped answering without closing its
// connections).
type proxy struct {
	l      net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	conns  []net.Conn
}

// sftpThroughProxy starts a proxy in front of srv and returns the server's
// configuration pointed at the proxy. known_hosts names the server's own
// address; the proxy's port is another, so the configuration pins the key
// instead.
func sftpThroughProxy(t *testing.T, srv storetest.SFTPServer) (storage.Config, *proxy) {
	t.Helper()
	p := newProxy(t, net.JoinHostPort(srv.Config.Server, strconv.Itoa(srv.Config.Port)))
	c := srv.Config
	c.Port = p.port()
	c.KnownHostsFile = ""
	c.HostKeyFingerprint = ssh.FingerprintSHA256(srv.HostKey)
	return c, p
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		p.set(false)
		p.cut()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(out, in) }()
			go func() { defer wg.Done(); p.pipe(in, out) }()
		}
	}()
	return p
}

func (p *proxy) port() int { return p.l.Addr().(*net.TCPAddr).Port }

// cut closes every connection forwarded so far.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// set freezes or thaws the proxy.
func (p *proxy) set(frozen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = frozen
	p.cond.Broadcast()
}

// pipe copies src to dst, waiting while the proxy is frozen, and closes
// both when either side ends.
func (p *proxy) pipe(dst, src net.Conn) {
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
