package basebackup

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// firstChunk runs do before the first chunk's Put: while the backup
// streams.
type firstChunk struct {
	storage.Store
	do   func()
	once sync.Once
}

func (s *firstChunk) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if strings.Contains(key, "/basebackup_chunk/") {
		s.once.Do(s.do)
	}
	return s.Store.Put(ctx, key, r, md)
}

// TestRun_SQLSessionEnded: a BASE_BACKUP backup's SQL session sits idle
// while the server checkpoints and streams, which may take hours, and the
// server ends it after idle_session_timeout (PostgreSQL 14+; a firewall's
// idle timeout or pg_terminate_backend do the same). The backup itself
// lives on the replication connection: the queries after it (the end
// snapshot) run on a new session, and the backup is stored, instead of
// failing every time after the whole stream.
func TestRun_SQLSessionEnded(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: 15})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	// A session's idle timeout is the one in force when it went idle.
	setTimeout := func(v string) {
		c.Exec(t, "alter system set idle_session_timeout = '"+v+"'")
		c.Exec(t, "select pg_reload_conf()")
	}
	for _, tc := range []struct {
		name        string
		setup, done func()
		do          func()
	}{
		{"IdleSessionTimeout", func() { setTimeout("1s") }, func() { setTimeout("0") },
			func() { time.Sleep(3 * time.Second) }},
		{"Terminated", func() {}, func() {}, func() {
			c.Exec(t, "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'hoard basebackup' and backend_type = 'client backend'")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			defer tc.done()
			a := localArchive(t)
			real := a.Store
			a.Store = &firstChunk{Store: real, do: tc.do}
			info, err := Run(testContext(t), Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeStream, Fast: true, NoWait: true,
				ChunkSize: 1 << 20})
			if err != nil {
				t.Fatalf("Run with the SQL session ended while it streamed: %v", err)
			}
			if info.EndXmax == 0 || info.EndTime.IsZero() {
				t.Errorf("end snapshot not recorded: xmax %d, end time %v", info.EndXmax, info.EndTime)
			}
			a.Store = real
			if bs, err := a.ListBackups(testContext(t)); err != nil || len(bs) != 1 || bs[0].Name != info.Name {
				t.Errorf("ListBackups = %v, %v", bs, err)
			}
		})
	}
}

// routeProxy forwards each loopback connection it accepts to the server
// (host:port) route names for it, n counting the connections from 0: a
// DNS name or a load balancer that moves to another server in a failover,
// or libpq's several hosts, of which another answers the next time.
// Connections already forwarded stay where they went.
type routeProxy struct {
	port int
}

// startRouteProxy listens on loopback; t.Cleanup closes the listener and
// every connection.
func startRouteProxy(t testing.TB, route func(n int) string) *routeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", route(n))
			if err != nil {
				client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(server, client); server.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(client, server); client.Close() }()
		}
	}()
	return &routeProxy{port: ln.Addr().(*net.TCPAddr).Port}
}

func (p *routeProxy) connString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", p.port)
}

// TestRun_SQLSessionOtherServer: the new SQL session onSQL opens when the
// server ended the backup's one may reach another server than the
// replication connection the backup streams from: the connection string
// names several hosts, or a name that a failover moved. The backup fails
// saying so, instead of recording that server's end snapshot and clock
// as its own (a --target-xid judged against another server's
// transactions). The other server is either the backup's own promoted
// standby (same system identifier, another timeline and postmaster) or
// another cluster; each has run more transactions than the backup's
// server, so that its snapshot cannot pass for the backup's.
func TestRun_SQLSessionOtherServer(t *testing.T) {
	const major = 15
	c := pgtest.Start(t, pgtest.Options{Major: major})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	// The standby a failover promotes: a copy of the cluster as a clean
	// stop leaves it, started in recovery and promoted.
	c.Stop(t)
	fork := filepath.Join(pgtest.TempDir(t), "fork")
	if out, err := exec.Command("cp", "-a", c.DataDir, fork).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v\n%s", err, out)
	}
	c.Start(t)
	if out, err := exec.Command("touch", filepath.Join(fork, "standby.signal")).CombinedOutput(); err != nil {
		t.Fatalf("standby.signal: %v\n%s", err, out)
	}
	promoted := pgtest.StartDataDir(t, major, fork, nil)
	promoted.Promote(t)
	promoted.WaitRecoveryDone(t, time.Minute)
	other := pgtest.Start(t, pgtest.Options{Major: major})
	addr := func(c *pgtest.Cluster) string { return fmt.Sprintf("%s:%d", c.Host, c.Port) }
	sysID := func(c *pgtest.Cluster) string {
		return c.QueryString(t, "select system_identifier::text from pg_control_system()")
	}
	for _, tc := range []struct {
		name string
		to   *pgtest.Cluster
	}{{"Promoted", promoted}, {"OtherCluster", other}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.to.Exec(t, "do $$ begin for i in 1..1000 loop perform txid_current(); commit; end loop; end $$")
			var target atomic.Value
			target.Store(addr(c))
			p := startRouteProxy(t, func(int) string { return target.Load().(string) })
			a := localArchive(t)
			real := a.Store
			a.Store = &firstChunk{Store: real, do: func() {
				target.Store(addr(tc.to))
				c.Exec(t, "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'hoard basebackup' and backend_type = 'client backend'")
			}}
			info, err := Run(testContext(t), Options{ConnString: p.connString(), Archive: a, Mode: ModeStream, Fast: true, NoWait: true,
				ChunkSize: 1 << 20})
			if err == nil {
				t.Fatalf("Run stored %s with the end snapshot of the server its new SQL session reached: xmax %d, "+
					"where the backup's server's is %s and the other's %s", info.Name, info.EndXmax,
					c.QueryString(t, "select txid_snapshot_xmax(txid_current_snapshot())::text"),
					tc.to.QueryString(t, "select txid_snapshot_xmax(txid_current_snapshot())::text"))
			}
			t.Logf("Run: %v", err)
			for _, want := range []string{"another server", sysID(c), sysID(tc.to)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Run: %v; want it to name %q", err, want)
				}
			}
			a.Store = real
			if bs, err := a.ListBackups(testContext(t)); err != nil || len(bs) != 0 {
				t.Errorf("ListBackups = %v, %v; want none", bs, err)
			}
		})
	}

	// The replication connection, opened right after the first SQL
	// session, reaches the other cluster: the SQL session's clock and
	// snapshot would be recorded for the other cluster's backup.
	t.Run("ReplicationElsewhere", func(t *testing.T) {
		p := startRouteProxy(t, func(n int) string {
			if n == 0 {
				return addr(c)
			}
			return addr(other)
		})
		a := localArchive(t)
		info, err := Run(testContext(t), Options{ConnString: p.connString(), Archive: a, Mode: ModeStream, Fast: true, NoWait: true,
			ChunkSize: 1 << 20})
		if err == nil {
			t.Fatalf("Run stored %s of system %s with the end snapshot of the SQL session's server %s: xmax %d",
				info.Name, info.SystemID, sysID(c), info.EndXmax)
		}
		t.Logf("Run: %v", err)
		for _, want := range []string{"another server", sysID(c), sysID(other)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Run: %v; want it to name %q", err, want)
			}
		}
		if bs, err := a.ListBackups(testContext(t)); err != nil || len(bs) != 0 {
			t.Errorf("ListBackups = %v, %v; want none", bs, err)
		}
	})
}
