package testio

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ErrPortTaken is the error of Process.Listen when another process has
// the port the server was given: between FreePort and the server's own
// bind, something else bound it (another package's tests, a PostgreSQL
// cluster starting beside them, any program choosing its own ports).
var ErrPortTaken = errors.New("port taken by another process")

// startAttempts bounds the starts of a server whose port was taken: each
// attempt has new ports, so only a machine where ports are taken as fast
// as they are handed out fails them all.
const startAttempts = 5

// Attempt is one try of StartServer: its ports, and the processes
// started on them, stopped when the attempt fails.
type Attempt struct {
	t     testing.TB
	Ports []int // from FreePort, new for each attempt
	procs []*Process
}

// Start starts one of the server's processes (testio.Start), stopped
// again when the attempt fails.
func (a *Attempt) Start(name string, env []string, bin string, args ...string) *Process {
	a.t.Helper()
	p := Start(a.t, name, env, bin, args...)
	a.procs = append(a.procs, p)
	return p
}

// StartServer starts a server on n loopback ports from FreePort and
// returns them: start starts the server's processes with the attempt's
// Start, on its Ports, and waits for each with Process.Listen. When start
// returns ErrPortTaken, StartServer stops the attempt's processes and
// calls start again with n new ports, up to 5 attempts. Any other error,
// or a port taken in every attempt, fails the test with start's error,
// which holds the server's output.
//
// PostgreSQL clusters of internal/pgtest retry the same way, through
// pg_ctl's exit and the server log.
func StartServer(t testing.TB, n int, start func(a *Attempt) error) []int {
	t.Helper()
	for attempt := 1; ; attempt++ {
		a := &Attempt{t: t, Ports: make([]int, n)}
		for i := range a.Ports {
			a.Ports[i] = FreePort(t)
		}
		err := start(a)
		if err == nil {
			return a.Ports
		}
		for _, p := range a.procs {
			p.Stop()
		}
		if !errors.Is(err, ErrPortTaken) {
			t.Fatal(err)
		}
		if attempt == startAttempts {
			t.Fatalf("%d attempts on new ports, the last: %v", attempt, err)
		}
		t.Logf("start again on new ports: %v", err)
	}
}

// Listen waits until the process listens on the loopback TCP port and
// ready (nil for none: a listening socket is ready) holds, polling every
// 100 ms. The process must hold the listening socket itself, so that a
// server of another test on a port taken meanwhile is never taken for
// this one. It returns an error wrapping ErrPortTaken when another
// process listens on the port, alone or beside this one (SO_REUSEPORT),
// or when the process exited saying its address was in use; an error
// when it exited otherwise or timeout passed. Each error holds the
// process's output.
func (p *Process) Listen(port int, timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		ours, others, lerr := p.listeners(port)
		if err, ok := p.exited(); ok {
			if others || inUse(p.Out.String()) {
				return p.fail(fmt.Errorf("exited: %v: %w (%d)", err, ErrPortTaken, port))
			}
			return p.fail(fmt.Errorf("exited before it listened on %d: %v", port, err))
		}
		switch {
		case lerr != nil:
			return p.fail(fmt.Errorf("listeners on %d: %v", port, lerr))
		case others:
			return p.fail(fmt.Errorf("does not listen on %d: %w", port, ErrPortTaken))
		case ours && (ready == nil || ready()):
			return nil
		case time.Now().After(deadline):
			return p.fail(fmt.Errorf("not listening on %d and ready within %s", port, timeout))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inUse reports whether a server's output says that it could not bind
// its address: Go's and Node's "address already in use", MinIO's "port
// is already in use", OpenSSH's and memcached's, Swift's "Could not
// bind".
func inUse(out string) bool {
	out = strings.ToLower(out)
	return strings.Contains(out, "already in use") || strings.Contains(out, "eaddrinuse") ||
		strings.Contains(out, "could not bind") || strings.Contains(out, "cannot bind")
}

// listeners reports whether the process's group holds a TCP socket
// listening on port at an address a bind to 127.0.0.1 conflicts with, and
// whether any other process does. Linux's /proc tells: /proc/net/tcp{,6}
// list the listening sockets by inode, /proc/PID/fd links to them.
func (p *Process) listeners(port int) (ours, others bool, err error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listening(f, port, inodes); err != nil {
			return false, false, err
		}
	}
	if len(inodes) == 0 {
		return false, false, nil
	}
	held := p.groupSockets()
	for ino := range inodes {
		if held[ino] {
			ours = true
		} else {
			others = true
		}
	}
	return ours, others, nil
}

// conflicting are the local addresses, as /proc/net/tcp{,6} spell them,
// whose listeners keep a server from binding 127.0.0.1: itself, and the
// wildcard addresses of IPv4 and IPv6 (and IPv4-mapped 127.0.0.1).
var conflicting = map[string]bool{
	"0100007F": true, "00000000": true,
	"00000000000000000000000000000000": true, "0000000000000000FFFF00000100007F": true,
}

// listening adds to inodes the sockets the table file (/proc/net/tcp's
// format: sl local_address rem_address st ... inode) lists in state
// LISTEN (0A) on port at a conflicting address.
func listening(file string, port int, inodes map[string]bool) error {
	f, err := os.Open(file)
	if os.IsNotExist(err) && file == "/proc/net/tcp6" {
		return nil // no IPv6
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		addr, hexPort, ok := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); !ok || err != nil || int(p) != port || !conflicting[addr] {
			continue
		}
		inodes[fields[9]] = true
	}
	return sc.Err()
}

// groupSockets returns the inodes of the sockets the processes of the
// process's group have open. A process that exits meanwhile is passed
// over.
func (p *Process) groupSockets() map[string]bool {
	held := map[string]bool{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and ')'.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		if f := strings.Fields(rest); len(f) < 3 || f[2] != strconv.Itoa(p.pid) {
			continue
		}
		fds, _ := filepath.Glob(filepath.Join(filepath.Dir(stat), "fd", "*"))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
				held[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
	}
	return held
}
