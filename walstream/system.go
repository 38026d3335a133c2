package walstream

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

// drainPoll is how often a session that waits for the old database
// system's WAL to be stored (changeSystem) looks at the upload queue.
const drainPoll = 200 * time.Millisecond

// changeSystem deals with a server whose database system is not the one
// of the WAL streamed so far in this Run (Status.SystemID) or, at the
// start of a Run, of the WAL in the spool: the cluster at the node's
// address was replaced, as pg_upgrade does (a new system identifier,
// timeline 1, WAL beyond the old cluster's, and no replication slot:
// pg_upgrade does not carry physical slots). It reports whether the
// system changed.
//
// The old system's WAL is stored first: its .partial segments are queued
// as .partial files, never as complete segments (the old server never
// finished them; the last one holds the shutdown checkpoint its
// walsender sent before it stopped), and the session waits until the
// upload queue is empty and every .partial is stored, so the spool never
// holds two systems' WAL. A .partial the storage refuses for good
// (refusePartial) holds it until the operator moves the stored object
// away and its retry stores the file: the error and the refusals' log
// say so, and Status.QueuedSince (the daemon's lag) counts it. A
// crash meanwhile leaves the old system's files in the spool, and the
// next Run does the same again. Then the receiver forgets the old
// system's positions and streams the new one from its slot (created
// again when missing), with no hole check: the archive's earlier WAL is
// another system's, and nothing is continuous with it.
//
// When the new system's WAL position is not beyond the old one's, its
// segments would take names the archive holds for the old system: that
// is no pg_upgrade but another cluster at the node's address, and the
// change is fatal once the old WAL is stored.
func (s *session) changeSystem(ctx context.Context, sys replication.System) (bool, error) {
	r := s.r
	c, err := readSpool(r.opts.SpoolDir)
	if err != nil {
		return false, err
	}
	st := r.Status()
	old, oldEnd := st.SystemID, st.Received
	if old == "" {
		if old, err = spoolSystem(r.opts.SpoolDir, c); err != nil {
			return false, fatal(err)
		}
		if sp, err := resumeSegment(c, s.segSize); err == nil && sp.found {
			oldEnd = sp.seg.StartLSN(s.segSize)
		}
	}
	if old == "" || old == sys.SystemID {
		return false, nil
	}
	r.log.Warn().Str("old_system", old).Str("system", sys.SystemID).Str(logLSN, sys.XLogPos.String()).
		Int("spooled", len(c.uploads)+len(c.partials)).
		Msg("the server is another database system (pg_upgrade?): storing the old system's wal first")
	for _, name := range c.partials {
		if err := r.finishPartial(name); err != nil {
			return false, fatal(err)
		}
	}
	if err := r.waitUploads(ctx); err != nil {
		return false, err
	}
	if sys.XLogPos <= oldEnd {
		return false, fatal(fmt.Errorf("system identifier changed from %s to %s and the server's wal position %s is not beyond "+
			"the old system's %s: not the same server, nor an upgrade of it; its wal would take the archived wal's names",
			old, sys.SystemID, sys.XLogPos, oldEnd))
	}
	r.log.Info().Str("old_system", old).Str("system", sys.SystemID).Msg("the old system's wal is stored: streaming the new system")
	// The old system's positions mean nothing on the new one; resume
	// sets them anew from where it starts.
	r.update(func(st *Status) {
		st.SystemID, st.Segment = "", ""
		st.Received, st.Flushed, st.Uploaded, st.Stored, st.ServerLSN = 0, 0, 0, 0, 0
	})
	r.mu.Lock()
	r.arrivals, r.storeWant = nil, 0
	r.serverHistories = nil
	r.mu.Unlock()
	r.histories = make(map[int32]bool)
	return true, nil
}

// waitUploads waits until the upload queue is empty and no .partial the
// storage refused for good is left unstored (refusePartial: out of the
// queue between its retries, it is not stored), or until ctx ends.
func (r *Receiver) waitUploads(ctx context.Context) error {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for r.unstoredFiles() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// spoolSystem returns the system identifier in the first page header of
// the newest WAL file in the spool listing c (a complete segment or a
// .partial that holds WAL), "" when there is none.
func spoolSystem(dir string, c spoolContents) (string, error) {
	var names []string
	for _, n := range c.uploads {
		if wal.IsSegmentName(n) {
			names = append(names, n)
		}
	}
	names = append(names, c.partials...)
	// By segment name (timeline, then position), newest first.
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(b[:24], a[:24]) })
	for _, name := range names {
		h, err := wal.CheckSegmentFile(filepath.Join(dir, name), "")
		if errors.Is(err, wal.ErrBadPageHeader) {
			continue // an empty .partial, opened ahead of the stream
		}
		if err != nil {
			return "", fmt.Errorf("spool: %w", err)
		}
		return strconv.FormatUint(h.SystemID, 10), nil
	}
	return "", nil
}
