package archive

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Asker is the process that asked wal-fetch for a file (PostgreSQL's
// startup process running restore_command), as wal-fetch found it as it
// started: each process from wal-fetch's parent up to the server's
// postmaster, by process id, start time and parent. A file is put in place
// only while every link still holds (Check).
//
// restore_command runs under sh -c, which may stay between the startup
// process and wal-fetch (Debian's dash does not exec the last command),
// and under any wrapper the operator put there (timeout(1) in a process
// group of its own, which the postmaster's signals do not reach). Killed
// with -9, the startup process leaves sh waiting for wal-fetch: the
// parent alone does not tell that nobody asks any more. The postmaster
// ends the chain: pg_ctl, above it, exits during a long recovery.
type Asker struct {
	parent int        // os.Getppid()
	chain  []procLink // from the parent up to the postmaster; nil: not known
}

// procLink is a process as /proc/PID/stat shows it.
type procLink struct {
	pid, ppid int    // ppid 0: not compared
	start     string // starttime, in clock ticks since boot
}

// NewAsker returns the Asker of this process, run by the server of
// dataDir. Where the chain up to the postmaster named by dataDir's
// postmaster.pid cannot be followed (run by hand, no /proc), it is the
// parent alone (os.Getppid): an orphan is reparented to init or a
// subreaper (getppid(2)).
func NewAsker(dataDir string) *Asker {
	ppid := os.Getppid()
	a := &Asker{parent: ppid}
	top := postmasterPID(dataDir)
	if top == 0 {
		return a
	}
	var chain []procLink
	for pid := ppid; len(chain) < 32; {
		l, err := readProcLink(pid)
		if err != nil {
			return a
		}
		if pid == top {
			// Its own parent is not kept: pg_ctl, which started it,
			// exits during a long recovery.
			l.ppid = 0
			a.chain = append(chain, l)
			return a
		}
		chain = append(chain, l)
		if l.ppid <= 1 {
			return a
		}
		pid = l.ppid
	}
	return a
}

// Check returns an error where a process of the chain is gone or has
// another parent: the server that asked for the file has exited, or its
// startup process, and a server started again may run a new wal-fetch
// into the same file (checkPlace).
func (a *Asker) Check() error {
	if os.Getppid() != a.parent {
		return fmt.Errorf("the process that ran wal-fetch (pid %d) has exited", a.parent)
	}
	for _, l := range a.chain {
		now, err := readProcLink(l.pid)
		if l.ppid == 0 {
			now.ppid = 0 // the postmaster's parent: not compared
		}
		if err != nil || now != l {
			return fmt.Errorf("process %d, between the server and wal-fetch, has exited, or its parent (pid %d) has", l.pid, l.ppid)
		}
	}
	return nil
}

// readProcLink reads the parent and start time of pid from
// /proc/PID/stat: the fields after the command name, which is in
// parentheses and may hold any byte, so read from its last ')'.
func readProcLink(pid int) (procLink, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procLink{}, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime priority nice num_threads
	// itrealvalue starttime (proc(5), fields 3 to 22)
	if len(f) < 20 {
		return procLink{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procLink{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return procLink{pid: pid, ppid: ppid, start: f[19]}, nil
}

// postmasterPID returns the process id on the first line of dataDir's
// postmaster.pid, 0 where there is none: a postmaster's, or, negated, a
// single-user server's (CreateLockFile in miscinit.c), which runs
// restore_command itself.
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	if pid < 0 {
		pid = -pid
	}
	return pid
}
