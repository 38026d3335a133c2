package walstream

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// diskGuard decides when receiving pauses because the spool's filesystem
// is nearly full. Below min free bytes it pauses; it resumes only at
// resume bytes or more (min*1.5 when resume is 0), so that a spool
// hovering around the limit does not flap.
type diskGuard struct {
	min    uint64
	resume uint64
	free   func() (uint64, error)
	paused bool
	// loggedPause is when a pause was last logged loudly, and quiet is
	// set while the current pause and its resume are logged at debug
	// level only (see loud).
	loggedPause time.Time
	quiet       bool
}

// guardLogEvery bounds how often the guard's pause and resume are logged
// at warn and info level. While a backlog drains, a spool hovering at the
// limit pauses and resumes every segment or two; the first pause in a
// window is logged with its resume, later ones at debug level. The
// receiver's status and the paused gauge show every change.
const guardLogEvery = time.Minute

// loud reports whether the change just returned by check (paused now, or
// resumed) is to be logged at warn or info level at now.
func (g *diskGuard) loud(paused bool, now time.Time) bool {
	if !paused {
		return !g.quiet
	}
	g.quiet = !g.loggedPause.IsZero() && now.Sub(g.loggedPause) < guardLogEvery
	if !g.quiet {
		g.loggedPause = now
	}
	return !g.quiet
}

// check asks for the free space and returns whether receiving should be
// paused now and whether that changed with this call. need is space about
// to be taken (a new segment file), counted as already gone. When the
// free space cannot be read, the state stays as it was and the error is
// returned.
func (g *diskGuard) check(need uint64) (paused, changed bool, err error) {
	if g.min == 0 {
		return false, false, nil
	}
	free, err := g.free()
	if err != nil {
		return g.paused, false, err
	}
	free -= min(free, need)
	switch {
	case !g.paused && free < g.min:
		g.paused = true
		return true, true, nil
	case g.paused && free >= g.resumeAt():
		g.paused = false
		return false, true, nil
	}
	return g.paused, false, nil
}

// resumeAt returns the free bytes at which receiving resumes.
func (g *diskGuard) resumeAt() uint64 {
	if g.resume == 0 {
		return g.min + g.min/2
	}
	return max(g.resume, g.min)
}

// freeBytes returns the bytes available to an unprivileged user on the
// filesystem holding dir.
func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}
