package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
)

// pgChildSegSize is the segment size of the WAL these tests push and fetch.
const pgChildSegSize = 1 << 20

// invocation is one run of the binary as PostgreSQL would run it: args after
// the binary's name, and variables added to a minimal environment.
type invocation struct {
	name string
	args []string
	env  []string
}

// run runs the binary with inv's arguments and environment as the
// server's user, and returns its exit status and stderr.
func (inv invocation) run(t *testing.T, dir string) (int, string) {
	t.Helper()
	cmd := exec.Command(hoardBin, inv.args...)
	cmd.Env = append(minimalEnv(), inv.env...)
	cmd.Dir = dir
	pgtest.RunAs(cmd)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := exitCode(err)
	if code < 0 {
		t.Fatalf("hoard %s: %v", strings.Join(inv.args, " "), err)
	}
	return code, stderr.String()
}

// joinArgs joins lists of arguments into one.
func joinArgs(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// badInvocationConfigs writes configuration files a restore_command or
// archive_command line could name by mistake, in dir, and returns their
// paths by what is wrong with them.
func badInvocationConfigs(t *testing.T, s *site, dir string) map[string]string {
	t.Helper()
	paths := map[string]string{"Missing": filepath.Join(dir, "no-such-config.json"), "Directory": dir}
	write := func(name string, data []byte) {
		p := filepath.Join(dir, name+".json")
		s.writeFile(p, data)
		paths[name] = p
	}
	write("NotJSON", []byte("{\"backup_sites\": "))
	cfg, site := s.readConfig()
	site["object_storage"] = map[string]any{"storage_type": "floppy"}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	write("Invalid", data)
	cfg, site = s.readConfig()
	delete(site, "encryption_keys")
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	write("NoKeys", data)
	return paths
}

// TestWALFetch_BadInvocation runs the built binary as restore_command with
// every kind of mistake that stops it before it knows whether the file is
// archived: a bad value of a global flag (before the command, after it,
// after its arguments), of a HOARD_* variable, an unknown flag, a missing
// or unreadable or invalid configuration, an unknown site, a configuration
// without the site's keys, wrong arguments, and -h (libpq's host flag, a
// plausible slip) or --version with arguments. PostgreSQL reads exit 1 or 2
// (and 0 without the file) as "not archived" and ends recovery there,
// promoting early: each must exit 255, with a message, and write nothing at
// %p.
func TestWALFetch_BadInvocation(t *testing.T) {
	const seg, next = "000000010000000000000003", "000000010000000000000004"
	s := newSite(t, siteOptions{Encrypt: true})
	src := filepath.Join(s.dir, seg)
	s.writeFile(src, waltest.Segment(t, seg, pgChildSegSize, 1))
	s.mustHoard("wal-push", src)
	pgdata := s.dir
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, filepath.Dir(dest))
	configs := badInvocationConfigs(t, s, s.dir)
	cfg := []string{"--config", s.config}
	fetch := []string{"wal-fetch", seg, dest}
	cases := []invocation{
		{name: "ShortLogValue", args: joinArgs(cfg, []string{"--short-log=maybe"}, fetch)},
		{name: "ShortLogValueSeparate", args: joinArgs(cfg, []string{"--short-log", "maybe"}, fetch)},
		{name: "ShortLogValueAfterCommand", args: joinArgs(cfg, []string{"wal-fetch", "--short-log=maybe", seg, dest})},
		{name: "ShortLogValueAfterArgs", args: joinArgs(cfg, fetch, []string{"--short-log=maybe"})},
		{name: "LogLevel", args: joinArgs(cfg, []string{"--log-level=loud"}, fetch)},
		{name: "LogLevelAfterArgs", args: joinArgs(cfg, fetch, []string{"--log-level", "loud"})},
		{name: "LogFormat", args: joinArgs(cfg, []string{"--log-format=xml"}, fetch)},
		{name: "EnvShortLog", args: joinArgs(cfg, fetch), env: []string{"HOARD_SHORT_LOG=maybe"}},
		{name: "EnvLogLevel", args: joinArgs(cfg, fetch), env: []string{"HOARD_LOG_LEVEL=loud"}},
		{name: "EnvLogFormat", args: joinArgs(cfg, fetch), env: []string{"HOARD_LOG_FORMAT=xml"}},
		{name: "EnvCompressionLevel", args: joinArgs(cfg, fetch), env: []string{"HOARD_COMPRESSION_LEVEL=high"}},
		{name: "EnvStorageType", args: joinArgs(cfg, fetch), env: []string{"HOARD_STORAGE_TYPE=floppy"}},
		{name: "EnvSite", args: joinArgs(cfg, fetch), env: []string{"HOARD_SITE=nope"}},
		{name: "EnvConfigMissing", args: fetch, env: []string{"HOARD_CONFIG=" + configs["Missing"]}},
		{name: "UnknownFlag", args: joinArgs(cfg, []string{"--bogus"}, fetch)},
		{name: "UnknownFlagAfterArgs", args: joinArgs(cfg, fetch, []string{"--bogus"})},
		{name: "FlagWithoutValue", args: joinArgs(cfg, fetch, []string{"--site"})},
		{name: "NoConfig", args: fetch},
		{name: "ConfigMissing", args: joinArgs([]string{"--config", configs["Missing"]}, fetch)},
		{name: "ConfigDirectory", args: joinArgs([]string{"--config", configs["Directory"]}, fetch)},
		{name: "ConfigNotJSON", args: joinArgs([]string{"--config", configs["NotJSON"]}, fetch)},
		{name: "ConfigInvalid", args: joinArgs([]string{"--config", configs["Invalid"]}, fetch)},
		{name: "ConfigNoKeys", args: joinArgs([]string{"--config", configs["NoKeys"]}, fetch)},
		{name: "UnknownSite", args: joinArgs(cfg, []string{"--site", "nope"}, fetch)},
		{name: "OneArg", args: joinArgs(cfg, []string{"wal-fetch", seg})},
		{name: "ThreeArgs", args: joinArgs(cfg, fetch, []string{"extra"})},
		{name: "BadName", args: joinArgs(cfg, []string{"wal-fetch", "pg_control", dest})},
		{name: "ArchivedThrough", args: joinArgs(cfg, []string{"wal-fetch", "--archived-through=yesterday", "--wal-segment-size=16777216", seg, dest})},
		{name: "ArchivedThroughNoSegmentSize", args: joinArgs(cfg, []string{"wal-fetch", "--archived-through", seg, seg, dest})},
		{name: "SegmentSize", args: joinArgs(cfg, []string{"wal-fetch", "--archived-through", seg, "--wal-segment-size=3", seg, dest})},
		{name: "HostFlag", args: joinArgs(cfg, []string{"wal-fetch", "-h", "localhost", seg, dest})},
		{name: "HelpAfterArgs", args: joinArgs(cfg, fetch, []string{"--help"})},
		{name: "Version", args: joinArgs(cfg, []string{"--version"}, fetch)},
	}
	for _, inv := range cases {
		t.Run(inv.name, func(t *testing.T) {
			os.Remove(dest)
			code, stderr := inv.run(t, pgdata)
			if code != 255 {
				t.Errorf("hoard %s: exit %d, want 255 (PostgreSQL stops recovery)\n%s", strings.Join(inv.args, " "), code, stderr)
			}
			if strings.TrimSpace(stderr) == "" {
				t.Errorf("hoard %s: exit %d with nothing on stderr: the cause must be said", strings.Join(inv.args, " "), code)
			}
			if _, err := os.Lstat(dest); err == nil {
				t.Errorf("hoard %s: exit %d, and %s exists", strings.Join(inv.args, " "), code, dest)
			}
		})
	}
	// The same site and file, asked right: the file is there, and the next
	// one is not archived (1). So what failed above was the invocation.
	t.Run("OK", func(t *testing.T) {
		os.Remove(dest)
		if code, stderr := (invocation{args: joinArgs(cfg, fetch)}).run(t, pgdata); code != 0 {
			t.Fatalf("wal-fetch: exit %d\n%s", code, stderr)
		}
		if got := readFile(t, dest); !bytes.Equal(got, readFile(t, src)) {
			t.Errorf("wal-fetch delivered %d bytes that differ from the segment pushed", len(got))
		}
		os.Remove(dest)
		if code, stderr := (invocation{args: joinArgs(cfg, []string{"wal-fetch", next, dest})}).run(t, pgdata); code != 1 {
			t.Errorf("wal-fetch of a file not archived: exit %d, want 1\n%s", code, stderr)
		}
	})
}

// TestWALPush_BadInvocation runs the built binary as archive_command with
// the mistakes TestWALFetch_BadInvocation makes, and a PATH whose name is
// no WAL file's: each must exit 2, bad invocation, as wal-push's help says
// (PostgreSQL keeps the file and retries any status but 0; the operator
// reading its log tells a mistake in archive_command from a failed
// upload, exit 1), and store nothing. -h or --version with a PATH printed
// help and exited 0, which PostgreSQL reads as "archived" and then
// recycles the segment; a name that is no WAL file's exited 1.
func TestWALPush_BadInvocation(t *testing.T) {
	const seg = "000000010000000000000005"
	s := newSite(t, siteOptions{Encrypt: true})
	path := filepath.Join("pg_wal", seg)
	if err := os.MkdirAll(filepath.Join(s.dir, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, filepath.Join(s.dir, "pg_wal"))
	// The version recorded is the site's: no connection to a server.
	s.setSiteKey("pg_version", 150000)
	s.writeFile(filepath.Join(s.dir, path), waltest.Segment(t, seg, pgChildSegSize, 2))
	// A segment's bytes under a name PostgreSQL never archives.
	notWAL := filepath.Join("pg_wal", seg+".old")
	s.writeFile(filepath.Join(s.dir, notWAL), waltest.Segment(t, seg, pgChildSegSize, 2))
	stored := filepath.Join(s.storeDir, s.name, "xlog", seg)
	configs := badInvocationConfigs(t, s, t.TempDir())
	cfg := []string{"--config", s.config}
	push := []string{"wal-push", path}
	cases := []invocation{
		{name: "ShortLogValue", args: joinArgs(cfg, []string{"--short-log=maybe"}, push)},
		{name: "ShortLogValueAfterArgs", args: joinArgs(cfg, push, []string{"--short-log=maybe"})},
		{name: "LogLevel", args: joinArgs(cfg, []string{"--log-level=loud"}, push)},
		{name: "EnvLogLevel", args: joinArgs(cfg, push), env: []string{"HOARD_LOG_LEVEL=loud"}},
		{name: "EnvShortLog", args: joinArgs(cfg, push), env: []string{"HOARD_SHORT_LOG=maybe"}},
		{name: "EnvSite", args: joinArgs(cfg, push), env: []string{"HOARD_SITE=nope"}},
		{name: "UnknownFlag", args: joinArgs(cfg, push, []string{"--bogus"})},
		{name: "NoConfig", args: push},
		{name: "ConfigMissing", args: joinArgs([]string{"--config", configs["Missing"]}, push)},
		{name: "ConfigDirectory", args: joinArgs([]string{"--config", configs["Directory"]}, push)},
		{name: "ConfigNotJSON", args: joinArgs([]string{"--config", configs["NotJSON"]}, push)},
		{name: "ConfigInvalid", args: joinArgs([]string{"--config", configs["Invalid"]}, push)},
		{name: "UnknownSite", args: joinArgs(cfg, []string{"--site", "nope"}, push)},
		{name: "NoPath", args: joinArgs(cfg, []string{"wal-push"})},
		{name: "TwoPaths", args: joinArgs(cfg, push, []string{path})},
		{name: "NotWALName", args: joinArgs(cfg, []string{"wal-push", notWAL})},
		{name: "HostFlag", args: joinArgs(cfg, []string{"wal-push", "-h", "localhost", path})},
		{name: "HelpAfterPath", args: joinArgs(cfg, push, []string{"--help"})},
		{name: "Version", args: joinArgs(cfg, []string{"--version"}, push)},
	}
	for _, inv := range cases {
		t.Run(inv.name, func(t *testing.T) {
			code, stderr := inv.run(t, s.dir)
			if code != 2 {
				t.Errorf("hoard %s: exit %d, want 2 (bad invocation; 0 reads as archived, 1 as a failed upload)\n%s", strings.Join(inv.args, " "), code, stderr)
			} else if strings.TrimSpace(stderr) == "" {
				t.Errorf("hoard %s: exit %d with nothing on stderr: the cause must be said", strings.Join(inv.args, " "), code)
			}
			if _, err := os.Lstat(stored); err == nil {
				t.Fatalf("hoard %s: exit %d, and %s is stored", strings.Join(inv.args, " "), code, seg)
			}
		})
	}
	// A file that is gone is no mistake in the command line (a disk, or
	// another process, failed): exit 1, and the message names it.
	t.Run("MissingFile", func(t *testing.T) {
		missing := filepath.Join("pg_wal", "000000010000000000000006")
		code, stderr := (invocation{args: joinArgs(cfg, []string{"wal-push", missing})}).run(t, s.dir)
		if code != 1 || !strings.Contains(stderr, "000000010000000000000006") {
			t.Errorf("wal-push of a missing file: exit %d, want 1 with its name\n%s", code, stderr)
		}
	})
	t.Run("OK", func(t *testing.T) {
		if code, stderr := (invocation{args: joinArgs(cfg, push)}).run(t, s.dir); code != 0 {
			t.Fatalf("wal-push: exit %d\n%s", code, stderr)
		}
		if _, err := os.Lstat(stored); err != nil {
			t.Errorf("wal-push exited 0 but %s is not stored: %v", seg, err)
		}
	})
}

// TestWALFetch_Signals sends SIGQUIT, SIGTERM, SIGINT and SIGABRT to the
// process group of a wal-fetch, as PostgreSQL's postmaster does to the
// startup process's at a shutdown, just as wal-fetch starts its prefetch
// worker, again and again. Go's first process start probes pidfd support
// with a CLONE_VFORK child that runs with signals unblocked: a SIGQUIT
// there took the runtime's crash path in the child, which could deadlock
// (paniclk) and outlive its parent forever, holding pg_wal's files open,
// and a SIGQUIT or SIGABRT anywhere made wal-fetch exit 2, which
// PostgreSQL (whose system() ignores SIGQUIT) reads as "not archived".
// Each run must exit promptly as killed by its signal (128+signal, or the
// signal itself: PostgreSQL stops recovery, or shuts down for SIGTERM), or
// 0 with the file in place when it finished first, leave no process in
// its group, and leave at %p nothing or the whole segment.
func TestWALFetch_Signals(t *testing.T) {
	const seg = "000000010000000000000003"
	s := newSite(t, siteOptions{})
	s.setSiteKey("pg_version", 150000)
	src := filepath.Join(s.dir, seg)
	s.writeFile(src, waltest.Segment(t, seg, pgChildSegSize, 1))
	s.mustHoard("wal-push", src)
	want := readFile(t, src)
	walDir := filepath.Join(s.dir, "pg_wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, walDir)
	dest := filepath.Join(walDir, "RECOVERYXLOG")
	spool := filepath.Join(walDir, "hoard-prefetch")
	workerLog := filepath.Join(spool, "worker.log")

	signals := []syscall.Signal{syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT, syscall.SIGABRT}
	const rounds = 25
	signalled := 0
	for i := range rounds * len(signals) {
		sig := signals[i%len(signals)]
		waitWorkerGone(t, spool)
		os.Remove(dest)
		os.Remove(workerLog)
		cmd := s.command("wal-fetch", seg, dest)
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Setpgid = true
		var stderr testio.SyncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pgid := cmd.Process.Pid
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// The worker's log is created just before the worker is started:
		// signal then, a little later each round, in a burst.
		var err error
		exited := false
		for !exited {
			if _, serr := os.Stat(workerLog); serr == nil {
				break
			}
			select {
			case err = <-done:
				exited = true
			default:
			}
		}
		if !exited {
			spinFor(time.Duration(i%5) * 40 * time.Microsecond)
			for range 3 {
				_ = syscall.Kill(-pgid, sig)
				spinFor(20 * time.Microsecond)
			}
			signalled++
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-done
				t.Fatalf("round %d: wal-fetch did not exit within a minute of %v\n%s", i, sig, stderr.String())
			}
		}
		var status syscall.WaitStatus
		if ee, ok := err.(*exec.ExitError); ok {
			status = ee.Sys().(syscall.WaitStatus)
		} else if err != nil {
			t.Fatal(err)
		}
		switch {
		case err == nil:
			// Done before the signal came (or too late to be seen): the
			// file must be in place, which PostgreSQL checks.
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("round %d: wal-fetch exited 0 after %v: %v", i, sig, err)
			}
		case status.Signaled() && status.Signal() == sig, status.Exited() && status.ExitStatus() == 128+int(sig):
		default:
			t.Errorf("round %d: wal-fetch after %v: %v, want killed by it or exit %d\n%s", i, sig, err, 128+int(sig), stderr.String())
		}
		waitGroupGone(t, pgid, i)
		if got, err := os.ReadFile(dest); err == nil && !bytes.Equal(got, want) {
			t.Errorf("round %d: %s holds %d bytes that are not the segment", i, dest, len(got))
		}
	}
	t.Logf("%d of %d runs signalled while starting the prefetch worker", signalled, rounds*len(signals))
	if signalled < rounds {
		t.Errorf("only %d runs were signalled: the test did not test", signalled)
	}
	waitWorkerGone(t, spool)
}

// spinFor busy-waits for d: a sleep would be far too coarse to land a
// signal around a process start.
func spinFor(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}

// waitGroupGone waits until no process is left in process group pgid,
// and fails the test, killing them, if one is left after a minute.
func waitGroupGone(t *testing.T, pgid, round int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			out, _ := exec.Command("ps", "-eo", "pid,ppid,pgid,stat,nlwp,wchan:24,args").CombinedOutput()
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			t.Fatalf("round %d: a process of wal-fetch's group %d is left a minute after it exited:\n%s", round, pgid, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitWorkerGone waits until no prefetch worker holds the spool's lock.
func waitWorkerGone(t *testing.T, spool string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if !spoolLocked(spool) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a prefetch worker still holds %s a minute later", spool)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flockBusy reports whether another process holds an exclusive flock on
// f: taking it without waiting fails.
func flockBusy(f *os.File) bool {
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
