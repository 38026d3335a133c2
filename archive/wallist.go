package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// WALFile is a stored WAL file: a segment, .partial or .backup file under
// xlog/, or a .history file under timeline/.
type WALFile struct {
	Name string // file name, as PostgreSQL names it
	Key  string // the object's key in Archive.Store
	Size int64  // stored bytes
	// Modified is when the store says the object was written.
	Modified time.Time
	// Archive is the archive holding the file: the one listed, or one of
	// the sites it moved from.
	Archive *Archive
}

// ListWAL lists the files directly under xlog/ of a and of every site it
// moved from (a.MovedFrom): segments, .partial and .backup files (callers
// pick by name, with wal.IsSegmentName and friends); objects of other
// names are passed over (listDir). Sites come in the order wal-fetch
// searches them, a first; a file stored by several sites is listed once
// for each, in that order.
func (a *Archive) ListWAL(ctx context.Context) ([]WALFile, error) {
	files, _, err := a.listWAL(ctx)
	return files, err
}

// DamagedWAL is a file under xlog/ (or a history file under timeline/)
// stored in a state no read returns: a
// local store lists it with storage.Object.Damaged (a FIFO, a socket or a
// directory under its name, its .metadata sidecar kept). It is not stored
// WAL, and ListWAL passes it over, but it is not missing either: wal-fetch
// of its name fails with the store's error, naming it, rather than look
// in the next site.
type DamagedWAL struct {
	WALFile
	Err error // the store's Object.Damaged: what is there, and what to do
}

// listWAL is ListWAL, and the damaged entries wal-fetch would read first
// for their name (DamagedWAL), by name: those no site before the one
// holding it stores a readable copy of.
func (a *Archive) listWAL(ctx context.Context) ([]WALFile, map[string]DamagedWAL, error) {
	var out []WALFile
	var damaged map[string]DamagedWAL
	order := map[*Archive]int{}
	for i, s := range a.sites() {
		order[s] = i
		files, err := s.listDirDamaged(ctx, XLogDir, func(d DamagedWAL) {
			if _, seen := damaged[d.Name]; !seen {
				if damaged == nil {
					damaged = map[string]DamagedWAL{}
				}
				damaged[d.Name] = d
			}
		})
		if err != nil {
			return nil, nil, fmt.Errorf("list WAL of site %s: %w", s.Site, err)
		}
		out = append(out, files...)
	}
	// A readable copy in a site searched before the damaged one is what
	// wal-fetch delivers.
	for _, f := range out {
		if d, ok := damaged[f.Name]; ok && order[f.Archive] < order[d.Archive] {
			delete(damaged, f.Name)
		}
	}
	return out, damaged, nil
}

// ListSegments lists the complete segments stored directly under a's own
// xlog/, not the sites it moved from: what the WAL receiver's hole check
// compares the segments it receives with.
func (a *Archive) ListSegments(ctx context.Context) ([]string, error) {
	files, err := a.listDir(ctx, XLogDir)
	if err != nil {
		return nil, fmt.Errorf("list WAL of site %s: %w", a.Site, err)
	}
	var names []string
	for _, f := range files {
		if wal.IsSegmentName(f.Name) {
			names = append(names, f.Name)
		}
	}
	return names, nil
}

// ListHistories returns the timelines whose history file is stored in a
// or a site it moved from, each with the copy wal-fetch reads: the first
// site holding it, in the order a, a.MovedFrom.
func (a *Archive) ListHistories(ctx context.Context) (map[uint32]WALFile, error) {
	out, _, err := a.listHistories(ctx)
	return out, err
}

// ListStoredHistories is ListHistories, and the history files stored
// damaged that wal-fetch reads first for their name (listHistories), by
// name: where a timeline is in both, a read of its history file meets
// the damaged entry, and wal-fetch fails with the store's error.
func (a *Archive) ListStoredHistories(ctx context.Context) (map[uint32]WALFile, map[string]DamagedWAL, error) {
	return a.listHistories(ctx)
}

// listHistories is ListHistories, and the history files stored damaged
// (DamagedWAL: a local store's FIFO, socket or directory under the name)
// that wal-fetch would read first for their name, by name: those no
// site before the one holding it stores a readable copy of.
func (a *Archive) listHistories(ctx context.Context) (map[uint32]WALFile, map[string]DamagedWAL, error) {
	out := map[uint32]WALFile{}
	var damaged map[string]DamagedWAL
	for _, s := range a.sites() {
		files, err := s.listDirDamaged(ctx, TimelineDir, func(d DamagedWAL) {
			tli, err := wal.ParseHistoryFileName(d.Name)
			if _, readable := out[tli]; err != nil || readable {
				return // a site searched before holds a readable copy
			}
			if _, seen := damaged[d.Name]; !seen {
				if damaged == nil {
					damaged = map[string]DamagedWAL{}
				}
				damaged[d.Name] = d
			}
		})
		if err != nil {
			return nil, nil, fmt.Errorf("list timeline histories of site %s: %w", s.Site, err)
		}
		for _, f := range files {
			tli, err := wal.ParseHistoryFileName(f.Name)
			if _, seen := out[tli]; err == nil && !seen {
				out[tli] = f
			}
		}
	}
	return out, damaged, nil
}

// SegmentIndex maps the complete segments among files (as ListWAL returns
// them) to the copy wal-fetch reads: the first listed.
func SegmentIndex(files []WALFile) map[string]WALFile {
	out := map[string]WALFile{}
	for _, f := range files {
		if _, seen := out[f.Name]; !seen && wal.IsSegmentName(f.Name) {
			out[f.Name] = f
		}
	}
	return out
}

// listDir lists the objects directly under one of a's folders (not in
// folders below it) named as a WAL file is (walKind): a segment,
// .partial, .history or .backup file. No reader takes any other name, and
// someone who can write to the bucket could store millions of them, with
// names up to the storage's limit (1024 bytes on S3), which the listing
// would otherwise hold for as long as it is used. An object a local
// store lists as Damaged (its file a FIFO, a directory or a socket) is
// passed over too: no read returns it,
// so it is not stored WAL (nothing retention deletes; verify names it
// from WALListing.Damaged); a wal-fetch of its name fails with the
// store's error, naming it.
func (a *Archive) listDir(ctx context.Context, dir string) ([]WALFile, error) {
	return a.listDirDamaged(ctx, dir, nil)
}

// listDirDamaged is listDir, which gives damaged (when not nil) each
// object of a WAL file's name it passes over as damaged.
func (a *Archive) listDirDamaged(ctx context.Context, dir string, damaged func(DamagedWAL)) ([]WALFile, error) {
	prefix := a.Layout.Dir(dir)
	var out []WALFile
	err := a.Store.List(ctx, prefix, func(o storage.Object) error {
		name := strings.TrimPrefix(o.Key, prefix)
		_, _, ok := walKind(name)
		f := WALFile{Name: name, Key: o.Key, Size: o.Size, Modified: o.Modified, Archive: a}
		switch {
		case ok && o.Damaged == nil:
			out = append(out, f)
		case ok && damaged != nil:
			damaged(DamagedWAL{WALFile: f, Err: o.Damaged})
		}
		return nil
	})
	return out, err
}

// Open opens f in the archive holding it and decodes it, as Codec.Open
// does.
func (f WALFile) Open(ctx context.Context) (io.ReadCloser, storage.Metadata, error) {
	return f.Archive.Codec.Open(ctx, f.Archive.Store, f.Key)
}

// ReadHistory reads and parses f, a timeline history file (as
// ListHistories returns them), after checking its bytes against its hash
// and that hoard stored it under its name for the cluster whose system
// identifier is system (0: not known, not checked; checkHistory).
func (f WALFile) ReadHistory(ctx context.Context, system uint64) (wal.History, error) {
	tli, err := wal.ParseHistoryFileName(f.Name)
	if err != nil {
		return nil, err
	}
	rc, md, err := f.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", f.Name, err)
	}
	defer rc.Close()
	var data bytes.Buffer
	if _, _, err := copyChecked(&data, rc, md, f.Key, f.Name); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Key, err)
	}
	if err := f.Archive.checkHistory(ctx, f.Key, f.Name, md, system); err != nil {
		return nil, err
	}
	return wal.ParseHistory(tli, data.Bytes())
}

// Check decodes f to its end, keeping nothing, and checks it as FetchWAL
// does before it delivers a file: the codec's integrity checks, the bytes
// against the hash metadata (an unknown hash algorithm is an error), and
// a segment's or .partial file's page header against its name and size,
// and, when its first page is on an older timeline than its name's,
// against the name's timeline history (in the archive holding f or a site
// it moved from); a history file must have been stored by hoard under its
// name (checkHistory).
func (f WALFile) Check(ctx context.Context) error { return f.CheckSystem(ctx, 0) }

// CheckSystem is Check that also refuses, as FetchWAL with
// FetchOptions.SystemID does, a segment or .partial whose first page
// names another system identifier than systemID (0: not checked), and a
// history file signed for another system.
func (f WALFile) CheckSystem(ctx context.Context, systemID uint64) error {
	rc, md, err := f.Open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	h, pages, err := copyChecked(io.Discard, rc, md, f.Key, f.Name)
	if err = f.Archive.timelineEnd(ctx, f.Name, h, err); err != nil {
		return err
	}
	if wal.IsHistoryFile(f.Name) {
		return f.Archive.checkHistory(ctx, f.Key, f.Name, md, systemID)
	}
	if err := checkSystemID(f.Name, h, systemID); err != nil {
		return err
	}
	return f.Archive.checkTimelineStart(ctx, f.Name, h, pages, systemID)
}
