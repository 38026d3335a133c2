package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// serverVersionTimeout bounds the question to the node about its version.
const (
	serverVersionTimeout = 5 * time.Second
	serverVersionRetry   = time.Minute
)

// uploader adapts the site's archive to walstream.Uploader: complete
// segments and .history files go through archive.PushWAL (idempotent, never
// overwrites), .partial files through Archive.PutPartialWAL (replaces the
// previous copy). It counts failures in a row for the
// upload_retries_warning alert: walstream retries one file at a time, so
// failures in a row are the same upload failing again; an ended
// timeline's .partial refused for good, which walstream retries after the
// files queued behind it, counts its refusals on its own (refused).
type uploader struct {
	arch *archive.Archive
	push archive.PushOptions
	// serverVersion, when set and push has no PGVersion (the site sets no
	// pg_version), asks the node for its server_version_num: the WAL
	// comes from that node's replication connection. The first answer
	// is kept, as PGHoard caches the version; until one comes, PushWAL
	// records the major version from the page header.
	serverVersion func(context.Context) (int, error)
	versionFailed time.Time // when serverVersion last failed: asked again a minute later
	// systemID returns the system identifier of the node's cluster
	// ("" when not known), which a .history file's signature binds: the
	// receiver's, from IDENTIFY_SYSTEM. The spool directory is no data
	// directory, so PushWAL cannot read it from a pg_control.
	systemID func(context.Context) string
	// limit is upload_retries_warning_limit.
	limit int
	// warn is called with true when failures in a row exceed limit, and
	// with false at the next success after that.
	warn func(bool)
	// failed and uploaded count failed and successful uploads (metrics).
	failed, uploaded func()
	log              zerolog.Logger
	// partial keeps the encoding of the growing segment's .partial
	// between its copies (archive.PushOptions.Partial): a copy costs in
	// proportion to the WAL received since the previous one. Reset once
	// the complete segment is uploaded.
	partial archive.PartialCache

	mu     sync.Mutex
	inARow int
	// refused counts, for each .partial the archive refuses for good
	// (archive.PartialRefused), its refusals in a row: walstream takes an ended
	// timeline's such .partial off the head of its queue and stores the
	// files after it, whose successes would end inARow, so a refused
	// .partial counts its failures on its own, until it is stored.
	refused map[string]int
	warned  bool
	// stored is set at the first successful upload, which clears the
	// alert file an earlier run may have left (it stopped while uploads
	// failed): this run never raised it, so no change of warned would.
	stored bool
}

// Upload archives a complete segment or .history file. A segment's
// .partial copies, uploaded while it was being received, are deleted once
// it is stored: an error doing so fails the call, and the retry finds the
// segment stored and deletes them then.
func (u *uploader) Upload(ctx context.Context, path string) error {
	name := filepath.Base(path)
	o := u.pushOptions(ctx)
	if wal.IsHistoryFile(name) && u.systemID != nil {
		o.SystemID, _ = strconv.ParseUint(u.systemID(ctx), 10, 64)
		if o.SystemID == 0 {
			err := fmt.Errorf("push %s: the system identifier of the node's cluster, which its signature binds, is not known yet", path)
			u.record(ctx, err)
			return err
		}
	}
	_, err := u.arch.PushWAL(ctx, path, o)
	if wal.IsSegmentName(name) {
		// The segment is complete: its .partial copies are over.
		u.partial.Reset()
	}
	if err == nil && wal.IsSegmentName(name) {
		err = u.arch.DeletePartialWAL(ctx, name)
	}
	u.record(ctx, err)
	return err
}

// UploadPartial archives the growing (or final) .partial segment; stored
// is the size of the copy the receiver stored last (0: unknown, the
// storage is asked, and the encoding kept from earlier copies is
// dropped: the first copy of a segment or a session, the copy after a
// failed one, the final copy of an ended timeline); holdsSpool is the
// receiver's word that the copy holds all the WAL an earlier process
// left in the spool's file of the segment (archive.PushOptions'
// HoldsSpool).
func (u *uploader) UploadPartial(ctx context.Context, path string, stored int64, holdsSpool bool) error {
	o := u.pushOptions(ctx)
	o.StoredPartial = stored
	o.HoldsSpool = holdsSpool
	o.Partial = &u.partial
	res, err := u.arch.PutPartialWAL(ctx, path, o)
	if err == nil && res.Replaced != nil {
		// Not WAL this daemon stored, nor the server's: tampering, or
		// another writer on this site's prefix. The receiver's copy is
		// the truth and is now stored; a person should find out why.
		u.log.Error().Err(res.Replaced).Str(logKey, res.Key).Msg("stored .partial was not the streamed wal; replaced with the receiver's copy")
	}
	if ctx.Err() == nil {
		name := filepath.Base(path)
		u.mu.Lock()
		switch {
		case archive.PartialRefused(err):
			if u.refused == nil {
				u.refused = make(map[string]int)
			}
			u.refused[name]++
		case err == nil:
			delete(u.refused, name)
		}
		u.mu.Unlock()
	}
	u.record(ctx, err)
	return err
}

// overLimitLocked tells whether uploads failed past the limit: in a row,
// or a .partial refused for good that many times without being stored.
// Caller holds u.mu.
func (u *uploader) overLimitLocked() bool {
	if u.inARow > u.limit {
		return true
	}
	for _, n := range u.refused {
		if n > u.limit {
			return true
		}
	}
	return false
}

// ArchivedSegments lists the complete segments in the archive, for the
// receiver's hole check.
func (u *uploader) ArchivedSegments(ctx context.Context) ([]string, error) {
	return u.arch.ListSegments(ctx)
}

// ForeignSegment tells the receiver's hole check whether an archived
// segment is another database system's (archive.Archive.ForeignSegment).
func (u *uploader) ForeignSegment(ctx context.Context, name string, system uint64) (bool, error) {
	return u.arch.ForeignSegment(ctx, name, system)
}

// pushOptions returns the options of the next upload, learning the
// server's version first when it is still unknown.
func (u *uploader) pushOptions(ctx context.Context) archive.PushOptions {
	u.mu.Lock()
	o := u.push
	retry := time.Since(u.versionFailed) >= serverVersionRetry
	u.mu.Unlock()
	if o.PGVersion != 0 || u.serverVersion == nil || !retry {
		return o
	}
	v, err := u.serverVersion(ctx)
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil {
		u.versionFailed = time.Now()
		u.log.Warn().Err(err).Msg("server version unknown: pg-version records the major version from the wal page header")
		return o
	}
	u.push.PGVersion = v
	o.PGVersion = v
	return o
}

// failures returns the number of failed uploads in a row.
func (u *uploader) failures() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.inARow
}

func (u *uploader) record(ctx context.Context, err error) {
	if err != nil && ctx.Err() != nil {
		// Shutdown cut the upload short: not a storage failure.
		return
	}
	u.mu.Lock()
	var change, warn, clearLeftover bool
	if err != nil {
		u.inARow++
		if u.overLimitLocked() && !u.warned {
			u.warned, change, warn = true, true, true
		}
	} else {
		u.inARow = 0
		leftover := !u.stored
		u.stored = true
		switch {
		case u.overLimitLocked():
			// A refused .partial still fails past the limit.
		case u.warned:
			u.warned, change = false, true
		case leftover:
			clearLeftover = true
		}
	}
	n := u.inARow
	u.mu.Unlock()

	if err != nil {
		u.failed()
	} else {
		u.uploaded()
	}
	if change {
		if warn {
			u.log.Error().Err(err).Int("attempts", n).Msg("wal upload keeps failing; raising upload_retries_warning")
		} else {
			u.log.Info().Msg("wal uploads recovered; clearing upload_retries_warning")
		}
		u.warn(warn)
	}
	if clearLeftover {
		u.warn(false)
	}
}
