package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// orphanChildEnv names the destination TestFetchWAL_OrphanChild fetches
// segName(1) to.
const orphanChildEnv = "HOARD_TEST_ORPHAN_DEST"

// TestFetchWAL_OrphanChild is the child of TestFetchWAL_Orphan: a
// wal-fetch of segName(1), as restore_command runs it (its Asker
// recorded as it starts), whose storage stalls until its standard input
// closes. It prints its pid first, then FetchWAL's error. Without
// orphanChildEnv it does nothing.
func TestFetchWAL_OrphanChild(t *testing.T) {
	dest := os.Getenv(orphanChildEnv)
	if dest == "" {
		t.Skip("the child of TestFetchWAL_Orphan")
	}
	fmt.Printf("pid %d\n", os.Getpid())
	o := FetchOptions{Asker: NewAsker(filepath.Dir(filepath.Dir(dest)))}
	a := walTestArchive(t, false)
	pushSegments(t, a, 1, 1)
	a.Store = stdinStallStore{a.Store}
	fmt.Printf("fetch: %v\n", a.FetchWAL(context.Background(), segName(1), dest, o))
}

// TestFetchWAL_Orphan: a wal-fetch whose asker died during its download
// (the startup process killed -9, or stopped with -m immediate, while a
// wrapper or the shell waits) runs on as an orphan. The server started
// again runs a new wal-fetch into the same pg_wal/RECOVERYXLOG. The
// orphan, finishing later, renamed its segment over the new one's file:
// PostgreSQL, reading it as the segment it asked for, finds a wrong page
// address, takes it as the end of the archive and may promote there. The
// orphan must not put its file in place.
func TestFetchWAL_Orphan(t *testing.T) {
	// The sh commands wait for their child (no exec: a command follows).
	const child = `"$0" -test.run=^TestFetchWAL_OrphanChild$ -test.count=1; exit 0`
	t.Run("ErrParentGone", func(t *testing.T) {
		testOrphanFetch(t, child, false)
	})
	t.Run("ErrStartupGone", func(t *testing.T) {
		testOrphanFetch(t, `sh -c '`+child+`' "$0"; exit 0`, true)
	})
}

// testOrphanFetch runs TestFetchWAL_OrphanChild under sh -c script (with
// the test binary as $0), with a postmaster.pid naming this process or
// none, kills sh once the child's download stalls, fetches another
// segment into the same path, then lets the orphan finish: the path must
// hold the live fetch's segment.
func testOrphanFetch(t *testing.T, script string, postmaster bool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pg_wal")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "RECOVERYXLOG")
	if postmaster {
		// This process stands for the postmaster.
		pid := []byte(strconv.Itoa(os.Getpid()) + "\n/data\n1700000000\n")
		if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "postmaster.pid"), pid, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sh := exec.Command("sh", "-c", script, os.Args[0])
	sh.Env = append(os.Environ(), orphanChildEnv+"="+dest)
	// Pipes of this process's own: sh's Wait must not close them.
	inR, stdin, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	sh.Stdin, sh.Stdout, sh.Stderr = inR, outW, outW
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(outR)
		out <- string(b)
	}()
	// The orphan, once it is one, is not this process's child: its pid,
	// its first line, is how the cleanup kills it should the test fail.
	var child int
	t.Cleanup(func() {
		stdin.Close()
		if child > 0 {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
		_ = sh.Process.Kill()
		_ = sh.Wait()
	})
	var tmp string
	for deadline := time.Now().Add(30 * time.Second); tmp == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		names, _ := filepath.Glob(filepath.Join(dir, fetchTempPrefix+"*"))
		for _, name := range names {
			if fi, err := os.Stat(name); err == nil && fi.Size() >= testSegSize/2 {
				tmp = name
			}
		}
	}
	if tmp == "" {
		t.Fatal("the child's download wrote no temporary file of half a segment in 30 s")
	}
	if err := sh.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = sh.Wait()

	// The server started again asks for another segment (its recovery
	// restarts from its last restartpoint), into the same path.
	a := walTestArchive(t, false)
	segs := pushSegments(t, a, 1, 2)
	if err := a.FetchWAL(context.Background(), segName(2), dest, FetchOptions{Asker: NewAsker(filepath.Dir(dir))}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dest, segs[segName(2)])

	// The orphan's download resumes and ends.
	if err := stdin.Close(); err != nil {
		t.Fatal(err)
	}
	var got string
	select {
	case got = <-out:
	case <-time.After(60 * time.Second):
		t.Fatal("the orphan did not exit within 60 s of its download's resumption")
	}
	if first, _, ok := strings.Cut(got, "\n"); ok {
		child, _ = strconv.Atoi(strings.TrimPrefix(first, "pid "))
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, segs[segName(2)]) {
		what := "other bytes"
		if bytes.Equal(b, segs[segName(1)]) {
			what = segName(1) + ", the orphan's segment"
		}
		t.Fatalf("%s holds %s, not %s, which the live wal-fetch put there\n%s", dest, what, segName(2), got)
	}
	if !strings.Contains(got, "fetch: fetch "+segName(1)) || !strings.Contains(got, "has exited") {
		t.Errorf("the orphan's FetchWAL did not fail saying its parent has exited:\n%s", got)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, fetchTempPrefix+"*")); len(names) > 0 {
		t.Errorf("temporary files left: %v", names)
	}
}

// TestAsker_Check: the chain of a live asker holds, whatever the
// postmaster's own parent becomes (pg_ctl exits during a long recovery);
// a process of the chain with another start time (its pid reused) does
// not.
func TestAsker_Check(t *testing.T) {
	dataDir := t.TempDir()
	// This process's parent stands for the postmaster: the chain is it
	// alone.
	pid := []byte(strconv.Itoa(os.Getppid()) + "\n" + dataDir + "\n1700000000\n")
	if err := os.WriteFile(filepath.Join(dataDir, "postmaster.pid"), pid, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		a := NewAsker(dataDir)
		if got, want := len(a.chain), 1; got != want {
			t.Fatalf("chain of %d processes, want %d (the postmaster, this process's parent)", got, want)
		}
		if err := a.Check(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OKPostmasterReparented", func(t *testing.T) {
		a := NewAsker(dataDir)
		if got := a.chain[0].ppid; got != 0 {
			t.Fatalf("the postmaster's parent, %d, is compared: pg_ctl's exit would stop recovery", got)
		}
	})
	t.Run("ErrReused", func(t *testing.T) {
		a := NewAsker(dataDir)
		a.chain[0].start += "0"
		if err := a.Check(); err == nil || !strings.Contains(err.Error(), "has exited") {
			t.Fatalf("a process of the chain with another start time: %v, want its exit", err)
		}
	})
}
