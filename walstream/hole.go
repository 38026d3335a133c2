package walstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hoardbackup/hoard/wal"
)

// ArchiveLister tells the Receiver what the archive holds, for the hole
// check at resume. The daemon lists the site's archive.
type ArchiveLister interface {
	// ArchivedSegments returns the names of the complete WAL segments in
	// the archive, in any order.
	ArchivedSegments(ctx context.Context) ([]string, error)
	// ForeignSegment reports whether the archived complete segment
	// name is not database system system's: its first page names
	// another system, or it is no longer stored. A first page that
	// cannot be read for want of a private key (a daemon holding only
	// the public key) may be the system's: false. A read that fails
	// otherwise, after retries, is an error naming the segment, as is
	// ctx's end.
	ForeignSegment(ctx context.Context, name string, system uint64) (bool, error)
}

// Hole is a run of consecutive WAL segments that a hole check found
// neither in the archive nor in the spool, before where streaming
// resumed: WAL that no restore can replay. It is named on the timeline
// streaming resumed on.
type Hole = wal.Run

// UndecidedCheck is a hole check that could not decide whether WAL
// before where streaming resumed is missing: the first page of Unread,
// an archived candidate for the newest segment of the streamed system's
// before Segment, could not be read (Error, naming its key).
type UndecidedCheck struct {
	Segment string    // where streaming resumed
	Unread  string    // the archived segment that could not be read
	Error   string    // why, naming its key
	At      time.Time // when the check ended
}

// holeCheck is what a resume hands to the hole check: where streaming
// resumed, and the complete segments the spool held then (they will be
// archived).
type holeCheck struct {
	start   wal.Segment
	segSize uint64
	spooled []string
	// system is the streamed server's system identifier
	// (IDENTIFY_SYSTEM); 0: not known, every segment counts.
	system uint64
}

// requestHoleCheck hands c to the hole check goroutine, replacing a check
// it has not started.
func (r *Receiver) requestHoleCheck(c holeCheck) {
	if r.opts.Archived == nil {
		return
	}
	select {
	case <-r.holeChecks:
	default:
	}
	r.holeChecks <- c
}

// holeLoop runs the hole checks resumes request until stop is closed. The
// archive listing retries with backoff while the storage fails; a newer
// request replaces the one waiting. The receive loop never waits for it.
func (r *Receiver) holeLoop(ctx context.Context, stop <-chan struct{}) {
	for {
		var c holeCheck
		select {
		case <-stop:
			return
		case c = <-r.holeChecks:
		}
		delay := r.retryMin
		for {
			names, err := r.opts.Archived.ArchivedSegments(ctx)
			if err == nil {
				var h Hole
				h, err = findHole(ctx, c, names, r.opts.Archived.ForeignSegment)
				if ue, ok := errors.AsType[*undecidedError](err); ok && ctx.Err() == nil {
					r.reportUndecided(c, ue)
					break
				}
				if err == nil {
					r.reportHole(c, h)
					break
				}
			}
			if ctx.Err() != nil {
				return
			}
			r.log.Warn().Err(err).Int64("retry_in_ms", delay.Round(time.Millisecond).Milliseconds()).Msg("listing the archive for the hole check failed; retrying")
			select {
			case <-stop:
				return
			case newer := <-r.holeChecks:
				c = newer
			case <-time.After(delay):
			}
			delay = min(2*delay, r.retryMax)
		}
	}
}

// findHole returns the segments missing just before c.start: from the
// newest segment before it that the archive or the spool holds (on its
// timeline or an earlier one) and that may be c.system's to c.start.
// With no such segment (a new archive) there is nothing to be continuous
// with, and no hole. An archived segment whose first page names another
// database system (foreign: the old cluster's WAL after a pg_upgrade into
// the same site) is passed over: the streamed system never had it. The
// spool's segments are c.system's (it never mixes two systems). A
// segment whose first page cannot be read (foreign's error) is no
// answer: counted as the system's it could report a false hole below it
// or, counted as another's, hide one; unless another name of the same
// segment number is the system's, the check cannot decide, and the
// error is an *undecidedError naming it. Otherwise the error is ctx's
// end.
func findHole(ctx context.Context, c holeCheck, archived []string, foreign func(ctx context.Context, name string, system uint64) (bool, error)) (Hole, error) {
	// Candidates by segment number: the archived names holding it, or
	// nil when the spool does (no read needed).
	byNo := map[uint64][]string{}
	spooled := map[uint64]bool{}
	for i, names := range [][]string{archived, c.spooled} {
		for _, name := range names {
			seg, err := wal.ParseSegmentName(name, c.segSize)
			if err != nil || seg.Timeline > c.start.Timeline || seg.No >= c.start.No {
				continue
			}
			if i == 1 {
				spooled[seg.No] = true
			}
			byNo[seg.No] = append(byNo[seg.No], name)
		}
	}
	nos := make([]uint64, 0, len(byNo))
	for no := range byNo {
		nos = append(nos, no)
	}
	slices.Sort(nos)
	var newest uint64
	found := false
	for i := len(nos) - 1; i >= 0 && !found; i-- {
		no := nos[i]
		if spooled[no] || c.system == 0 || foreign == nil {
			newest, found = no, true
			break
		}
		var undecided *undecidedError
		for _, name := range byNo[no] {
			other, err := foreign(ctx, name, c.system)
			if ctx.Err() != nil {
				return Hole{}, ctx.Err()
			}
			if err != nil {
				if undecided == nil {
					undecided = &undecidedError{segment: name, err: err}
				}
				continue
			}
			if !other {
				newest, found = no, true
				break
			}
		}
		if !found && undecided != nil {
			return Hole{}, undecided
		}
	}
	if !found || newest+1 == c.start.No {
		return Hole{}, nil
	}
	first := wal.Segment{Timeline: c.start.Timeline, No: newest + 1}
	last := wal.Segment{Timeline: c.start.Timeline, No: c.start.No - 1}
	return Hole{First: first.Name(c.segSize), Last: last.Name(c.segSize), Count: c.start.No - newest - 1}, nil
}

// undecidedError is findHole's answer when the first page of segment,
// an archived candidate for the newest of the streamed system's before
// the resume point, could not be read (err): whether WAL is missing
// there is not known.
type undecidedError struct {
	segment string
	err     error
}

func (e *undecidedError) Error() string {
	return fmt.Sprintf("hole check: which database system wrote %s could not be told: %v", e.segment, e.err)
}

func (e *undecidedError) Unwrap() error { return e.err }

// reportUndecided logs at Error that the check for c could not decide
// (neither a hole nor an archive continuous up to the resume point),
// naming the segment whose first page could not be read and why, and
// records it in Status.HoleCheckUndecided. No hole is recorded; the next
// resume checks again.
func (r *Receiver) reportUndecided(c holeCheck, e *undecidedError) {
	start := c.start.Name(c.segSize)
	r.log.Error().Err(e.err).Str("unread", e.segment).Str(logSegment, start).
		Msg("hole check undecided: the first page of a stored segment could not be read, so whether segments before the resume point are missing is not known; check the storage and that segment")
	u := &UndecidedCheck{Segment: start, Unread: e.segment, Error: e.err.Error(), At: time.Now()}
	r.update(func(st *Status) { st.HoleCheckUndecided = u })
}

// reportHole logs a hole at Error and records it in Status.Holes; an
// empty hole is logged at Debug. Either way the check decided: an
// earlier undecided one leaves Status.HoleCheckUndecided.
func (r *Receiver) reportHole(c holeCheck, h Hole) {
	start := c.start.Name(c.segSize)
	r.update(func(st *Status) { st.HoleCheckUndecided = nil })
	if h.Count == 0 {
		r.log.Debug().Str(logSegment, start).Msg("hole check: the archive continues up to where streaming resumed")
		return
	}
	r.log.Error().Str("first", h.First).Str("last", h.Last).Uint64("segments", h.Count).Str(logSegment, start).
		Msg("wal hole: segments before the resume point are neither archived nor spooled; take a new basebackup")
	r.update(func(st *Status) {
		if !slices.Contains(st.Holes, h) && !HoleBefore(h, r.holesBefore) {
			st.Holes = append(st.Holes, h)
		}
	})
}

// ForgetHolesBefore drops from Status.Holes the holes that end before
// the position of segment start (a 24-hex segment name; positions, not
// timelines, are compared), and keeps a later check that finds one of
// them again from recording it: a basebackup that starts in start made
// them harmless to new restores (the daemon calls it after each one).
// Status.Holes then holds the holes since the last basebackup, not one
// for each data-loss incident for the process's life. The hole found is
// still logged at Error each time. A start below an earlier one's
// position changes nothing.
func (r *Receiver) ForgetHolesBefore(start string) {
	if len(start) != 24 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if start[8:] <= r.holesBefore {
		return
	}
	r.holesBefore = start[8:]
	r.status.Holes = slices.DeleteFunc(r.status.Holes, func(h Hole) bool { return HoleBefore(h, r.holesBefore) })
}

// HoleBefore reports whether hole h ends before position before (a
// segment name without its timeline; "" is no position): a basebackup
// that starts at before made it harmless to new restores.
func HoleBefore(h Hole, before string) bool {
	return before != "" && len(h.Last) == 24 && h.Last[8:] < before
}
