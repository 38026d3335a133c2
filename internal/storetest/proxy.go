package storetest

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/hoardbackup/hoard/storage"
)

// Proxy forwards TCP connections to a server, for tests of a network that
// fails halfway: Cut closes every connection forwarded so far (a lost
// connection, or a server restarted), CutAfter does it once a given number
// of bytes has gone through, and Freeze holds every byte in both
// directions (a server that stopped answering without closing its
// connections).
type Proxy struct {
	l      net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	conns  []net.Conn
	// cutAt, when > 0, is the count of forwarded bytes at which every
	// connection is cut; forwarded counts bytes in both directions. After
	// a cut, cutAt moves every bytes on while more cuts remain.
	cutAt     int64
	every     int64
	more      int
	forwarded int64
	cuts      int
}

// NewProxy starts a proxy to target (host:port), stopped when the test
// ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		p.Freeze(false)
		p.Cut()
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

// Port is the proxy's port on 127.0.0.1.
func (p *Proxy) Port() int { return p.l.Addr().(*net.TCPAddr).Port }

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Cut closes every connection forwarded so far.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutLocked()
}

func (p *Proxy) cutLocked() {
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.cuts++
}

// CutAfter cuts every connection once n more bytes (both directions
// together) have been forwarded; the bytes that pass the mark are not.
// n = 0 cancels the cut.
func (p *Proxy) CutAfter(n int64) { p.CutEvery(n, 1) }

// CutEvery is CutAfter, times times: each cut is n bytes after the
// previous one.
func (p *Proxy) CutEvery(n int64, times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAt, p.every, p.more = 0, n, 0
	if n > 0 && times > 0 {
		p.cutAt, p.more = p.forwarded+n, times-1
	}
}

// Cuts is how many times the connections were cut.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Freeze holds (true) or releases (false) every byte forwarded.
func (p *Proxy) Freeze(frozen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = frozen
	p.cond.Broadcast()
}

// pipe copies src to dst, waiting while the proxy is frozen, and closes
// both when either side ends.
func (p *Proxy) pipe(dst, src net.Conn) {
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
			if p.cutAt > 0 && p.forwarded+int64(n) >= p.cutAt {
				p.cutAt = 0
				if p.more > 0 {
					p.cutAt, p.more = p.forwarded+p.every, p.more-1
				}
				p.cutLocked()
				p.mu.Unlock()
				return
			}
			p.forwarded += int64(n)
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

// Proxied starts a proxy in front of c's server and returns c pointed at
// the proxy: host and port for S3 and Azure, the auth URL for Swift (whose
// tempauth answers with a storage URL on the host asked), and for Google
// STORAGE_EMULATOR_HOST, set for the rest of the test; fake-gcs-server then
// answers downloads and resumable uploads on the proxy's address only. An SFTP store pins
// the server's key from its known_hosts file, as that names the server's
// own address. A local store has no server and fails the test.
func Proxied(t testing.TB, c storage.Config) (storage.Config, *Proxy) {
	t.Helper()
	var p *Proxy
	switch c.Type {
	case storage.TypeS3, storage.TypeAzure:
		p = NewProxy(t, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
		c.Host, c.Port = "127.0.0.1", p.Port()
	case storage.TypeGoogle:
		host := os.Getenv("STORAGE_EMULATOR_HOST")
		p = NewProxy(t, host)
		t.Setenv("STORAGE_EMULATOR_HOST", p.Addr())
		fakeGCSHost(t, host, p.Addr())
	case storage.TypeSwift:
		u, err := url.Parse(c.AuthURL)
		if err != nil {
			t.Fatal(err)
		}
		p = NewProxy(t, u.Host)
		u.Host = p.Addr()
		c.AuthURL = u.String()
	case storage.TypeSFTP:
		p = NewProxy(t, net.JoinHostPort(c.Server, strconv.Itoa(c.Port)))
		c.Port = p.Port()
		if c.KnownHostsFile != "" {
			c.HostKeyFingerprint = ssh.FingerprintSHA256(knownHostKey(t, c.KnownHostsFile))
			c.KnownHostsFile = ""
		}
	default:
		t.Fatalf("no server to proxy for a %s store", c.Type)
	}
	return c, p
}

// fakeGCSHost tells the fake-gcs-server at host to take addr as its own
// address: it serves downloads only to requests for that host, and names
// it in the URLs of resumable uploads.
func fakeGCSHost(t testing.TB, host, addr string) {
	t.Helper()
	body := fmt.Sprintf(`{"publicHost":%q,"externalUrl":%q}`, addr, "http://"+addr)
	req, err := http.NewRequest(http.MethodPut, "http://"+host+"/_internal/config", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("fake-gcs-server: set its public host: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("fake-gcs-server: set its public host: %s", resp.Status)
	}
}

// knownHostKey returns the first key in a known_hosts file.
func knownHostKey(t testing.TB, file string) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, _, key, _, _, err := ssh.ParseKnownHosts(b)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return key
}
