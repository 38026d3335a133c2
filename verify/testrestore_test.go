package verify

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// restoreTestOf stores b in a new in-memory archive with codec c and runs
// the test restore of it in e's target, the server user running
// PostgreSQL with a restore_command that fails. It checks that nothing
// outside the scratch directory changed.
func restoreTestOf(t *testing.T, binDir string, e hostile.Env, c *archive.Codec, b hostile.Backup) (hostile.Stored, *RestoreTestResult, error) {
	t.Helper()
	a := archivetest.New(t, storage.NewMem(), c)
	stored := hostile.Put(t, a, b)
	if err := os.Mkdir(e.Target(), 0o711); err != nil {
		t.Fatal(err)
	}
	before := e.Snapshot(t)
	res, err := RestoreTest(context.Background(), RestoreTestOptions{
		Archive: a, Backup: stored.Name, PGBinDir: binDir, ScratchDir: e.Target(),
		RestoreCommand: "false", RunAsUser: pgtest.ServerUser, Logger: zerolog.Nop(),
	})
	if diff := cmp.Diff(before, e.Snapshot(t)); diff != "" {
		t.Errorf("outside the scratch directory (-before +after):\n%s", diff)
	}
	return stored, res, err
}

// TestRestoreTest_Hostile runs the test restore of hoard verify --restore
// and of the daemon's scheduled restore tests on each hostile backup: it
// fails, and nothing outside its scratch directory changes. The backups
// that aim a tablespace at a path outside are restored under the scratch
// directory instead (a test restore never uses the backup's paths), so
// their victims are untouched too.
func TestRestoreTest_Hostile(t *testing.T) {
	binDir := pgtest.BinDir(t, pgtest.DebianMajor, true)
	for _, c := range hostile.Cases(hostile.NewEnv(t)) {
		t.Run(c.Name, func(t *testing.T) {
			e := hostile.NewEnv(t)
			c = hostile.Named(t, e, c.Name)
			stored, res, err := restoreTestOf(t, binDir, e, &archive.Codec{Compression: compress.Zstd}, c.Backup)
			if err == nil || res.OK {
				t.Fatalf("test restore of a hostile backup passed: %+v", res)
			}
			if !strings.HasPrefix(c.Name, "Tablespace") {
				if why := c.Check(err, stored); why != "" {
					t.Error(why)
				}
			}
			if m, _ := filepath.Glob(filepath.Join(e.Target(), "hoard-restore-test-*")); len(m) != 0 {
				t.Errorf("scratch left: %v", m)
			}
		})
	}
}

// TestRestoreTest_TablespaceInScratch: a test restore puts a tablespace
// under its scratch directory, never at the path the backup records (on
// this host that may be a live cluster's, and it comes from storage).
func TestRestoreTest_TablespaceInScratch(t *testing.T) {
	binDir := pgtest.BinDir(t, pgtest.DebianMajor, true)
	e := hostile.NewEnv(t)
	recorded := filepath.Join(e.Parent, "recorded-ts")
	b := hostile.Benign()
	b.Tablespaces = map[string]archive.ManifestTablespace{"ts": {Path: recorded, OID: 16400}}
	b.Chunks = [][]hostile.Member{{{Name: "tablespaces/ts", Type: tar.TypeDir}, {Name: "tablespaces/ts/PG_15_202209061/5/16401", Body: "spc"}}}
	// PostgreSQL cannot start on the backup's fake pg_control: the test
	// fails after the restore, which is what is checked here.
	_, res, err := restoreTestOf(t, binDir, e, &archive.Codec{}, b)
	if err == nil || res.Restore == 0 || strings.Contains(err.Error(), "restore:") {
		t.Fatalf("test restore: %v (restore took %v), want it to fail after the restore", err, res.Restore)
	}
}

// TestRestoreTest_StopRightAfterStart: pg_ctl start -W returns before the
// postmaster writes postmaster.pid, so a stop at once (the daemon shut
// down as its test server started) found no server, and the one starting
// ran on in a scratch directory being removed. stop waits for the pid
// file: every round leaves no server running.
func TestRestoreTest_StopRightAfterStart(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor})
	c.Stop(t)
	// pg_ctl start below passes none of the cluster's server options: the
	// port and socket directory go in its configuration, or the server
	// takes PostgreSQL's default port, which another server may hold.
	conf := fmt.Sprintf("port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\n", testio.FreePort(t), c.SocketDir)
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rt := &restoreTest{o: RestoreTestOptions{}, res: &RestoreTestResult{}, data: c.DataDir, binDir: c.BinDir, scratch: filepath.Dir(c.DataDir)}
	if err := rt.runAs(); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		stop, err := rt.start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := stop(false); err != nil {
			t.Fatalf("round %d: stop right after start: %v", round, err)
		}
		if rt.postmasterRunning() {
			t.Fatalf("round %d: a postmaster runs on after stop", round)
		}
	}
}

// TestRestoreTest_WaitPIDFileEmpty: the postmaster creates postmaster.pid
// empty and writes its pid next; pg_ctl stop refuses the file in between
// ("the PID file ... is empty"), as a CI run saw in the test above. The
// wait before a stop lasts until the pid is in the file, not only the
// file.
func TestRestoreTest_WaitPIDFileEmpty(t *testing.T) {
	data := t.TempDir()
	pidFile := filepath.Join(data, "postmaster.pid")
	if err := os.WriteFile(pidFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rt := &restoreTest{data: data}
	// Set before the pid is written: a wait that returns after the pid
	// is in the file sees it set.
	var writing atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The wait polls every 50 ms; the file stays empty for several polls.
		time.Sleep(300 * time.Millisecond)
		writing.Store(true)
		if err := os.WriteFile(pidFile, []byte("4242\n"+data+"\n"), 0o600); err != nil {
			t.Error(err)
		}
	}()
	rt.waitPIDFile(time.Now().Add(time.Minute))
	returnedEarly := !writing.Load()
	<-done
	if returnedEarly {
		t.Fatal("waitPIDFile returned while postmaster.pid was empty")
	}
	if pid, ok := rt.postmasterPID(); !ok || pid != 4242 {
		t.Fatalf("postmasterPID = %d, %v; want 4242, true", pid, ok)
	}
}

// TestRestoreTest_CheckReplayPartial: where the newest archived WAL is a
// .partial (the daemon stores the segment in progress so at a clean stop,
// and every wal_partial_upload_interval), recovery that ended inside it
// replayed the whole archive. The replay check parsed the .partial's name
// as a segment's, failed, and reported "recovery ended at X, before the
// newest archived segment ....partial" for a restore that had replayed
// everything. Recovery that ended before the .partial's segment still
// fails.
func TestRestoreTest_CheckReplayPartial(t *testing.T) {
	const segSize = 16 << 20
	for _, c := range []struct {
		name, newest, end, status string
	}{
		{"OK", "00000001000000000000000D.partial", "0/D0001E8", CheckOK},
		{"OKSegment", "00000001000000000000000D", "0/D0001E8", CheckOK},
		{"ErrBefore", "00000001000000000000000D.partial", "0/C0001E8", CheckFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			if err := os.Mkdir(filepath.Join(data, "pg_wal"), 0o700); err != nil {
				t.Fatal(err)
			}
			history := "1\t" + c.end + "\tno recovery target specified\n"
			if err := os.WriteFile(filepath.Join(data, "pg_wal", "00000002.history"), []byte(history), 0o600); err != nil {
				t.Fatal(err)
			}
			rt := &restoreTest{res: &RestoreTestResult{}, data: data, log: zerolog.Nop()}
			rt.checkReplay(&Chain{Newest: c.newest, SegmentSize: segSize})
			if len(rt.res.Checks) != 1 || rt.res.Checks[0].Status != c.status {
				t.Fatalf("checks %+v, want one replay check %s", rt.res.Checks, c.status)
			}
			if got := rt.res.Checks[0].Detail; !strings.Contains(got, c.newest) {
				t.Errorf("detail %q does not name %s", got, c.newest)
			}
		})
	}
}

// TestRestoreTest_ConfigureSocketOnly: the scratch server listened on a
// loopback TCP port chosen before it started (another process could take
// it first, and the test restore then failed as "PostgreSQL stopped
// during recovery") with a trust rule for 127.0.0.1, so that any local
// user could connect to the copy of the data as any role while the test
// ran. It listens on its socket in the private scratch directory only;
// where that socket's path would be too long for a Unix socket, on
// 127.0.0.1 as before.
func TestRestoreTest_ConfigureSocketOnly(t *testing.T) {
	for _, c := range []struct {
		name    string
		scratch func(t *testing.T) string
		tcp     bool
	}{
		{"Socket", func(t *testing.T) string { return t.TempDir() }, false},
		{"LongPath", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), strings.Repeat("d", maxSocketPath))
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			scratch := c.scratch(t)
			data := filepath.Join(scratch, "data")
			if err := os.Mkdir(data, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, "postgresql.auto.conf"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			rt := &restoreTest{scratch: scratch, data: data}
			if err := rt.configure(); err != nil {
				t.Fatal(err)
			}
			conf, err := os.ReadFile(filepath.Join(data, "postgresql.auto.conf"))
			if err != nil {
				t.Fatal(err)
			}
			hba, err := os.ReadFile(filepath.Join(scratch, "pg_hba.conf"))
			if err != nil {
				t.Fatal(err)
			}
			listen, hostRule := "listen_addresses = ''", "host all all 127.0.0.1/32 trust"
			if c.tcp {
				listen = "listen_addresses = '127.0.0.1'"
			}
			if !strings.Contains(string(conf), listen+"\n") {
				t.Errorf("postgresql.auto.conf lacks %q:\n%s", listen, conf)
			}
			if got := strings.Contains(string(hba), hostRule); got != c.tcp {
				t.Errorf("pg_hba.conf has the TCP trust rule: %v, want %v:\n%s", got, c.tcp, hba)
			}
			cfg, err := rt.connConfig("o'b\\r", "d b")
			if err != nil {
				t.Fatal(err)
			}
			wantHost := scratch
			if c.tcp {
				wantHost = "127.0.0.1"
			}
			if cfg.Host != wantHost || cfg.Port != uint16(rt.port) || cfg.User != "o'b\\r" || cfg.Database != "d b" {
				t.Errorf("connConfig = host %q port %d user %q db %q; want host %q port %d", cfg.Host, cfg.Port, cfg.User, cfg.Database, wantHost, rt.port)
			}
		})
	}
}
