package daemon

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// spoolLockEnv names the spool a TestRun_SpoolLockChild process streams
// into.
const spoolLockEnv = "HOARD_TEST_SPOOL_LOCK_CHILD"

// unreachableConn is a server nobody listens at: the receiver keeps
// trying to connect, as a daemon started before PostgreSQL does.
func unreachableConn(t *testing.T) string {
	return "host=127.0.0.1 port=" + strconv.Itoa(testio.FreePort(t)) + " user=hoard dbname=postgres connect_timeout=2"
}

// lockSite is a streaming site with spool as its spool, storing into a
// local store in store.
func lockSite(spool, store, conn string) Site {
	arch := &archive.Archive{Store: storage.NewLocal(store), Codec: &archive.Codec{}, Site: "test"}
	return Site{
		Name: "test", Fingerprint: "1", Active: true,
		ActiveBackupMode: "pg_receivexlog", WAL: WALStream,
		ConnString: conn, Slot: "hoard_test", SpoolDir: spool,
		OpenArchive: func(context.Context) (*archive.Archive, func(), error) { return arch, func() {}, nil },
	}
}

// TestRun_SpoolLockChild is the other daemon of TestRun_SpoolLocked: a
// whole Run, in a process of its own, streaming into the spool it is
// given until it is killed.
func TestRun_SpoolLockChild(t *testing.T) {
	spool := os.Getenv(spoolLockEnv)
	if spool == "" {
		return
	}
	conn := os.Getenv(spoolLockEnv + "_CONN")
	o := Options{
		Sites:  []Site{lockSite(spool, filepath.Join(filepath.Dir(spool), "store"), conn)},
		Logger: zerolog.New(os.Stderr).Level(zerolog.DebugLevel),
	}
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// TestRun_SpoolLocked starts a daemon in another process, then a second
// one on the same spool (a second replica, a host daemon and a manual
// run, a systemd unit started twice under two names): the second must
// refuse to start, naming the first's pid, and touch nothing in the
// spool. Before the lock, the second ran its start-up clean-up in the
// first's spool, removing its temporary files, and both queued, uploaded
// and deleted the same segments.
func TestRun_SpoolLocked(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "xlog_incoming")
	conn := unreachableConn(t)
	// The first daemon's receiver has cleaned its spool and is trying
	// to connect.
	first := startFirstDaemon(t, "TestRun_SpoolLockChild", "connect", spoolLockEnv+"="+spool, spoolLockEnv+"_CONN="+conn)
	// A file of the first daemon's that a start-up clean-up removes.
	mine := filepath.Join(spool, "000000010000000000000001.tmp")
	if err := os.WriteFile(mine, []byte("the first daemon's"), 0o600); err != nil {
		t.Fatal(err)
	}
	first.checkSecondRefused(t, Options{
		Sites:     []Site{lockSite(spool, filepath.Join(dir, "store2"), conn)},
		StateFile: filepath.Join(dir, "state.json"),
	}, mine, ErrSpoolInUse, spool)
}

// firstDaemon is the first of two daemons in a lock test: a whole Run in
// a process of its own (a test of this package run as a child), as a
// second hoard daemon is to a user. flock(2) would refuse a second open
// of the lock file in this process too (the lock belongs to the open
// file, not the process), but a second process is what a user runs.
type firstDaemon struct {
	cmd    *exec.Cmd
	out    *testio.SyncBuffer
	exited chan error
}

// startFirstDaemon runs test, given env, in a child process, and waits
// until its log holds ready.
func startFirstDaemon(t *testing.T, test, ready string, env ...string) *firstDaemon {
	t.Helper()
	f := &firstDaemon{out: &testio.SyncBuffer{}, exited: make(chan error, 1)}
	f.cmd = exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	f.cmd.Env = append(os.Environ(), env...)
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	go func() { f.exited <- f.cmd.Wait(); close(gone) }()
	t.Cleanup(func() {
		_ = f.cmd.Process.Kill()
		<-gone
	})
	deadline := time.Now().Add(runTimeout)
	for !strings.Contains(f.out.String(), ready) {
		f.checkRunning(t)
		if time.Now().After(deadline) {
			t.Fatalf("first daemon never logged %q:\n%s", ready, f.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return f
}

// checkRunning fails t if the first daemon has exited.
func (f *firstDaemon) checkRunning(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.exited:
		t.Fatalf("first daemon exited: %v\n%s", err, f.out.String())
	default:
	}
}

// checkSecondRefused runs a second daemon with o beside the first: its
// Run must return want, naming the first's pid and lockPath, leave the
// first's file mine in place and the first running. Once the first is
// killed (no stop path: a crash leaves no stale lock), a Run with o must
// start and run until stopped.
func (f *firstDaemon) checkSecondRefused(t *testing.T, o Options, mine string, want error, lockPath string) {
	t.Helper()
	logs := &testio.SyncBuffer{}
	o.Logger = zerolog.New(logs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Run(ctx, o)
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("the second daemon removed the first's %s: %v", mine, err)
	}
	if err == nil {
		t.Fatalf("second daemon beside the first ran until stopped; its log:\n%s", logs.String())
	}
	if !errors.Is(err, want) {
		t.Errorf("Run: %v, want %v", err, want)
	}
	for _, name := range []string{"pid " + strconv.Itoa(f.cmd.Process.Pid), lockPath} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Run: %v, want it to name %q", err, name)
		}
	}
	f.checkRunning(t)

	// Once the first is gone (even killed), the lock is free.
	_ = f.cmd.Process.Kill()
	<-f.exited
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx2, o) }()
	select {
	case err := <-done:
		t.Fatalf("daemon after the first was killed: %v", err)
	case <-time.After(2 * time.Second):
	}
	cancel2()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
