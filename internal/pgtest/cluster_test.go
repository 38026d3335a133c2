package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/internal/testio"
)

func TestParseVersions(t *testing.T) {
	tests := []struct {
		in   string
		want []int
	}{
		{"", []int{13, 15, 18}},
		{"all", []int{13, 14, 15, 16, 17, 18}},
		{"18, 13,13", []int{13, 18}},
		{"16", []int{16}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseVersions(tt.in)); diff != "" {
			t.Errorf("parseVersions(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseVersions_ErrUnsupported(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("parseVersions(\"12\") did not panic")
		}
	}()
	parseVersions("12")
}

func TestForEachVersion(t *testing.T) {
	t.Setenv("HOARD_PG_VERSIONS", "16,13")
	var got []string
	ForEachVersion(t, func(t *testing.T, major int) {
		got = append(got, fmt.Sprintf("%s %d", t.Name(), major))
	})
	want := []string{"TestForEachVersion/13 13", "TestForEachVersion/16 16"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("subtests (-want +got):\n%s", diff)
	}
}

func TestStart(t *testing.T) {
	for _, major := range Versions() {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			t.Parallel()
			c := Start(t, Options{Major: major})
			var num int
			c.Scan(t, "select current_setting('server_version_num')::int", &num)
			if got := num / 10000; got != major {
				t.Errorf("server_version_num %d: major %d, want %d", num, got, major)
			}
			if got := c.QueryString(t, "show wal_level"); got != "replica" {
				t.Errorf("wal_level = %q, want replica", got)
			}
			if got := c.QueryString(t, "show data_checksums"); got != "off" {
				t.Errorf("data_checksums = %q, want off", got)
			}
			row := c.QueryRow(t, "select $1::text, 2::int", "one")
			if diff := cmp.Diff([]any{"one", int32(2)}, row); diff != "" {
				t.Errorf("QueryRow (-want +got):\n%s", diff)
			}
			c.Stop(t)
			if c.Running() {
				t.Fatal("Running after Stop")
			}
			c.Start(t)
			c.WaitReady(t)
		})
	}
}

func TestStart_Debian(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Debian: true, DataChecksums: true, WALSegmentSizeMB: 1,
		Conf: map[string]string{"application_name": "it's pgtest"}})
	if got := c.QueryString(t, "show wal_segment_size"); got != "1MB" {
		t.Errorf("wal_segment_size = %q, want 1MB", got)
	}
	if got := c.QueryString(t, "show data_checksums"); got != "on" {
		t.Errorf("data_checksums = %q, want on", got)
	}
	if got := c.QueryString(t, "show application_name"); got != "it's pgtest" {
		t.Errorf("application_name = %q", got)
	}
	if !strings.HasPrefix(c.BinDir, DebianBinDir) {
		t.Errorf("BinDir = %s", c.BinDir)
	}
}

func TestCluster_Kill(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Major: Versions()[0]})
	c.Exec(t, "create table t (i int)")
	c.Exec(t, "insert into t values (1)")
	c.Kill(t)
	if c.Running() {
		t.Fatal("Running after Kill")
	}
	c.Start(t)
	c.WaitForLog(t, "database system was interrupted", 10*time.Second)
	var n int
	c.Scan(t, "select count(*) from t", &n)
	if n != 1 {
		t.Errorf("count = %d after crash recovery, want 1", n)
	}
}

// TestCluster_KillBusyBackend: Kill kills the postmaster's children as
// well, as a crash of the machine would. PostgreSQL's children run in
// sessions of their own (InitPostmasterChild calls setsid), so the
// postmaster's process group is the postmaster alone, and a backend busy
// in a long query notices its death only when the query ends, attached
// to the shared memory all along: a Start right after Kill then failed
// with "pre-existing shared memory block ... is still in use".
func TestCluster_KillBusyBackend(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Major: Versions()[0]})
	conn := c.Connect(t, "postgres")
	var backend int
	if err := conn.QueryRow(t.Context(), "select pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Runs for minutes, and never looks whether the postmaster lives.
		_, _ = conn.Exec(context.Background(), "select count(*) from generate_series(1, 100000000000)")
	}()
	c.WaitTrue(t, time.Minute, "select count(*) = 1 from pg_stat_activity where pid = $1 and state = 'active'", backend)
	c.Kill(t)
	if processAlive(backend) {
		t.Fatalf("backend %d still alive after Kill", backend)
	}
	c.Start(t)
	c.Exec(t, "select 1")
}

func TestStartDataDir(t *testing.T) {
	t.Parallel()
	major := Versions()[0]
	c := Start(t, Options{Major: major})
	c.Exec(t, "create table t as select 42 as i")
	c.Stop(t)

	// Copy the stopped cluster into a root-owned t.TempDir, as a restore
	// would, then start the copy as a standby and promote it.
	dst := filepath.Join(t.TempDir(), "restored")
	copyDir(t, c.DataDir, dst)
	writeFileRoot(t, filepath.Join(dst, "standby.signal"), "")
	r := StartDataDir(t, major, dst, map[string]string{"application_name": "restored"})
	var in bool
	r.Scan(t, "select pg_is_in_recovery()", &in)
	if !in {
		t.Fatal("standby not in recovery")
	}
	r.Promote(t)
	r.WaitRecoveryDone(t, time.Minute)
	var i int
	r.Scan(t, "select i from t", &i)
	if i != 42 {
		t.Errorf("i = %d, want 42", i)
	}
	if got := r.QueryString(t, "show application_name"); got != "restored" {
		t.Errorf("application_name = %q, want restored", got)
	}
}

func TestPgbench(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Major: Versions()[len(Versions())-1]})
	Pgbench(t, c, "-i", "-s", "1", "-q")
	out := Pgbench(t, c, "-t", "20", "-c", "2")
	if !strings.Contains(out, "number of transactions actually processed: 40") {
		t.Errorf("pgbench output:\n%s", out)
	}
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func writeFileRoot(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStart_ListenPortTaken starts a cluster that listens where its
// configuration says, then its copy with pg_ctl options naming a port,
// each on a port something else took after it was chosen (as another
// test process may take the port testio.FreePort handed out, or the one
// hoard restore's summary found free): each starts on another free port,
// which Port says, and keeps it across a restart.
func TestStart_ListenPortTaken(t *testing.T) {
	t.Parallel()
	major := Versions()[0]
	taken := holdPort(t)
	c := Start(t, Options{Major: major, Listen: &Listen{Port: taken, Addresses: "127.0.0.1"}})
	if c.Port == taken {
		t.Fatalf("Port = %d, the port held by the test", c.Port)
	}
	c.Exec(t, "create table t as select 42 as i")
	c.Restart(t)
	if got, want := c.QueryString(t, "show port"), strconv.Itoa(c.Port); got != want {
		t.Errorf("after a restart, port %s, want %s", got, want)
	}
	c.Stop(t)

	dst := filepath.Join(t.TempDir(), "copy")
	copyDir(t, c.DataDir, dst)
	taken = holdPort(t)
	r := StartDataDirListening(t, major, dst, "-p "+strconv.Itoa(taken), Listen{Port: taken, Addresses: "127.0.0.1"})
	if r.Port == taken {
		t.Fatalf("copy: Port = %d, the port held by the test", r.Port)
	}
	var i int
	r.Scan(t, "select i from t", &i)
	if got, want := r.QueryString(t, "show port"), strconv.Itoa(r.Port); got != want || i != 42 {
		t.Errorf("copy: port %s, i = %d, want port %s, i = 42", got, i, want)
	}
}

// holdPort returns a loopback port that a listener holds until the test
// ends.
func holdPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(testio.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}
