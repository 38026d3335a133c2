package verify

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// storeError is an error the store returned for a request of verify's
// own (a chunk's Stat, an object's Open), the object not yet read.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }

func (e *storeError) Unwrap() error { return e.err }

// storeFailure marks err, returned by the store for a request, as the
// store's (storageFailed).
func storeFailure(err error) error { return &storeError{err: err} }

// storageFailed reports whether err, from the check of an object, says
// only that the storage failed: the store's answer to a request
// (storeError) or a download cut in the middle (storage.ReadError), and
// nothing that archive.IsDamage takes for damage (a 404, a sidecar
// without its file, bytes that do not decode). Such a check was not
// made: verify stops with the error rather than report the backup
// broken, which a storage outage would otherwise read as.
func storageFailed(err error) bool {
	if archive.IsDamage(err) {
		return false
	}
	var se *storeError
	var re *storage.ReadError
	return errors.As(err, &se) || errors.As(err, &re)
}

// storeMarking is a Store whose own errors (a request's answer, a
// download's read error) are marked as the store's (storeFailure), for
// checks made through code that mixes the store's errors with its own
// findings (a control object's reading, a WAL file's checks): storageFailed
// then tells them apart. A finding wraps no mark, unless it reports the
// store's answer (a 404 is damage: archive.IsDamage).
type storeMarking struct{ storage.Store }

func (s storeMarking) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, o, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, o, storeFailure(err)
	}
	return &markingReader{rc}, o, nil
}

func (s storeMarking) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := s.Store.OpenRange(ctx, key, offset, length)
	if err != nil {
		return nil, storeFailure(err)
	}
	return &markingReader{rc}, nil
}

func (s storeMarking) Stat(ctx context.Context, key string) (storage.Object, error) {
	o, err := s.Store.Stat(ctx, key)
	if err != nil {
		return o, storeFailure(err)
	}
	return o, nil
}

// List marks the store's errors, not fn's: those are the caller's.
func (s storeMarking) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	var fnErr error
	err := s.Store.List(ctx, prefix, func(o storage.Object) error {
		fnErr = fn(o)
		return fnErr
	})
	if err != nil && (fnErr == nil || !errors.Is(err, fnErr)) {
		return storeFailure(err)
	}
	return err
}

// markingReader marks its reader's errors but io.EOF as the store's.
type markingReader struct{ rc io.ReadCloser }

func (r *markingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err != nil && err != io.EOF {
		err = storeFailure(err)
	}
	return n, err
}

func (r *markingReader) Close() error { return r.rc.Close() }

// marking returns a copy of a whose store's errors are marked
// (storeMarking), and so those of the sites it moved from.
func marking(a *archive.Archive) *archive.Archive {
	if a == nil {
		return nil
	}
	m := *a
	m.Store = storeMarking{a.Store}
	m.MovedFrom = make([]*archive.Archive, len(a.MovedFrom))
	for i, s := range a.MovedFrom {
		m.MovedFrom[i] = marking(s)
	}
	return &m
}

// unchecked is verify's error for object key, a what, that could not be
// checked because the storage failed (storageFailed): err.
func unchecked(what, key string, err error) error {
	return fmt.Errorf("verify: %s %s could not be checked: the storage failed, and nothing was found wrong with it "+
		"(no backup is reported; run verify again once the storage answers): %w", what, key, err)
}

// markedListing returns a copy of l whose files are read through
// marking archives, and whose reads to find where a system's WAL ends
// (WALListing.SystemEndAt, OwnWALAfter) return the errors storageFailed
// takes for the storage's, rather than take them for no end: a storage
// outage would otherwise read as a gap in a backup's WAL. Its
// .partial data sizes are read apart from l's.
func markedListing(l *archive.WALListing) *archive.WALListing {
	mark := fileMarker()
	m := &archive.WALListing{Segments: markFiles(l.Segments, mark), Partials: markFiles(l.Partials, mark),
		Histories: markFiles(l.Histories, mark), StorageFailed: storageFailed}
	for _, f := range l.BackupHistories {
		m.BackupHistories = append(m.BackupHistories, mark(f))
	}
	return m
}

// fileMarker returns a function giving a copy of a WAL file read through a
// marking archive (marking), one per archive it is given.
func fileMarker() func(archive.WALFile) archive.WALFile {
	byArchive := map[*archive.Archive]*archive.Archive{}
	return func(f archive.WALFile) archive.WALFile {
		if f.Archive == nil {
			return f
		}
		m, ok := byArchive[f.Archive]
		if !ok {
			m = marking(f.Archive)
			byArchive[f.Archive] = m
		}
		f.Archive = m
		return f
	}
}

// markFiles returns files with mark applied to each.
func markFiles[K comparable](files map[K]archive.WALFile, mark func(archive.WALFile) archive.WALFile) map[K]archive.WALFile {
	out := make(map[K]archive.WALFile, len(files))
	for k, f := range files {
		out[k] = mark(f)
	}
	return out
}
