package archive

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// fetchAttempts is how many times a WAL file is downloaded when its
// download fails in the middle, and fetchBackoff the pause before the
// second try (doubled before each next one).
const fetchAttempts = 3

var fetchBackoff = 500 * time.Millisecond

// fetchKey is fetchKeyOnce, tried again from the object's start when
// the download fails in the middle with a transient error (a
// storage.ReadError: a connection cut or stalled), up to fetchAttempts
// times. The store's retries cover opening an object, not reading it;
// without this, one cut connection would make wal-fetch exit 255, which
// stops PostgreSQL's recovery. The failed try's temporary file is gone
// (fetchKeyOnce removes it) and nothing was renamed into place, so each
// try starts clean. An object that does not decode (a DecodeError:
// tampered, truncated at rest) or whose bytes do not match the store's
// checksum (storage.ErrChecksum, not transient) is never tried again.
func (a *Archive) fetchKey(ctx context.Context, chk fetchChecks, key, name string, dir *os.Root, destName, tmpPrefix string) (wal.PageHeader, error) {
	return retryCut(ctx, func() (wal.PageHeader, error) {
		return a.fetchKeyOnce(ctx, chk, key, name, dir, destName, tmpPrefix)
	})
}

// retryCut runs once, and again from the start while it fails in the
// middle of a download with a transient error (readCut), up to
// fetchAttempts times in all, with a pause doubled before each next try.
func retryCut(ctx context.Context, once func() (wal.PageHeader, error)) (wal.PageHeader, error) {
	pause := fetchBackoff
	for attempt := 1; ; attempt++ {
		h, err := once()
		if err == nil || attempt == fetchAttempts || !readCut(err) || ctx.Err() != nil {
			return h, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return h, err
		case <-t.C:
		}
		pause *= 2
	}
}

// readCut reports whether err ended a download in the middle and may
// pass: a transient storage.ReadError, and not a DecodeError.
func readCut(err error) bool {
	var re *storage.ReadError
	var de *DecodeError
	return errors.As(err, &re) && storage.IsTransient(re.Err) && !errors.As(err, &de)
}
