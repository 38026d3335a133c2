package walstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

// codeUndefinedFile is SQLSTATE 58P01: the walsender reports a WAL segment
// it no longer has ("requested WAL segment ... has already been removed")
// with it.
const codeUndefinedFile = "58P01"

// session is one replication connection: where it streams, and the
// segment being written.
type session struct {
	r       *Receiver
	conn    *replication.Conn
	segSize uint64
	tli     int32
	// cur is the segment holding pos; nil while the next segment waits
	// for room in the spool (see openNext).
	cur     *segmentFile
	pos     pglogrepl.LSN // end of the WAL written to the spool
	flushed pglogrepl.LSN // end of the WAL fsynced, as reported to the server
	// pending is WAL received for the segment at pos while it could not
	// be opened; it is written once it is.
	pending []byte
	// full is set while the last attempt to open a segment found the
	// disk full (ENOSPC).
	full bool
	// streaming is set while the connection is in COPY BOTH mode.
	streaming bool
	// progressed is set once WAL arrived, to reset the reconnect backoff.
	progressed bool
	// sentWAL is set once the server sent WAL since the last
	// START_REPLICATION. Until then status updates report no position:
	// see sendStatusReply.
	sentWAL bool

	nextStatus, nextPartial, nextDiskCheck time.Time
	// statusInterval is the time between status updates on this
	// connection: Options.StatusInterval, or less (senderStatusInterval).
	statusInterval time.Duration
	// sentFlush is the flush position last reported to the server.
	sentFlush pglogrepl.LSN
	// heard is when the last message came from the server (or the
	// receiver last read nothing on purpose: paused), and pinged whether
	// a keepalive was asked for since (receiveTimeout).
	heard  time.Time
	pinged bool
}

// session connects, finds where to resume and streams until ctx ends or
// an error occurs. It always leaves the partial segment fsynced and the
// connection closed.
func (r *Receiver) session(ctx context.Context) (progressed bool, err error) {
	conn, err := replication.ConnectAs(ctx, r.opts.ConnString, r.opts.ApplicationName)
	if err != nil {
		return false, err
	}
	s := &session{r: r, conn: conn, statusInterval: r.opts.StatusInterval}
	err = s.run(ctx)
	cur := s.cur
	if cur != nil && cur.failed != nil {
		// The WAL written since the last fsync is lost: the next session
		// receives it again from the segment's start (see
		// segmentFile.failed).
		r.log.Error().Err(cur.failed).Str(logSegment, cur.name()).Str(logLSN, s.flushed.String()).
			Msg("spool write or fsync failed; WAL past the flush position is lost and received again")
		if errors.Is(cur.failed, unix.ENOSPC) {
			r.spoolFull = cur.failed
		}
	}
	if cerr := s.close(ctx); cerr != nil {
		if ctx.Err() != nil {
			// Shutting down: the partial segment may not be durable, and
			// Run must not report success.
			return s.progressed, fatal(cerr)
		}
		if err == nil {
			err = cerr
		}
	}
	// The segment's fsynced part, before the next connection or, at
	// Run's stop, before Run returns (finishStreamEnd). Also after a
	// write or fsync of the file failed, in this session or in its
	// close: cur.synced counts only what an fsync made durable before
	// the failure, which the server heard is flushed, and a server that
	// dies before the next session streams the segment again leaves the
	// spool the only copy of it.
	r.storeStreamEnd(cur, err, ctx.Err() != nil)
	return s.progressed, err
}

// run prepares the stream and receives until an error.
func (s *session) run(ctx context.Context) error {
	r := s.r
	sys, err := s.conn.IdentifySystem(ctx)
	if err != nil {
		return err
	}
	if s.segSize, err = s.conn.WALSegmentSize(ctx); err != nil {
		return err
	}
	if old := r.segSize.Swap(s.segSize); old != 0 && old != s.segSize {
		return fatal(fmt.Errorf("wal segment size changed from %d to %d: not the same server", old, s.segSize))
	}
	s.statusInterval = s.senderStatusInterval(ctx)
	changed, err := s.changeSystem(ctx, sys)
	if err != nil {
		return err
	}
	slot, err := s.slot(ctx, sys, changed)
	if err != nil {
		return err
	}
	start, err := s.resume(ctx, sys, slot, !changed)
	if err != nil {
		return err
	}
	r.log.Info().Str(logLSN, start.String()).Int32(logTLI, s.tli).
		Str(logSegment, wal.SegmentOf(uint32(s.tli), start, s.segSize).Name(s.segSize)).Msg("streaming")
	for {
		s.sentWAL = false
		err := s.conn.StartReplication(ctx, replication.StartOptions{Slot: r.opts.Slot, Start: s.pos, Timeline: s.tli})
		if err == nil {
			s.streaming = true
			r.mu.Lock()
			r.status.Connected, r.status.Streamed = true, true
			r.clearErrorLocked(errStream)
			r.mu.Unlock()
			err = s.receive(ctx)
		}
		if errors.Is(err, replication.ErrStreamEnded) {
			// The walsender has exited: no final status to send.
			s.streaming = false
			return err
		}
		if eot, ok := replication.IsEndOfTimeline(err); ok {
			s.streaming = false
			if err := s.switchTimeline(ctx, eot); err != nil {
				return err
			}
			continue
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == codeUndefinedFile {
			return fatal(fmt.Errorf("resume at %s on timeline %d: %w: %w", s.pos, s.tli, ErrWALRemoved, err))
		}
		return err
	}
}

// slot reads the replication slot, creating it when missing. sys is the
// server's IDENTIFY_SYSTEM; changed says the database system changed
// (changeSystem). A slot created where WAL was streamed through it
// before is noted (noteSlotCreated): the server streamed from before may
// still have it.
func (s *session) slot(ctx context.Context, sys replication.System, changed bool) (replication.Slot, error) {
	name := s.r.opts.Slot
	slot, err := s.conn.ReadSlot(ctx, name)
	if !errors.Is(err, replication.ErrSlotNotFound) {
		return slot, err
	}
	// What the spool held before the slot existed here: WAL streamed
	// through the slot elsewhere, or before it was dropped.
	c, err := readSpool(s.r.opts.SpoolDir)
	if err != nil {
		return slot, err
	}
	err = s.conn.CreatePhysicalSlot(ctx, name)
	if errors.Is(err, replication.ErrSlotExists) {
		// Created meanwhile by someone else: not ours to note.
		return s.conn.ReadSlot(ctx, name)
	}
	if err != nil {
		return slot, err
	}
	s.r.log.Info().Str("slot", name).Msg("created replication slot")
	s.r.noteSlotCreated(sys.SystemID, sys.Timeline, c.newestTimeline(), changed)
	return s.conn.ReadSlot(ctx, name)
}

// resume decides where streaming starts, on which timeline, opens that
// segment's .partial and queues the .partial files of ended timelines.
// Streaming always starts at a segment boundary (as pg_receivewal does),
// so the segment is received whole: bytes already in the .partial are
// received again and written at the same offsets.
//
// The spool knows best: its latest .partial, or the segment after its
// latest complete one. Without spool files, the slot's restart_lsn (the
// flush position last reported) says what the archive already holds;
// without it, the server's current position. checkHoles asks for the
// hole check of where streaming starts (not after a change of database
// system: see changeSystem).
func (s *session) resume(ctx context.Context, sys replication.System, slot replication.Slot, checkHoles bool) (pglogrepl.LSN, error) {
	r := s.r
	segSize := s.segSize
	floor := func(lsn pglogrepl.LSN) pglogrepl.LSN { return lsn - lsn%pglogrepl.LSN(segSize) }
	c, err := readSpool(r.opts.SpoolDir)
	if err != nil {
		return 0, err
	}
	sp, err := resumeSegment(c, segSize)
	if err != nil {
		return 0, fatal(err)
	}
	if sp.found {
		if sp.seg, err = s.repairSpool(&c, sp.seg, slot); err != nil {
			return 0, err
		}
	}
	var start pglogrepl.LSN
	var localTLI int32
	switch {
	case sp.found:
		start, localTLI = sp.seg.StartLSN(segSize), int32(sp.seg.Timeline)
		if slot.RestartLSN != 0 && floor(slot.RestartLSN) > start {
			r.log.Warn().Str(logLSN, start.String()).Str("restart_lsn", slot.RestartLSN.String()).
				Msg("replication slot is ahead of the spool; the server may miss WAL from the spool's position")
		}
	case slot.RestartLSN != 0:
		start = floor(slot.RestartLSN)
	default:
		start = floor(sys.XLogPos)
	}

	tli := sys.Timeline
	switch {
	case localTLI > sys.Timeline:
		return 0, fatal(fmt.Errorf("spool is on timeline %d, ahead of the server's timeline %d: %w", localTLI, sys.Timeline, ErrOtherHistory))
	case localTLI == sys.Timeline, localTLI == 0 && sys.Timeline == 1:
	default:
		_, content, err := s.conn.TimelineHistory(ctx, sys.Timeline)
		if err != nil {
			return 0, err
		}
		history, err := wal.ParseHistory(uint32(sys.Timeline), content)
		if err != nil {
			return 0, err
		}
		if localTLI == 0 {
			tli = int32(history.TimelineAt(start))
			break
		}
		end, nextTLI, ok := history.Switch(uint32(localTLI))
		next := int32(nextTLI)
		if !ok {
			return 0, fatal(fmt.Errorf("spool is on timeline %d, which is not in the history of the server's timeline %d: %w", localTLI, sys.Timeline, ErrOtherHistory))
		}
		if start < end {
			// The server streams the rest of the old timeline, then
			// switches.
			tli = localTLI
		} else {
			r.log.Info().Int32(logTLI, next).Str(logLSN, end.String()).Msg("spool is past the end of its timeline; resuming at the switch point")
			start, tli = floor(end), next
		}
	}
	if err := s.fetchHistory(ctx, tli); err != nil {
		return 0, err
	}

	s.tli = tli
	seg := wal.SegmentOf(uint32(tli), start, segSize)
	r.forgetSnapshot()
	if err := r.queuePartials(c, uint32(tli)); err != nil {
		return 0, err
	}
	s.pos, s.flushed = start, start
	if checkHoles {
		system, _ := strconv.ParseUint(sys.SystemID, 10, 64)
		r.requestHoleCheck(holeCheck{start: seg, segSize: segSize, spooled: c.uploads, system: system})
	}
	if err := s.openNext(); err != nil {
		return 0, err
	}
	now := time.Now()
	s.nextStatus = now
	s.nextDiskCheck = now
	s.nextPartial = now.Add(r.opts.PartialUploadInterval)
	r.update(func(st *Status) {
		st.SystemID = sys.SystemID
		st.Timeline = tli
		st.Segment = seg.Name(segSize)
		st.Received, st.Flushed = start, start
		st.ServerLSN = max(st.ServerLSN, sys.XLogPos)
		if st.Uploaded == 0 {
			st.Uploaded = start
			for _, name := range c.uploads {
				if first, err := wal.ParseSegmentName(name, segSize); err == nil {
					st.Uploaded = min(st.Uploaded, first.StartLSN(segSize))
					break
				}
			}
		}
		if st.Stored == 0 {
			st.Stored = st.Uploaded
		}
		// The server's WAL not stored yet is counted from now: when it
		// was written is not known.
		r.noteArrival(st.ServerLSN, now)
	})
	return start, nil
}

// fetchHistory writes the history file of timeline tli to the spool and
// queues it, once per Run: it may be the first time the archive sees
// this timeline.
func (s *session) fetchHistory(ctx context.Context, tli int32) error {
	if tli <= 1 || s.r.histories[tli] {
		return nil
	}
	name, content, err := s.conn.TimelineHistory(ctx, tli)
	if err != nil {
		return err
	}
	if want := wal.HistoryFileName(uint32(tli)); name != want {
		return fmt.Errorf("timeline history %d: server named it %q, want %q", tli, name, want)
	}
	if err := writeFileAtomic(s.r.opts.SpoolDir, name, content); err != nil {
		return err
	}
	s.r.histories[tli] = true
	// Kept for Status.History: one that does not parse is still stored
	// as the server wrote it (restore and verify report it), but not
	// kept.
	if h, err := wal.ParseHistory(uint32(tli), content); err == nil {
		s.r.mu.Lock()
		if s.r.serverHistories == nil {
			s.r.serverHistories = map[int32]wal.History{}
		}
		s.r.serverHistories[tli] = h
		s.r.mu.Unlock()
	}
	s.r.enqueue(uploadTask{kind: taskFile, name: name})
	return nil
}

// receive handles messages until an error, answering keepalives and
// sending status updates, pausing while the disk is full.
func (s *session) receive(ctx context.Context) error {
	r := s.r
	guard := r.guard
	timeout := r.receiveTimeout()
	s.heard, s.pinged = time.Now(), false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		if guard.paused || s.cur == nil {
			// Not reading: the server's messages wait in the socket.
			s.heard, s.pinged = now, false
		}
		// As PostgreSQL's walreceiver (wal_receiver_timeout): a
		// connection on which nothing arrives is not streaming, though
		// no error ends it (a network path that drops every packet, a
		// frozen server); half way, ask for a keepalive, which a server
		// with nothing to send answers at once.
		if silent := now.Sub(s.heard); silent >= timeout {
			return fmt.Errorf("nothing received from the server for %s, not even the keepalive asked for: the server or the network path stalled; reconnecting", silent.Round(time.Second))
		} else if silent >= timeout/2 && !s.pinged {
			if err := s.sendStatusReply(ctx, true); err != nil {
				return err
			}
			s.pinged = true
		}
		waiting := s.cur == nil // for room to open the next segment
		if (guard.min != 0 || waiting) && !now.Before(s.nextDiskCheck) {
			s.nextDiskCheck = now.Add(r.opts.DiskCheckInterval)
			if waiting {
				if err := s.openNext(); err != nil {
					return err
				}
			} else {
				paused, changed, err := guard.check(0)
				if err != nil {
					r.log.Warn().Err(err).Msg("free space check failed")
				}
				s.guardChanged(paused, changed)
			}
		}
		if !now.Before(s.nextStatus) {
			if err := s.sendStatus(ctx); err != nil {
				return err
			}
		}
		switch {
		case r.opts.Synchronous:
			if !now.Before(r.snapshotRetryAt()) {
				if err := s.snapshot(); err != nil {
					return err
				}
			}
			if s.reportable() > s.sentFlush {
				if err := s.sendStatus(ctx); err != nil {
					return err
				}
			}
		case r.opts.PartialUploadInterval > 0 && !now.Before(s.nextPartial):
			s.nextPartial = now.Add(r.opts.PartialUploadInterval)
			if err := s.snapshot(); err != nil {
				return err
			}
		}
		storeAt, err := s.storeRequested(now)
		if err != nil {
			return err
		}

		wake := s.nextStatus
		if guard.min != 0 || s.cur == nil {
			wake = minTime(wake, s.nextDiskCheck)
		}
		switch {
		case r.opts.Synchronous:
			// Every upload that ends wakes the wait below (wakeReceiver):
			// WAL it stored is reported, and the next copy queued, at
			// once. Only a failed copy is tried again on a timer.
			if !r.queue.hasSnapshot() && s.cur != nil && s.cur.written > r.snapshotUploaded(s.cur.name()+wal.PartialSuffix) {
				wake = minTime(wake, r.snapshotRetryAt())
			}
		case r.opts.PartialUploadInterval > 0:
			wake = minTime(wake, s.nextPartial)
		}
		if !storeAt.IsZero() {
			wake = minTime(wake, storeAt)
		}
		if s.pinged {
			wake = minTime(wake, s.heard.Add(timeout))
		} else {
			wake = minTime(wake, s.heard.Add(timeout/2))
		}
		// In synchronous mode, and while a StoreThrough request waits,
		// an upload that ends (or a new request) ends the wait.
		wctx, cancel := context.WithDeadline(ctx, wake)
		if (r.opts.Synchronous || r.storeWanted() != 0) && !r.armWake(cancel) {
			// An upload ended since the wait was last armed.
			cancel()
			continue
		}
		if guard.paused || s.cur == nil {
			// Read nothing: the server keeps the WAL for the slot. An
			// upload that removes a file from the spool ends the wait:
			// the free space is looked at again at once, so receiving
			// resumes as fast as uploads make room, not one segment or
			// two per DiskCheckInterval.
			select {
			case <-wctx.Done():
			case <-r.freed:
				s.nextDiskCheck = time.Now()
			}
			r.disarmWake()
			cancel()
			continue
		}

		msg, err := s.conn.ReceiveMessage(wctx)
		ended := wctx.Err() != nil // at wake, or woken by an upload
		r.disarmWake()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if ended || pgconn.Timeout(err) {
				continue
			}
			return err
		}
		s.heard, s.pinged = time.Now(), false
		switch msg.Kind {
		case replication.MessageXLogData:
			if !s.sentWAL {
				// The server has the WAL: report the position at
				// once, as the status updates sent before the first
				// WAL did not (sendStatusReply).
				s.sentWAL, s.nextStatus = true, time.Now()
			}
			if err := s.write(msg.XLogData); err != nil {
				return err
			}
		case replication.MessageKeepalive:
			k := msg.Keepalive
			r.update(func(st *Status) { st.ServerLSN = max(st.ServerLSN, k.ServerWALEnd) })
			if k.ReplyRequested {
				if err := s.sendStatus(ctx); err != nil {
					return err
				}
			}
		}
	}
}

// minStatusInterval is the shortest time between status updates that
// senderStatusInterval sets, whatever the server's wal_sender_timeout.
const minStatusInterval = 100 * time.Millisecond

// senderStatusInterval returns the time between status updates on this
// connection: Options.StatusInterval, or half the server's
// wal_sender_timeout when that is shorter. The server ends a connection
// from which no reply came for wal_sender_timeout; at half of it, it asks
// for one with a keepalive, which the receive loop answers at once while
// it reads. While it reads nothing (the disk guard's pause, waiting for
// room for the next segment) it sees no keepalive, and only its own
// status updates keep the connection: every 10 s against a server's
// wal_sender_timeout of a few seconds (a fast failover setup), the
// server dropped it ("terminating walsender process due to replication
// timeout") again and again for as long as the pause lasted. A server
// whose setting cannot be read (SHOW failed) gets Options.StatusInterval.
// The first shortened interval of a Run is logged at Info.
func (s *session) senderStatusInterval(ctx context.Context) time.Duration {
	r := s.r
	interval := r.opts.StatusInterval
	v, err := s.conn.Show(ctx, "wal_sender_timeout")
	if err == nil {
		var timeout time.Duration
		if timeout, err = replication.ParseDuration(v, time.Millisecond); err == nil && timeout > 0 && timeout/2 < interval {
			interval = max(timeout/2, minStatusInterval)
			if !r.statusShortened {
				r.statusShortened = true
				r.log.Info().Str("wal_sender_timeout", v).Int64("status_interval_ms", interval.Milliseconds()).
					Int64("default_status_interval_ms", r.opts.StatusInterval.Milliseconds()).
					Msg("status updates at half the server's wal_sender_timeout, so that a paused receiver keeps its connection")
			}
		}
	}
	if err != nil {
		r.log.Debug().Err(err).Msg("the server's wal_sender_timeout could not be read; status updates at the usual interval")
	}
	return interval
}

// minTime returns the earlier of a and b.
func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// sendStatus fsyncs the partial segment, then reports the received
// position as written and the fsynced one as flushed and applied.
func (s *session) sendStatus(ctx context.Context) error {
	return s.sendStatusReply(ctx, false)
}

// sendStatusReply is sendStatus, asking the server for a keepalive at
// once when reply is set. The send gets the receive timeout: a server or
// path that stopped reading fills the socket buffers, and the write
// would block for good.
func (s *session) sendStatusReply(ctx context.Context, reply bool) error {
	if err := s.flush(); err != nil {
		return err
	}
	flush := s.reportable()
	st := replication.StandbyStatus{Write: s.pos, Flush: flush, Apply: flush, ReplyRequested: reply}
	if !s.sentWAL {
		// The server has not shown it still has the WAL streaming
		// resumes at: a flush position moves the slot's restart_lsn
		// (PhysicalConfirmReceivedLocation, even backwards), and a new
		// slot past the spool's position (created on a promoted
		// standby that recycled its WAL first) would be moved back to
		// WAL the server no longer has, refusing every later start at
		// the slot. An invalid position (0) moves nothing
		// (ProcessStandbyReplyMessage in walsender.c).
		st.Write, st.Flush, st.Apply = 0, 0, 0
	}
	sctx, cancel := context.WithTimeout(ctx, s.r.receiveTimeout())
	defer cancel()
	if err := s.conn.SendStandbyStatus(sctx, st); err != nil {
		if ctx.Err() == nil && sctx.Err() != nil {
			return fmt.Errorf("send status update: the server read nothing for %s: the server or the network path stalled: %w", s.r.receiveTimeout(), err)
		}
		return err
	}
	s.sentFlush = flush
	s.nextStatus = time.Now().Add(s.statusInterval)
	return nil
}

// reportable is the flush position the server may hear: the WAL fsynced
// in the spool or, in synchronous mode, the part of it that is stored.
func (s *session) reportable() pglogrepl.LSN {
	if !s.r.opts.Synchronous {
		return s.flushed
	}
	return min(s.flushed, s.r.stored())
}

// snapshot queues an upload of the partial segment when it grew since
// the last successful one and no snapshot is waiting.
func (s *session) snapshot() error {
	if s.cur == nil {
		return nil
	}
	name := s.cur.name() + wal.PartialSuffix
	if s.cur.written == 0 || s.cur.written <= s.r.snapshotUploaded(name) || s.r.queue.hasSnapshot() {
		return nil
	}
	if err := s.flush(); err != nil {
		return err
	}
	s.r.enqueue(uploadTask{kind: taskSnapshot, name: name, length: s.cur.synced, holdsSpool: s.r.holdsSpool(name, s.cur.synced)})
	return nil
}

// switchTimeline follows the server to the next timeline: the old
// timeline's .partial is closed and queued as a .partial (never as a
// complete segment), the new timeline's history file is written and
// queued, and streaming goes on from the start of the segment holding the
// switch point, on the new timeline.
func (s *session) switchTimeline(ctx context.Context, eot *replication.EndOfTimeline) error {
	r := s.r
	if s.pos < eot.SwitchLSN {
		return fmt.Errorf("timeline %d ended at %s but WAL was received only up to %s", s.tli, eot.SwitchLSN, s.pos)
	}
	if s.pos > eot.SwitchLSN {
		r.log.Warn().Int32(logTLI, s.tli).Str(logLSN, s.pos.String()).Str("switch_lsn", eot.SwitchLSN.String()).
			Msg("received WAL beyond the end of the timeline; it stays in the old timeline's .partial")
	}
	// The old timeline's last segment is fsynced and queued first: a
	// crash before the new segment is opened leaves the spool on the old
	// timeline, and the next run finds the switch in the server's history.
	if old := s.cur; old != nil {
		s.cur = nil
		if err := old.close(); err != nil {
			return err
		}
		if err := r.finishPartial(old.name() + wal.PartialSuffix); err != nil {
			return err
		}
		r.log.Info().Int32(logTLI, eot.NextTimeline).Str(logLSN, eot.SwitchLSN.String()).Str(logSegment, old.name()).
			Msg("timeline switch")
	}
	if err := s.fetchHistory(ctx, eot.NextTimeline); err != nil {
		return err
	}
	start := eot.SwitchLSN - eot.SwitchLSN%pglogrepl.LSN(s.segSize)
	s.tli, s.pos, s.flushed, s.pending = eot.NextTimeline, start, start, nil
	s.nextStatus = time.Now()
	tli := s.tli
	r.update(func(st *Status) {
		st.Timeline = tli
		st.Received, st.Flushed = start, start
	})
	return s.openNext()
}

// close ends the session: it fsyncs the partial segment, tells the server
// the true flush position if still streaming, and closes the connection.
// It runs after ctx may have ended, under its own timeout.
func (s *session) close(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
	defer cancel()
	// After an fsync error flush fails again: nothing more is reported.
	err := s.flush()
	if err == nil && s.streaming {
		if serr := s.sendStatus(fctx); serr != nil {
			s.r.log.Debug().Err(serr).Msg("final status update not sent")
		} else {
			s.r.log.Info().Str(logLSN, s.flushed.String()).Msg("reported final flush position")
		}
	}
	if s.cur != nil {
		if cerr := s.cur.close(); err == nil {
			err = cerr
		}
		s.cur = nil
	}
	_ = s.conn.Close(fctx)
	return err
}

// queuePartials queues the .partial files of the spool listing c whose
// timeline is before tli, the timeline the stream continues: they are the
// last segments of ended timelines. Those of tli itself are the segment
// streaming resumes with and later ones, which the stream writes again.
func (r *Receiver) queuePartials(c spoolContents, tli uint32) error {
	for _, name := range c.partials {
		if wal.SegmentTimeline(name) >= tli {
			continue
		}
		if err := r.finishPartial(name); err != nil {
			return err
		}
	}
	return nil
}

// repairSpool deals with the full segments an interrupted run may have
// left as .partial files on the timeline of next, the segment the spool
// says streaming resumes with: earlier hoard versions opened the next
// segment before renaming the finished one, and a crash or a failed
// rename in between left both as .partial. Such a file is never uploaded
// as a .partial. When the slot shows that the server still has it (the
// flush position it heard lies before the file's end), streaming resumes
// at its start and receives it again. Otherwise the server was told it is
// flushed and may have removed it: if it is a whole segment of valid WAL
// records (wholeWAL, as completeBelow checks it: up to an XLOG_SWITCH, or
// to its end), it is renamed complete and queued; if not, streaming
// resumes at its start all the same, and the server either still has the
// WAL or refuses (ErrWALRemoved). It returns the segment streaming
// resumes with.
func (s *session) repairSpool(c *spoolContents, next wal.Segment, slot replication.Slot) (wal.Segment, error) {
	r := s.r
	for _, name := range c.partials {
		seg, err := wal.ParseSegmentName(strings.TrimSuffix(name, wal.PartialSuffix), s.segSize)
		if err != nil {
			return next, fatal(fmt.Errorf("spool: %w", err))
		}
		if seg.Timeline != next.Timeline || seg.No >= next.No {
			continue
		}
		if slot.RestartLSN < seg.Next().StartLSN(s.segSize) {
			r.log.Warn().Str(logSegment, seg.Name(s.segSize)).Msg("a full segment was left as .partial; streaming it again")
			return seg, nil
		}
		if err := completeFull(r.opts.SpoolDir, name, s.segSize); err != nil {
			r.log.Error().Err(err).Str(logSegment, seg.Name(s.segSize)).Str("restart_lsn", slot.RestartLSN.String()).
				Msg("a segment left as .partial is incomplete and the slot is past it; streaming it again")
			return seg, nil
		}
		r.log.Warn().Str(logSegment, seg.Name(s.segSize)).Msg("a full segment was left as .partial; completed it")
		r.enqueue(uploadTask{kind: taskFile, name: seg.Name(s.segSize)})
		c.uploads = append(c.uploads, seg.Name(s.segSize))
	}
	return next, nil
}
