// Package testio holds small helpers that tests of several packages
// share: a buffer that a process or server writes while the test reads it,
// a free loopback port, a server started on such ports and started again
// on new ones when another process takes one first (StartServer), fuzz
// seeds read from files, a tar stream's members, writing a whole stream
// and closing it (WriteClose), replacing a file with something else
// (ReplaceFile), the names in a folder, the cache folder of
// test servers and PostgreSQL builds, and skipping (or, under
// HOARD_TEST_STRICT=1, failing) a test that lacks a binary or server.
package testio

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: a
// process's output, or a server's log, that the test reads meanwhile.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Ports handed out by FreePort lie below Linux's default ephemeral range
// (32768-60999): a port from that range, found free and released, can be
// taken a moment later by any outgoing connection on the machine (a test's
// own HTTP client, a server's connection to PostgreSQL) before the server
// meant to listen there binds it. CI saw MinIO fail so ("bind: address
// already in use" on 37631).
const (
	portLow  = 20000
	portHigh = 32768
)

// nextPort is the next candidate port of this test process; it starts at a
// random place, so that test processes running at once mostly try
// different ports, and moves on with every port handed out, so that one
// process never hands out a port twice.
var nextPort atomic.Int64

func init() {
	nextPort.Store(int64(portLow + rand.IntN(portHigh-portLow)))
}

// FreePort returns a loopback TCP port that is free now and that no
// outgoing connection will take (see portLow); another process binding
// ports of its choice may still take it before the caller binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	for range portHigh - portLow {
		port := portLow + int(nextPort.Add(1)-portLow)%(portHigh-portLow)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		takeIfAsked(port)
		return port
	}
	t.Fatalf("find a free port: none free in %d-%d", portLow, portHigh-1)
	return 0
}

// taking is what TakePort asked for: the test, and how many ports
// FreePort hands out before the one to take.
var taking struct {
	sync.Mutex
	t    testing.TB
	skip int
}

// TakePort makes the port FreePort hands out after n others (0: the next
// one) taken the moment FreePort returns it, by a listener of the test
// process that stays open until t ends: what another process does when it
// binds that port before the server it was picked for. Tests of
// StartServer use it; they must not run in parallel with tests that call
// FreePort.
func TakePort(t testing.TB, n int) {
	t.Helper()
	taking.Lock()
	defer taking.Unlock()
	taking.t, taking.skip = t, n
	t.Cleanup(func() {
		taking.Lock()
		defer taking.Unlock()
		taking.t = nil
	})
}

// takeIfAsked opens TakePort's listener on port when port is the one to
// take.
func takeIfAsked(port int) {
	taking.Lock()
	defer taking.Unlock()
	if taking.t == nil {
		return
	}
	if taking.skip > 0 {
		taking.skip--
		return
	}
	t := taking.t
	taking.t = nil
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("take port %d: %v", port, err)
	}
	t.Cleanup(func() { l.Close() })
}

// AddFiles adds the contents of each file matching pattern to f's seed
// corpus.
func AddFiles(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// Race runs fn(0) … fn(n-1) in n goroutines released at the same moment,
// and returns when all have returned: the tests of concurrent writers
// (wal-push, Store.Create) use it so that they really overlap.
func Race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}
