package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// failingChunk is a Store whose reads of key fail with err: Stat and
// Open at once, or, with cut, Open's reader after half the object (a
// download cut in the middle, as a network store reports it).
type failingChunk struct {
	storage.Store
	key string
	err error
	cut bool
}

func (s failingChunk) Stat(ctx context.Context, key string) (storage.Object, error) {
	if key == s.key && !s.cut {
		return storage.Object{}, fmt.Errorf("stat %s: %w", key, s.err)
	}
	return s.Store.Stat(ctx, key)
}

func (s failingChunk) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, o, err := s.Store.Open(ctx, key)
	if key != s.key || err != nil || !s.cut {
		return rc, o, err
	}
	return storetest.CutHalf(rc, o, key, s.err), o, nil
}

// TestRun_ErrChunkUnchecked: a chunk the storage fails to answer for (a
// HEAD answered 503 past the retries, access denied; with --full, its
// download cut in the middle) ends verify with the storage's error,
// naming the chunk and saying that it could not be checked: no report
// calls the backup broken, since nothing was found wrong with it. A
// chunk the storage answers "not found" for is still reported missing.
// Before, every such failure made the backup broken, the report naming
// a 503 as the damage.
func TestRun_ErrChunkUnchecked(t *testing.T) {
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: %w", "b", storage.ErrPermanent)
	for _, c := range []struct {
		name string
		err  error
		cut  bool
		full bool
	}{
		{"Unavailable", unavailable, false, false},
		{"Denied", denied, false, false},
		{"UnavailableFull", unavailable, false, true},
		{"CutFull", io.ErrUnexpectedEOF, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := soundArchive(t)
			key := a.Layout.ChunkKey(archive.ChunkFilename("b1", 1))
			a.Store = failingChunk{Store: a.Store, key: key, err: c.err, cut: c.cut}
			rep, err := Run(context.Background(), Options{Archive: a, Full: c.full, Logger: zerolog.Nop()})
			if err == nil {
				t.Fatalf("verify: no error; report OK=%v, problems:\n%s", rep.OK(), problems(rep))
			}
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "could not be checked") {
				t.Fatalf("verify: %v, want the storage's error naming %s, saying it could not be checked", err, key)
			}
		})
	}
}

// failingOpen is a Store whose downloads of key fail with err: Open at
// once, or, with cut, Open's reader after half the object; with skip
// set, only after *skip downloads of key succeeded.
type failingOpen struct {
	storage.Store
	key  string
	err  error
	cut  bool
	skip *atomic.Int32
}

func (s failingOpen) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if key == s.key && s.skip != nil && s.skip.Add(-1) >= 0 {
		return s.Store.Open(ctx, key)
	}
	if key == s.key && !s.cut {
		return nil, storage.Object{}, fmt.Errorf("open %s: %w", key, s.err)
	}
	rc, o, err := s.Store.Open(ctx, key)
	if key != s.key || err != nil {
		return rc, o, err
	}
	return storetest.CutHalf(rc, o, key, s.err), o, nil
}

// TestRun_ErrControlUnchecked: a backup's control object, or with --full
// a WAL segment or timeline history file, that the storage fails to send (a GET answered 503 past
// the retries, access denied, a download cut in the middle) ends verify
// with the storage's error, naming the object and saying that it could
// not be checked, as TestRun_ErrChunkUnchecked for a chunk. Before, the
// backup was reported broken, or the segment bad, the storage's error
// given as the damage. A control object or segment the storage answers
// "not found" for, or that does not decode, is still reported.
func TestRun_ErrControlUnchecked(t *testing.T) {
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: %w", "b", storage.ErrPermanent)
	control := func(a *archive.Archive) string { return a.Layout.BackupKey("b1") }
	segment := func(a *archive.Archive) string {
		return a.Layout.WALKey(wal.Segment{Timeline: 1, No: 2}.Name(segSize))
	}
	history := func(a *archive.Archive) string {
		putHistory(t, a, 2, "1\t0/5000000\tno recovery target specified\n")
		return a.Layout.WALKey(wal.HistoryFileName(2))
	}
	pgmControl := func(a *archive.Archive) string {
		files := pgManifestRead()
		b := hostile.Backup{Name: "b2", PGManifest: true,
			Control: []hostile.Member{{Name: archive.ControlPGManifest, Body: hostile.PGManifestJSON(t, files)}},
			Chunks:  [][]hostile.Member{{{Name: "pgdata/base/1/2222", Body: files["base/1/2222"]}}}, PGControl: files["global/pg_control"]}
		hostile.Put(t, a, b)
		return a.Layout.BackupKey(b.Name)
	}
	for _, c := range []struct {
		name string
		key  func(*archive.Archive) string
		err  error
		cut  bool
		full bool
		skip int32 // downloads of key that succeed first
	}{
		{"ControlUnavailable", control, unavailable, false, false, 0},
		{"ControlDenied", control, denied, false, false, 0},
		{"ControlCut", control, io.ErrUnexpectedEOF, true, false, 0},
		{"ControlUnavailableFull", control, unavailable, false, true, 0},
		{"ControlCutFull", control, io.ErrUnexpectedEOF, true, true, 0},
		{"SegmentUnavailableFull", segment, unavailable, false, true, 0},
		{"SegmentDeniedFull", segment, denied, false, true, 0},
		{"SegmentCutFull", segment, io.ErrUnexpectedEOF, true, true, 0},
		{"HistoryUnavailableFull", history, unavailable, false, true, 0},
		{"HistoryCutFull", history, io.ErrUnexpectedEOF, true, true, 0},
		{"HistoryUnavailable", history, unavailable, false, false, 0},
		// With --full a backup_manifest's backup's control object is
		// read again, when the backup's first chunk is checked.
		{"ControlAgainUnavailableFull", pgmControl, unavailable, false, true, 1},
		{"ControlAgainCutFull", pgmControl, io.ErrUnexpectedEOF, true, true, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := soundArchive(t)
			key := c.key(a)
			skip := new(atomic.Int32)
			skip.Store(c.skip)
			a.Store = failingOpen{Store: a.Store, key: key, err: c.err, cut: c.cut, skip: skip}
			rep, err := Run(context.Background(), Options{Archive: a, Full: c.full, Logger: zerolog.Nop()})
			if err == nil {
				t.Fatalf("verify: no error; report OK=%v, problems:\n%s", rep.OK(), problems(rep))
			}
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "could not be checked") {
				t.Fatalf("verify: %v, want the storage's error naming %s, saying it could not be checked", err, key)
			}
		})
	}
	for _, c := range []struct {
		name string
		key  func(*archive.Archive) string
		full bool
	}{{"ControlNotFound", control, false}, {"SegmentNotFoundFull", segment, true}, {"HistoryNotFoundFull", history, true}} {
		t.Run(c.name, func(t *testing.T) {
			a := soundArchive(t)
			key := c.key(a)
			a.Store = failingOpen{Store: a.Store, key: key, err: storage.ErrNotFound}
			rep, err := Run(context.Background(), Options{Archive: a, Full: c.full, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatalf("verify: %v, want a report", err)
			}
			if rep.OK() || !strings.Contains(problems(rep), key) {
				t.Fatalf("report OK=%v, problems:\n%s\nwant %s reported", rep.OK(), problems(rep), key)
			}
		})
	}
}
