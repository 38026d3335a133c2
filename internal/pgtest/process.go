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

// Kill simulates a crash: SIGKILL to the postmaster and every process of
// its process group (pg_ctl starts the postmaster in a session of its own,
// so the group is the server's backends and auxiliary processes). Kill
// waits until they are all gone, so Start can follow at once.
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	pid, err := c.postmasterPID()
	if err != nil {
		t.Fatalf("pgtest: kill: %v", err)
	}
	target := pid
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		target = -pid
	}
	if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pgtest: kill postmaster %d: %v", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for groupAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: processes of postmaster %d still alive 30s after SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
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

// groupAlive reports whether any live process belongs to process group
// pgid, or is pgid itself.
func groupAlive(pgid int) bool {
	if processAlive(pgid) {
		return true
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, group, ok := procStat(pid)
		if ok && group == pgid && state != "Z" && state != "X" {
			return true
		}
	}
	return false
}

// procStat returns the state and process group of pid from
// /proc/<pid>/stat ("pid (comm) state ppid pgrp ...").
func procStat(pid int) (state string, pgrp int, ok bool) {
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
	if len(f) < 3 {
		return "", 0, false
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return "", 0, false
	}
	return f[0], pgrp, true
}
