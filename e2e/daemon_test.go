package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// streamSite is a site whose WAL the daemon streams into a real S3 server
// (MinIO) reached through a proxy the test can cut.
type streamSite struct {
	*site
	httpPort int
	alertDir string
	// store is the bucket seen directly, not through the proxy, for the
	// test's own checks.
	store storage.Store
}

// newStreamSite writes a configuration for a pg_receivexlog site storing
// into the S3 server at via (the proxy); direct is the same server without
// the proxy.
func newStreamSite(t *testing.T, via, direct storage.Config) *streamSite {
	t.Helper()
	// Two failed uploads in a row raise upload_retries_warning.
	return newStreamSiteStoring(t, s3Storage(via), direct, map[string]any{"upload_retries_warning_limit": 1})
}

// newStreamSiteStoring writes a configuration for a pg_receivexlog site
// whose object_storage is objectStorage, with the global keys in global,
// and opens direct, the same storage, for the test's own checks.
func newStreamSiteStoring(t *testing.T, objectStorage map[string]any, direct storage.Config, global map[string]any) *streamSite {
	t.Helper()
	s := &streamSite{site: newSite(t, siteOptions{Mode: "pg_receivexlog", ObjectStorage: objectStorage,
		Site: map[string]any{"basebackup_interval_hours": 24}})}
	s.httpPort, s.alertDir = testio.FreePort(t), filepath.Join(s.dir, "alerts")
	s.editConfig(func(cfg map[string]any) {
		cfg["json_state_file_path"] = filepath.Join(s.dir, "state", "hoard_state.json")
		cfg["alert_file_dir"] = s.alertDir
		cfg["http_port"] = s.httpPort
		cfg["graceful_shutdown_upload_timeout"] = 30
		maps.Copy(cfg, global)
	})
	st, err := storage.Open(context.Background(), direct)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s.store = st
	return s
}

// newMinIOStreamSite is a stream site storing into a MinIO of its own.
func newMinIOStreamSite(t *testing.T) *streamSite {
	t.Helper()
	minio := storetest.MinIO(t)
	return newStreamSite(t, minio, minio)
}

// newProxiedStreamSite is a stream site storing into a MinIO of its own
// through the returned proxy, which the test can cut.
func newProxiedStreamSite(t *testing.T) (*streamSite, *tcpProxy) {
	t.Helper()
	minio := storetest.MinIO(t)
	proxy := newTCPProxy(t, net.JoinHostPort(minio.Host, strconv.Itoa(minio.Port)))
	via := minio
	via.Port = proxy.port()
	return newStreamSite(t, via, minio), proxy
}

// startSource starts the cluster the daemon streams from, as the site's
// node: the newest major the tests run, 1 MiB WAL segments, and what opts
// adds.
func (s *streamSite) startSource(opts pgtest.Options) *pgtest.Cluster {
	s.t.Helper()
	opts.Major = pgtest.Versions()[len(pgtest.Versions())-1]
	opts.WALSegmentSizeMB = 1
	c := pgtest.Start(s.t, opts)
	s.use(c)
	return c
}

// storedWAL returns the names of the objects under xlog/.
func (s *streamSite) storedWAL() []string {
	s.t.Helper()
	var names []string
	dir := s.name + "/xlog/"
	err := s.store.List(context.Background(), dir, func(o storage.Object) error {
		names = append(names, strings.TrimPrefix(o.Key, dir))
		return nil
	})
	if err != nil {
		s.t.Fatalf("list %s: %v", dir, err)
	}
	sort.Strings(names)
	return names
}

// stored reports whether xlog/<name> exists.
func (s *streamSite) stored(name string) bool {
	_, err := s.store.Stat(context.Background(), s.name+"/xlog/"+name)
	return err == nil
}

// switchAndWaitStored closes the current segment (pgtest's SwitchWAL:
// the one holding everything written before the call) and waits until
// the daemon stored it.
func (s *streamSite) switchAndWaitStored(d *daemonProc, c *pgtest.Cluster, timeout time.Duration) string {
	s.t.Helper()
	seg := c.SwitchWAL(s.t)
	d.waitFor("segment "+seg+" stored", timeout, func() bool { return s.stored(seg) })
	return seg
}

// pgbenchLoad runs pgbench in the background.
type pgbenchLoad struct {
	c    *pgtest.Cluster
	app  string // its sessions' application_name
	cmd  *exec.Cmd
	out  *testio.SyncBuffer
	done chan error
}

// pgbenchLoads numbers the loads, for their application_name.
var pgbenchLoads atomic.Int64

func startPgbench(t *testing.T, c *pgtest.Cluster, args ...string) *pgbenchLoad {
	t.Helper()
	full := append([]string{"-h", c.Host, "-p", strconv.Itoa(c.Port), "-U", "postgres"}, args...)
	full = append(full, "postgres")
	cmd := exec.Command(pgtest.Tool(t, "pgbench"), full...)
	l := &pgbenchLoad{c: c, app: fmt.Sprintf("pgbench-load-%d", pgbenchLoads.Add(1)), cmd: cmd,
		out: &testio.SyncBuffer{}, done: make(chan error, 1)}
	cmd.Env = append(minimalEnv(), "PGAPPNAME="+l.app)
	cmd.Stdout, cmd.Stderr = l.out, l.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbench: %v", err)
	}
	go func() { l.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	return l
}

// stop ends pgbench (SIGTERM) and waits until its sessions have ended
// on the server: a statement pgbench had sent, a COMMIT among them, runs
// to its end after pgbench is gone, so what the test reads as committed
// is read only then. Not SIGINT: pgbench does not catch it, so it keeps
// the disposition the test binary was started with, and a shell without
// job control starts its background jobs with SIGINT ignored (a test
// binary run as `e2e.test ... &`; go test itself catches SIGINT, so the
// binary it runs does not inherit that); pgbench then ran on to its -T of
// 600 s, ten minutes per test.
func (l *pgbenchLoad) stop(t *testing.T) {
	t.Helper()
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	<-l.done
	l.c.WaitTrue(t, time.Minute, "select count(*) = 0 from pg_stat_activity where application_name = $1", l.app)
}

func (l *pgbenchLoad) wait(t *testing.T) {
	t.Helper()
	if err := <-l.done; err != nil {
		t.Fatalf("pgbench: %v\n%s", err, l.out.String())
	}
}

// dataSummary is what a restored cluster must match: every committed
// pgbench transaction and the marker.
func dataSummary(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	return c.QueryString(t, `select (select count(*) from pgbench_history)::text || ' history, ' ||
		(select sum(abalance) from pgbench_accounts)::text || ' balance, marker ' ||
		coalesce((select string_agg(id::text, ',') from marker), '-')`)
}

// TestDaemonStreaming runs hoard daemon in streaming mode against a real
// cluster (1 MiB segments) and MinIO, its scheduled basebackup read from
// the data directory (local-tar), and puts it through what must lose
// nothing: kill -9 at random moments three times under pgbench load, a
// PostgreSQL restart under it, and a storage outage (every connection to
// MinIO cut and refused for a while). Then, after a marker row and a WAL
// switch, SIGTERM must exit 0; the archive must hold every segment from
// the first backup's start through the marker's, each decoding to a valid
// segment; and a restore of the first backup, which replays all of that
// WAL, must recover exactly the committed rows and the marker.
func TestDaemonStreaming(t *testing.T) {
	s, proxy := newProxiedStreamSite(t)
	src := s.startSource(pgtest.Options{})
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")
	// The daemon runs on the database host: its basebackups read the data
	// directory (local-tar, the default when pg_data_directory is
	// readable).
	s.setSiteKey("pg_data_directory", src.DataDir)

	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, false)
	first := s.listBackups()[0]
	t.Logf("first backup %s starts in %s", first.Name, first.StartWALSegment)
	if first.BackupReason != "scheduled" || first.Metadata["hoard-source"] != "data-directory" {
		t.Errorf("first backup: reason %q, hoard-source %q; want a scheduled local-tar backup (data-directory)", first.BackupReason, first.Metadata["hoard-source"])
	}

	// kill -9 at random moments under load, restarting each time.
	load := startPgbench(t, src, "-T", "10", "-c", "2", "-n")
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(500+rand.IntN(2000)) * time.Millisecond)
		d.stop(syscall.SIGKILL, 10*time.Second)
		d = s.startDaemon()
		d.waitFor("streaming after kill -9", time.Minute, func() bool {
			st, ok := d.status()
			return ok && st.Sites[s.name].WAL != nil && st.Sites[s.name].WAL.Connected
		})
	}
	load.wait(t)
	s.switchAndWaitStored(d, src, time.Minute)

	// PostgreSQL restarted under the daemon: it reconnects and goes on.
	src.Restart(t)
	pgtest.Pgbench(t, src, "-T", "2", "-c", "2", "-n")
	s.switchAndWaitStored(d, src, 2*time.Minute)

	// Storage outage: WAL piles up in the spool, the alert is raised, and
	// the backlog drains once the storage is back.
	proxy.down()
	pgtest.Pgbench(t, src, "-T", "3", "-c", "2", "-n")
	src.Exec(t, "select pg_logical_emit_message(false, 'hoard-e2e', 'outage')")
	src.Exec(t, "select pg_switch_wal()")
	alert := filepath.Join(s.alertDir, "upload_retries_warning")
	d.waitFor("upload_retries_warning alert during the outage", 3*time.Minute, func() bool {
		_, err := os.Stat(alert)
		return err == nil
	})
	proxy.up()
	d.waitFor("backlog drained", 3*time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].WAL != nil && st.Sites[s.name].WAL.QueueDepth == 0
	})
	d.waitFor("upload_retries_warning cleared", time.Minute, func() bool {
		_, err := os.Stat(alert)
		return os.IsNotExist(err)
	})

	// A requested backup through the HTTP API.
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/%s/basebackup", s.httpPort, s.name), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /%s/basebackup: %s", s.name, resp.Status)
	}
	d.waitFor("the requested basebackup", 2*time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].Backups >= 2
	})

	src.Exec(t, "create table marker (id int)")
	src.Exec(t, "insert into marker values (42)")
	want := dataSummary(t, src)
	last := s.switchAndWaitStored(d, src, time.Minute)
	if code := d.stop(syscall.SIGTERM, 90*time.Second); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}

	// Every segment from the first backup's start through the marker's,
	// each an intact object holding a whole segment.
	checkContiguous(t, s, first.StartWALSegment, last, 1<<20, "")

	// Every WAL object carries the server's full version, as PGHoard's
	// cached pg_version: each daemon asked the node it streams from (the
	// site sets no pg_version), not the page header's major version.
	version := src.QueryString(t, "show server_version_num")
	for _, name := range s.storedWAL() {
		obj, err := s.store.Stat(context.Background(), s.name+"/xlog/"+name)
		if err != nil {
			t.Fatal(err)
		}
		if got := obj.Metadata[archive.MetaPGVersion]; got != version {
			t.Errorf("xlog/%s: pg-version %q, want the server's %s", name, got, version)
		}
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir, "--basebackup", first.Name)
	c := pgtest.StartDataDir(t, src.Major, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := dataSummary(t, c); got != want {
		t.Errorf("restored cluster has %s, source committed %s", got, want)
	}
}

// checkContiguous checks that the archive holds every segment from first
// through last (one timeline), and that each decodes (integrity checked to
// EOF) to a segment whose header matches its name. Unless dumpDir is "",
// the decoded segments are written there, for pg_waldump.
func checkContiguous(t *testing.T, s *streamSite, first, last string, segSize uint64, dumpDir string) {
	t.Helper()
	have := map[string]bool{}
	for _, n := range s.storedWAL() {
		have[n] = true
	}
	codec := &archive.Codec{}
	var missing []string
	n := 0
	for _, name := range waltest.Names(t, first, last, segSize) {
		if !have[name] {
			missing = append(missing, name)
			continue
		}
		n++
		rc, _, err := codec.Open(context.Background(), s.store, s.name+"/xlog/"+name)
		if err != nil {
			t.Errorf("open %s: %v", name, err)
			continue
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Errorf("decode %s: %v", name, err)
			continue
		}
		if _, err := wal.CheckSegment(name, data[:min(len(data), wal.PageHeaderSize)], int64(len(data))); err != nil {
			t.Errorf("stored %s: %v", name, err)
		}
		if dumpDir != "" {
			if err := os.WriteFile(filepath.Join(dumpDir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("the archive misses %d of the segments %s..%s: %v", len(missing), first, last, missing)
	}
	t.Logf("%d segments %s..%s stored and intact", n, first, last)
}
