package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrPrefetchStopped is wrapped by PrefetchWAL's error when the worker
// stopped because nobody will take what it fetches: the server it fetched
// for stopped, or its spool is no longer at its path (the data directory
// was removed, or restored anew there).
var ErrPrefetchStopped = errors.New("prefetch worker stopped")

// defaultPrefetchWatch is how often a prefetch worker looks at its spool
// and its server when PrefetchOptions.Watch is 0.
const defaultPrefetchWatch = time.Second

// watchSpool returns a context derived from ctx that is cancelled, with a
// cause wrapping ErrPrefetchStopped, once the spool s is no longer the
// directory at its path, or the server that ran in dataDir when the watch
// began has stopped (postmaster.pid gone, naming another process, or
// naming one that no longer runs). Without a postmaster.pid in dataDir
// (wal-fetch run by hand), or with no dataDir, only the spool is watched.
// A worker detached from restore_command outlives it: without this, after
// a shutdown it went on downloading into pg_wal, and after the data
// directory was removed it kept the deleted files open, until its round
// of downloads ended, or forever on storage that stalls. stop cancels the
// context and waits for the watch to end.
func watchSpool(ctx context.Context, s *spool, dataDir string, every time.Duration) (_ context.Context, stop func(), _ error) {
	fi, err := s.root.Stat(".")
	if err != nil {
		return nil, nil, fmt.Errorf("prefetch into %s: %w", s.dir, err)
	}
	var server string
	if dataDir != "" {
		server, _ = postmasterOf(dataDir)
	}
	if every <= 0 {
		every = defaultPrefetchWatch
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if now, err := os.Lstat(s.dir); err != nil || !os.SameFile(fi, now) {
				cancel(fmt.Errorf("%w: %s is no longer the spool it started in (the data directory was removed, or restored anew)", ErrPrefetchStopped, s.dir))
				return
			}
			if server == "" {
				continue
			}
			if now, err := postmasterOf(dataDir); err != nil || now != server {
				cancel(fmt.Errorf("%w: the server of %s stopped", ErrPrefetchStopped, dataDir))
				return
			}
		}
	})
	return ctx, func() { cancel(nil); wg.Wait() }, nil
}

// postmasterOf returns what identifies the server running in dataDir: the
// process id and start time in its postmaster.pid (its first and third
// lines). It returns an error when there is no postmaster.pid, it cannot
// be read, or the process it names does not run.
func postmasterOf(dataDir string) (string, error) {
	f, err := os.Open(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	f.Close()
	if err != nil {
		return "", err
	}
	lines := strings.SplitN(string(b), "\n", 4)
	if len(lines) < 3 {
		return "", fmt.Errorf("%s/postmaster.pid: %d lines", dataDir, len(lines))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return "", fmt.Errorf("%s/postmaster.pid: no process id", dataDir)
	}
	// EPERM: the process runs, under another user.
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return "", fmt.Errorf("%s/postmaster.pid: process %d: %w", dataDir, pid, err)
	}
	return lines[0] + "\n" + lines[2], nil
}
