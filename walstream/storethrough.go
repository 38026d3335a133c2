package walstream

import (
	"time"

	"github.com/jackc/pglogrepl"
)

// StoreThrough asks the Receiver to store the WAL up to lsn in the
// archive as soon as it has received it, whatever PartialUploadInterval:
// the daemon calls it after a backup of a standby, its own or one it
// sees in the site, which ends in the
// segment the standby's primary is still writing, so that the backup
// restores at once however idle the primary. When lsn lies in the
// segment being received, that segment's .partial is uploaded once the
// WAL up to lsn is received and fsynced; a failed upload is tried again
// with backoff (snapshotRetryAt), ended by any upload that succeeds. When it lies in an earlier segment, that
// segment is complete and queued: its upload stores it. The request
// holds until Status.Stored reaches lsn, across reconnections, for the
// rest of Run; a later request for a higher lsn replaces it.
func (r *Receiver) StoreThrough(lsn pglogrepl.LSN) {
	r.mu.Lock()
	if lsn > r.status.Stored && lsn > r.storeWant {
		r.storeWant = lsn
	}
	r.mu.Unlock()
	r.wakeReceiver()
}

// storeWanted returns the position StoreThrough asked for that is not
// stored yet, 0 when none.
func (r *Receiver) storeWanted() pglogrepl.LSN {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.storeWant
}

// storeRequested serves StoreThrough in the receive loop: it queues a
// .partial upload of the segment being received when it holds the WAL
// asked for and no copy of it is stored or on its way. It returns when
// the loop must look again at the latest, zero when only new WAL or an
// upload's end (which wakes the loop) can change anything.
func (s *session) storeRequested(now time.Time) (time.Time, error) {
	r := s.r
	want := r.storeWanted()
	if want == 0 || s.cur == nil || s.pos < want || want <= s.cur.seg.StartLSN(s.segSize) {
		return time.Time{}, nil
	}
	if retry := r.snapshotRetryAt(); now.Before(retry) {
		return retry, nil
	}
	return time.Time{}, s.snapshot()
}
