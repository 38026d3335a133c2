package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Kill simulates a crash of the machine: SIGKILL to the postmaster and
// every process it started, and theirs. PostgreSQL's children run in
// sessions of their own (InitPostmasterChild calls setsid), so the
// postmaster's process group holds none of them; left alive, a backend
// busy in a query notices the postmaster's death only when the query
// ends, still attached to the shared memory (a Start then fails: "pre-
// existing shared memory block ... is still in use"), and may commit
// after the "crash". Kill stops the postmaster first (SIGSTOP: a stopped
// process forks nothing), then each child it finds under a stopped
// parent, so no process of the tree is missed, kills them all, and waits
// until they are all gone, so Start can follow at once.
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	pid, err := c.postmasterPID()
	if err != nil {
		t.Fatalf("pgtest: kill: %v", err)
	}
	tree := stopTree(t, pid)
	for _, p := range tree {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("pgtest: kill process %d of postmaster %d: %v", p, pid, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range tree {
		for processAlive(p) {
			if time.Now().After(deadline) {
				t.Fatalf("pgtest: process %d of postmaster %d still alive 30s after SIGKILL", p, pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	// The postmaster's parent, pg_ctl, is long gone, so the dead postmaster
	// waits as a zombie until init reaps it. A zombie still answers
	// kill(pid, 0), and a new postmaster would take the stale
	// postmaster.pid for a live server. Give init a moment; if it does not
	// reap, drop the lock file, as a reboot after a crash would find no
	// such process.
	for _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil; _, err = os.Stat(filepath.Join("/proc", strconv.Itoa(pid))) {
		if time.Now().After(deadline) {
			if err := os.Remove(filepath.Join(c.DataDir, "postmaster.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("pgtest: remove stale postmaster.pid: %v", err)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopTree stops (SIGSTOP) the process pid and every live process below
// it, each parent before its children are listed (so none forks one
// unseen), and returns their pids, pid first. A process that exits
// meanwhile is left out.
func stopTree(t testing.TB, pid int) []int {
	t.Helper()
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		p := tree[i]
		if err := syscall.Kill(p, syscall.SIGSTOP); errors.Is(err, syscall.ESRCH) {
			continue
		} else if err != nil {
			t.Fatalf("pgtest: stop process %d: %v", p, err)
		}
		// kill returns before the process stops: wait until it has, or
		// it may still fork.
		deadline := time.Now().Add(10 * time.Second)
		for {
			state, _, ok := procStat(p)
			if !ok || state == "T" || state == "t" || state == "Z" || state == "X" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pgtest: process %d not stopped 10s after SIGSTOP (state %s)", p, state)
			}
			time.Sleep(time.Millisecond)
		}
		tree = append(tree, children(p)...)
	}
	return tree
}

// children returns the live processes whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid, ok := procStat(p); ok && ppid == pid && state != "Z" && state != "X" {
			kids = append(kids, p)
		}
	}
	return kids
}

// postmasterPID reads the postmaster's pid from the first line of
// postmaster.pid.
func (c *Cluster) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("read postmaster.pid: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("parse postmaster.pid: %w", err)
	}
	return pid, nil
}

// processAlive reports whether pid is a live process. A zombie counts as
// dead: in a container nobody may reap the orphaned postmaster.
func processAlive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

// procStat returns the state and parent of pid from /proc/<pid>/stat
// ("pid (comm) state ppid ...").
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return "", 0, false
	}
	return f[0], ppid, true
}
