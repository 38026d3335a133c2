package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/hoardbackup/hoard/wal"
)

// CheckWALOptions configure CheckWAL.
type CheckWALOptions struct {
	// SystemID, when not zero, is the system identifier of the cluster
	// the segments are for: one whose first page names another is
	// refused (ErrOtherSystem), as wal-fetch refuses it.
	SystemID uint64
	// Spool, when not "", is the prefetch spool directory (SpoolDir) of
	// the pg_wal that wal-fetch will fetch into: up to Room of the
	// checked segments are kept there, where wal-fetch takes them without
	// a download (spool.take). CheckWAL must be its only user: the spool
	// of a data directory being restored, which no server runs on yet.
	Spool string
	// Room is how many segments the spool may keep; the others, and one
	// that finds the spool's file system full (from then on), are
	// checked and not kept.
	Room int
	// Parallel is how many segments are downloaded at once; 0: 1.
	Parallel int
}

// CheckWAL downloads each segment of files and checks it as wal-fetch
// does before it delivers one (decodeChecked: the codec's envelope and
// HMAC, the decompression, the hash, the segment's size, its page
// headers' address and timeline, its system), through a temporary file
// in the spool or into nothing: memory holds one copy buffer per
// download, never a segment. It returns the names of the segments kept
// in o.Spool, and the first error met, a *WALCheckError for a segment
// that cannot be read or fails its checks (its message names the file and
// its object); the downloads still running then stop.
//
// Each file is read from the archive holding it (WALFile.Archive, one of
// a's sites), its timeline history from a and the sites it moved from.
// The spool is cleared and takes a's identity (spoolIdentity) first: a
// wal-fetch of the same archive takes its segments, one of another
// archive clears them (spool.take).
func (a *Archive) CheckWAL(ctx context.Context, files []WALFile, o CheckWALOptions) ([]string, error) {
	var sp *spool
	if o.Spool != "" && o.Room > 0 {
		s, err := openSpool(o.Spool, true)
		if err != nil {
			return nil, fmt.Errorf("prefetch spool %s: %w", o.Spool, err)
		}
		defer s.close()
		lock, err := s.lock()
		if err != nil {
			return nil, fmt.Errorf("prefetch spool %s: %w", o.Spool, err)
		}
		defer lock.Close()
		s.clear()
		if err := s.setIdentity(a.spoolIdentity()); err != nil {
			return nil, fmt.Errorf("prefetch spool %s: record its archive: %w", o.Spool, err)
		}
		sp = s
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		kept  []string
		first error
		room  = o.Room
		wg    sync.WaitGroup
		next  = make(chan WALFile)
	)
	for range max(o.Parallel, 1) {
		wg.Go(func() {
			for f := range next {
				mu.Lock()
				keep := sp != nil && room > 0
				if keep {
					room--
				}
				mu.Unlock()
				stored, err := a.checkOne(ctx, f, sp, keep, o.SystemID)
				if err != nil && ctx.Err() == nil {
					err = &WALCheckError{File: f, Err: err}
				}
				mu.Lock()
				switch {
				case err != nil && first == nil:
					first = err
					cancel()
				case err == nil && stored:
					kept = append(kept, f.Name)
				case err == nil && keep:
					room = 0 // the spool's file system is full
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, f := range files {
		select {
		case next <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return kept, first
}

// WALCheckError is CheckWAL's error for the segment File, which failed
// its checks with Err.
type WALCheckError struct {
	File WALFile
	Err  error
}

func (e *WALCheckError) Error() string { return e.Err.Error() }
func (e *WALCheckError) Unwrap() error { return e.Err }

// checkOne downloads and checks the segment f: into the spool sp under its
// name when keep is set, else into nothing. Its timeline history is read
// from a and the sites it moved from. stored reports that it is in the
// spool: a segment that finds the spool's file system full (ENOSPC) is
// checked again into nothing, since room to keep it is a head start, not
// a condition of the check.
func (a *Archive) checkOne(ctx context.Context, f WALFile, sp *spool, keep bool, system uint64) (stored bool, err error) {
	src := f.Archive
	if src == nil {
		src = a
	}
	chk := fetchChecks{hist: a, systemID: system}
	if keep {
		_, err := src.fetchKey(ctx, chk, f.Key, f.Name, sp.root, f.Name, spoolTmpPrefix)
		if !errors.Is(err, syscall.ENOSPC) {
			return err == nil, err
		}
	}
	_, err = retryCut(ctx, func() (wal.PageHeader, error) {
		rc, md, err := src.Codec.Open(ctx, src.Store, f.Key)
		if err != nil {
			return wal.PageHeader{}, fmt.Errorf("fetch %s: %w", f.Name, err)
		}
		defer rc.Close()
		h, _, err := src.decodeChecked(ctx, chk, io.Discard, rc, md, f.Key, f.Name)
		return h, err
	})
	return false, err
}
