package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// stallProxy is an HTTP proxy in front of a real S3 server that holds the
// requests a test picks until their client goes away: storage that stalls
// in the middle of a command.
type stallProxy struct {
	srv *httptest.Server

	mu      sync.Mutex
	stall   func(*http.Request) bool
	release chan struct{} // closed when the stall ends
	hit     chan string
}

func newStallProxy(t testing.TB, target storage.Config) *stallProxy {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", target.Host, target.Port)}
	p := &stallProxy{hit: make(chan string, 1), release: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		stall, release := p.stall != nil && p.stall(r), p.release
		p.mu.Unlock()
		if stall {
			t.Logf("proxy: holding %s %s", r.Method, r.URL)
			select {
			case p.hit <- r.Method + " " + r.URL.String():
			default:
			}
			// Until the client goes away or the stall ends (other
			// clients, such as the source's archive_command, may be
			// held too: they then see a failure and retry).
			select {
			case <-r.Context().Done():
			case <-release:
			}
			http.Error(w, "stalled", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// stallOn makes the proxy hold every request for which f is true; nil
// passes everything.
func (p *stallProxy) stallOn(f func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stall = f
	close(p.release)
	p.release = make(chan struct{})
	select {
	case <-p.hit:
	default:
	}
}

// config is the storage config that reaches the server through the proxy.
func (p *stallProxy) config(direct storage.Config) storage.Config {
	c := direct
	u, _ := url.Parse(p.srv.URL)
	c.Port, _ = strconv.Atoi(u.Port())
	return c
}

// newS3Site writes a configuration for a site whose WAL arrives through
// archive_command, stored in the S3 server at via.
func newS3Site(t testing.TB, via storage.Config) *site {
	t.Helper()
	return newSite(t, siteOptions{ObjectStorage: s3Storage(via), Site: map[string]any{"basebackup_count": 20}})
}

// interrupt starts hoard with args, waits until the proxy holds one of its
// requests, sends sig and returns the exit code and stderr. A hoard that
// does not exit after the signal fails the test (it would otherwise hang
// the run).
func (s *site) interrupt(p *stallProxy, sig syscall.Signal, args ...string) (int, string) {
	s.t.Helper()
	cmd := s.command(args...)
	var stdout, stderr testio.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case req := <-p.hit:
		s.t.Logf("hoard %s: stalled at %s; sending %v", strings.Join(args, " "), req, sig)
	case err := <-done:
		s.t.Fatalf("hoard %s exited (%v) before reaching the stalled request\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-done:
		s.t.Logf("hoard %s after %v: %v\n%s", strings.Join(args, " "), sig, err, tailLines(stderr.String(), 10))
		return exitCode(err), stderr.String()
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		killed := <-done
		s.t.Fatalf("hoard %s did not stop after %v (then killed: %v)\n%s", strings.Join(args, " "), sig, killed, stderr.String())
		return 0, ""
	}
}

// TestSignals takes 10 small basebackups into MinIO and runs verify at
// --parallel 1, 2 and 4 (a site with at least as many backups as --parallel
// once made verify wait forever). Then every long-running command is
// stopped by SIGINT or SIGTERM while the storage holds one of its
// requests: each must exit 130 (wal-fetch: 128 + the signal, as
// PostgreSQL reads it) and leave nothing half-written (no new backup, no
// restored file PostgreSQL could start on, no fetched segment).
func TestSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hoard against PostgreSQL and MinIO")
	}
	minio := storetest.MinIO(t)
	proxy := newStallProxy(t, minio)
	s := newS3Site(t, proxy.config(minio))
	src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: s.clusterConf()})
	s.use(src)
	src.Exec(t, "create table t (id int primary key, note text)")
	for i := range 10 {
		src.Exec(t, fmt.Sprintf("insert into t values (%d, 'row %d')", i, i))
		s.mustHoard("basebackup", "--fast")
	}
	last := switchAndWaitArchived(t, src)
	if n := len(s.listBackups()); n != 10 {
		t.Fatalf("%d backups, want 10", n)
	}

	for _, parallel := range []string{"1", "2", "4"} {
		out := s.mustHoard("verify", "--parallel", parallel)
		if !strings.Contains(out, "10 backups") || !strings.Contains(out, "OK:") {
			t.Errorf("verify --parallel %s:\n%s", parallel, out)
		}
	}
	if out := s.mustHoard("verify", "--full", "--parallel", "2"); !strings.Contains(out, "OK:") {
		t.Errorf("verify --full --parallel 2:\n%s", out)
	}

	isChunk := func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/basebackup_chunk/") }
	cases := []struct {
		name  string
		sig   syscall.Signal
		stall func(*http.Request) bool
		args  []string
		check func(t *testing.T)
	}{
		{"Verify", syscall.SIGINT, func(r *http.Request) bool { return r.Method == http.MethodHead && isChunk(r) },
			[]string{"verify", "--parallel", "1"}, nil},
		{"VerifyFull", syscall.SIGTERM, func(r *http.Request) bool {
			return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/xlog/")
		},
			[]string{"verify", "--full"}, nil},
		{"List", syscall.SIGINT, func(r *http.Request) bool { return r.Method == http.MethodGet && r.URL.Query().Has("list-type") },
			[]string{"list"}, nil},
		// A chunk's upload, not the claim of the backup's name stored
		// before it in the same folder.
		{"Basebackup", syscall.SIGTERM, func(r *http.Request) bool {
			return r.Method == http.MethodPut && isChunk(r) && !strings.HasSuffix(r.URL.Path, archive.NameClaimSuffix)
		},
			[]string{"basebackup", "--fast"}, func(t *testing.T) {
				if n := len(s.listBackups()); n != 10 {
					t.Errorf("%d backups after an interrupted basebackup, want 10", n)
				}
			}},
		{"Restore", syscall.SIGINT, func(r *http.Request) bool { return r.Method == http.MethodGet && isChunk(r) },
			[]string{"restore", "--target-dir", filepath.Join(s.dir, "restored")}, func(t *testing.T) {
				for _, f := range []string{"global/pg_control", "recovery.signal", "postgresql.auto.conf"} {
					if _, err := os.Stat(filepath.Join(s.dir, "restored", f)); err == nil {
						t.Errorf("interrupted restore wrote %s", f)
					}
				}
			}},
		{"WALFetch", syscall.SIGTERM, func(r *http.Request) bool {
			return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/xlog/")
		},
			[]string{"wal-fetch", last, filepath.Join(s.dir, "fetched")}, func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(s.dir, "fetched")); err == nil {
					t.Errorf("interrupted wal-fetch wrote its output file")
				}
			}},
		{"Retention", syscall.SIGINT, func(r *http.Request) bool { return r.Method == http.MethodDelete },
			[]string{"retention"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "Retention" {
				s.setSiteKey("basebackup_count", 2)
			}
			proxy.stallOn(tc.stall)
			code, stderr := s.interrupt(proxy, tc.sig, tc.args...)
			proxy.stallOn(nil)
			// wal-fetch exits as if killed by the signal, as PostgreSQL
			// reads it (143: its shutdown); the others 130.
			want := 130
			if tc.args[0] == "wal-fetch" {
				want = 128 + int(tc.sig)
			}
			if code != want {
				t.Errorf("hoard %s after %v: exit %d, want %d\n%s", strings.Join(tc.args, " "), tc.sig, code, want, stderr)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}

	// What the interruptions left is still sound: the kept backups verify
	// and the newest restores to the source's rows.
	if out := s.mustHoard("verify"); !strings.Contains(out, "OK:") {
		t.Errorf("verify after the interruptions:\n%s", out)
	}
	dst := filepath.Join(pgtest.TempDir(t), "final")
	s.mustHoard("restore", "--target-dir", dst)
	restored := pgtest.StartDataDir(t, 15, dst, noArchiving)
	restored.WaitRecoveryDone(t, 3*time.Minute)
	rows := func(c *pgtest.Cluster) string {
		return c.QueryString(t, "select count(*)::text || ': ' || string_agg(id::text || '=' || note, ',' order by id) from t")
	}
	if got, want := rows(restored), rows(src); got != want {
		t.Errorf("restored rows %q, want %q", got, want)
	}
}
