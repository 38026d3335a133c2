package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/testio"
)

// daemonProc is a running `hoard daemon`.
type daemonProc struct {
	t      testing.TB
	s      *streamSite
	cmd    *exec.Cmd
	out    *testio.SyncBuffer
	exited chan struct{}
	err    error
}

// startDaemon runs hoard daemon as the server's user with the site's
// configuration. It is killed when the test ends if still running.
func (s *streamSite) startDaemon() *daemonProc {
	s.t.Helper()
	cmd := s.command("daemon")
	out := &testio.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start hoard daemon: %v", err)
	}
	d := &daemonProc{t: s.t, s: s, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	s.t.Cleanup(func() {
		before := out.String()
		dump := ""
		select {
		case <-d.exited:
		default:
			if s.t.Failed() {
				// A failed test's daemon dumps its goroutines (Go's
				// SIGQUIT), to show where it was waiting.
				_ = cmd.Process.Signal(syscall.SIGQUIT)
				select {
				case <-d.exited:
				case <-time.After(10 * time.Second):
				}
				if after := out.String(); len(after) > len(before) {
					dump = after[len(before):]
				}
			}
			_ = cmd.Process.Kill()
			<-d.exited
		}
		if s.t.Failed() {
			s.t.Logf("hoard daemon log (tail):\n%s", tailLines(before, 60))
			if dump != "" {
				s.t.Logf("hoard daemon goroutines at the end of the test:\n%s", dump)
			}
		}
	})
	return d
}

// stop sends sig and waits for the daemon to exit; it returns the exit
// code.
func (d *daemonProc) stop(sig syscall.Signal, timeout time.Duration) int {
	d.t.Helper()
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(timeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Fatalf("hoard daemon did not exit within %s of %v\n%s", timeout, sig, tailLines(d.out.String(), 40))
	}
	return exitCode(d.err)
}

// stopClean stops the daemon with SIGTERM, as a service manager does,
// and fails the test unless it exits 0 within a minute.
func (d *daemonProc) stopClean() {
	d.t.Helper()
	if code := d.stop(syscall.SIGTERM, time.Minute); code != 0 {
		d.t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}
}

// daemonStatus is the part of GET /status the tests read.
type daemonStatus struct {
	Sites map[string]struct {
		Running    bool `json:"running"`
		LastBackup *struct {
			Name     string `json:"name"`
			StartWAL string `json:"start_wal_segment"`
		} `json:"last_basebackup"`
		Backups            int        `json:"basebackups"`
		LastRetention      *time.Time `json:"last_retention"`
		LastRetentionError string     `json:"last_retention_error"`
		BackupRunning      bool       `json:"basebackup_running"`
		WAL                *struct {
			Connected  bool   `json:"connected"`
			Flushed    string `json:"flushed_lsn"`
			Uploaded   string `json:"uploaded_lsn"`
			Stored     string `json:"stored_lsn"`
			QueueDepth int    `json:"upload_queue"`
			Paused     bool   `json:"paused_by_disk_guard"`
		} `json:"wal"`
		UploadFailures int `json:"upload_failures_in_a_row"`
	} `json:"backup_sites"`
}

// status fetches the daemon's /status; ok is false while it does not
// answer.
func (d *daemonProc) status() (daemonStatus, bool) {
	var st daemonStatus
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/status", d.s.httpPort))
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil {
		return st, false
	}
	return st, true
}

// waitFlushed waits until the daemon reports site's WAL fsynced up to
// lsn (its status' flushed_lsn), which the server's functions return as
// the end of the record they wrote.
func (d *daemonProc) waitFlushed(site string, lsn pglogrepl.LSN, timeout time.Duration) {
	d.t.Helper()
	d.waitFor("the daemon flushed "+lsn.String(), timeout, func() bool {
		st, ok := d.status()
		if !ok || st.Sites[site].WAL == nil {
			return false
		}
		f, err := pglogrepl.ParseLSN(st.Sites[site].WAL.Flushed)
		return err == nil && f >= lsn
	})
}

// waitFor polls cond every 200 ms until it holds, failing the test after
// timeout or when the daemon exits.
func (d *daemonProc) waitFor(what string, timeout time.Duration, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-d.exited:
			d.t.Fatalf("hoard daemon exited (%v) while waiting for %s\n%s", d.err, what, tailLines(d.out.String(), 40))
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: not within %s\n%s", what, timeout, tailLines(d.out.String(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tcpProxy forwards loopback connections to a target address and can cut
// them all and refuse new ones for a while: a storage outage in front of a
// real server.
type tcpProxy struct {
	t      testing.TB
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	// gen counts the outages: a connection accepted before down that
	// was not registered yet is closed instead of forwarded.
	gen int
	wg  sync.WaitGroup
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	// A port from FreePort, below the ephemeral range: down frees the
	// port for minutes, and an ephemeral one (":0") could be taken then
	// as the local port of any outgoing connection on the machine (the
	// daemon's retries through this proxy, pgbench, another test), and
	// up failed with "address already in use".
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(testio.FreePort(t))))
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.down(); p.wg.Wait() })
	return p
}

// port returns the proxy's port.
func (p *tcpProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	gen := p.gen
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.pipe(c, gen)
			}()
		}
	}()
}

// pipe forwards c, accepted in outage generation gen, to the target.
func (p *tcpProxy) pipe(c net.Conn, gen int) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	u, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.gen != gen || p.target != target {
		// down (or retarget) ran between Accept and here: it did not
		// see this connection, which would go on working through the
		// outage (or to the old target).
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// down closes the listener and every connection: clients get refused
// connections and reset streams.
func (p *tcpProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
}

// up listens again on the same address.
func (p *tcpProxy) up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// retarget moves the proxy to another target, as a virtual IP or a DNS
// name moves to a promoted standby: it cuts every connection, and new
// ones reach target.
func (p *tcpProxy) retarget(target string) {
	p.mu.Lock()
	p.target = target
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
}

// waitFirstBackup waits until the daemon's status counts a backup of site
// and, with idle, none running.
func (d *daemonProc) waitFirstBackup(site string, timeout time.Duration, idle bool) {
	d.t.Helper()
	d.waitFor("the first basebackup", timeout, func() bool {
		st, ok := d.status()
		return ok && st.Sites[site].Backups >= 1 && (!idle || !st.Sites[site].BackupRunning)
	})
}
