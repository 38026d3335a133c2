package archive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// DefaultMaxHashChecks is how many archived segments Sync compares with
// the local copies by default (PGHoard's --max-hash-checks).
const DefaultMaxHashChecks = 100

// SyncOptions configure Archive.Sync.
type SyncOptions struct {
	PGData string // the cluster's data directory; WAL is read from its pg_wal
	// MaxHashChecks bounds how many archived segments, newest first, have
	// their hash metadata compared with the local file; 0:
	// DefaultMaxHashChecks, negative: none.
	MaxHashChecks int
	HashAlgorithm string // for pushes; "" is sha1
	// SystemID is the system identifier of the cluster of PGData (from
	// its global/pg_control), "" when not known: the sync starts from the
	// newest backup of that system (TrustedOfSystem), so that another
	// cluster's, copied from a site sharing the key pair and starting
	// further on, does not leave this cluster's segments unlooked at.
	SystemID string
	// PGVersion, when set, returns the server_version_num recorded as the
	// pushed files' pg-version (PushOptions.PGVersion). It is called once,
	// before the first push: a sync that pushes nothing asks nothing.
	PGVersion func(context.Context) int
	// Flushed, when not 0, is how far the server that writes PGData's
	// pg_wal has its WAL durable (pg_current_wal_flush_lsn() on a primary,
	// what a standby received or replayed), asked of it before the sync
	// (PGHoard's archive_sync asks the server for its position too). A
	// segment that ends at or before it is complete and stored; the one
	// it falls inside is the one being written, left out, and so is any
	// written after it; none when it is the start of a segment (an idle
	// server right after a WAL switch has not begun the next). 0: the
	// newest local segment is taken for the one being written.
	Flushed pglogrepl.LSN
	Logger  zerolog.Logger
}

// SyncResult is what Archive.Sync did and found.
type SyncResult struct {
	// Pushed are the segments and history files stored because the
	// archive lacked them.
	Pushed []string `json:"pushed"`
	// HashChecked counts the archived segments compared with the local
	// copies; Mismatches names those whose stored hash differs (left
	// alone: hoard never overwrites archived WAL).
	HashChecked int      `json:"hash_checked"`
	Mismatches  []string `json:"hash_mismatches"`
	// Newest is the newest complete local segment, Oldest the oldest one
	// looked at (the newest backup's start segment, or the oldest local).
	Newest string `json:"newest_local_segment"`
	Oldest string `json:"oldest_local_segment"`
	// InProgress is the local segment left out as the one the server is
	// writing ("" when pg_wal holds none). By the server's flush position
	// (Flushed) it is the segment that position falls inside; without it,
	// the newest local segment, which after a switch on an idle server may
	// be complete: a later run stores it once the server writes into the
	// next.
	InProgress string `json:"segment_in_progress,omitempty"`
	// Flushed is the server's flush position the sync went by
	// (SyncOptions.Flushed), "" when it took the newest local segment for
	// the one being written.
	Flushed string `json:"server_flushed_lsn,omitempty"`
	// Backup is the newest backup (of those whose metadata authenticates,
	// where any does, and of the cluster's system where it is known:
	// TrustedOfSystem), whose start bounds the sync; nil when the site has
	// none. The archive's WAL must be continuous from its start
	// (verify.CheckContinuity).
	Backup *BackupInfo `json:"-"`
}

// Sync is PGHoard's pghoard_archive_sync, run on the database host. It
// reads the local pg_wal and, from the newest complete segment back to the
// newest backup's start segment, stores each segment the archive lacks
// (PushWAL) and compares the stored hash of up to MaxHashChecks others with
// the local file. It stores the local history files the archive lacks.
// Whether the archive is then continuous from the newest backup's start
// (SyncResult.Backup) is verify's to check.
//
// The segment being written is the one the server's flush position
// (SyncOptions.Flushed) falls inside, on the newest local timeline: it is
// left out, and so is any after it. The newest local segment before that
// position is stored only when its WAL runs to its end or to a WAL switch
// (wal.RecordEnd): a copy whose WAL stops short is not complete, whatever
// a server says (a node that is another server of the same system, a
// primary ahead of this standby). Without a position, the segment being
// written is the newest local file, of the newest timeline, whose page
// header fits its name. An older timeline's segment at or after the
// newest local position (or the flush position, where that is before it)
// is left out. An older timeline's
// segment holding its switch point (by the local history files), partial,
// and its segments after it, off the path, are left out too. Files
// PostgreSQL recycled (renamed ahead for reuse, still holding old WAL)
// have headers that do not fit their names and are skipped.
func (a *Archive) Sync(ctx context.Context, o SyncOptions) (*SyncResult, error) {
	if o.PGData == "" {
		return nil, errors.New("archive sync: no data directory (pg_data_directory)")
	}
	maxChecks := o.MaxHashChecks
	if maxChecks == 0 {
		maxChecks = DefaultMaxHashChecks
	}
	log := o.Logger.With().Str("component", "archive-sync").Str("site", a.Site).Logger()
	walDir := filepath.Join(o.PGData, "pg_wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return nil, fmt.Errorf("read local WAL: %w", err)
	}
	type local struct {
		name string
		seg  wal.Segment
	}
	var segs []local
	var histories []string
	var segSize uint64
	for _, e := range entries {
		name := e.Name()
		switch {
		case wal.IsHistoryFile(name):
			histories = append(histories, name)
		case wal.IsSegmentName(name):
			h, err := wal.CheckSegmentFile(filepath.Join(walDir, name), "")
			if err != nil {
				continue // recycled, or not yet written
			}
			segSize = uint64(h.SegmentSize)
			s, err := wal.ParseSegmentName(name, segSize)
			if err != nil {
				continue
			}
			segs = append(segs, local{name, s})
		}
	}
	// Where each ancestor timeline ends, by the local history files: the
	// segment holding its switch point. That segment is partial on the
	// old timeline (PostgreSQL renames it .partial only when archiving is
	// on), and the old timeline's segments after it, streamed before a
	// promotion at an earlier point, are off the path, the newest of them
	// possibly half received: none is stored as a complete segment.
	ends := map[uint32]uint64{}
	for _, name := range histories {
		if segSize == 0 {
			break
		}
		tli, err := wal.ParseHistoryFileName(name)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(walDir, name))
		if err != nil {
			return nil, fmt.Errorf("read local history: %w", err)
		}
		h, err := wal.ParseHistory(tli, data)
		if err != nil {
			return nil, fmt.Errorf("local %s: %w (fix or remove it: PostgreSQL reads it too)", name, err)
		}
		for i := 0; i+1 < len(h); i++ {
			no := uint64(h[i+1].Begin) / segSize
			if end, ok := ends[h[i].Timeline]; !ok || no < end {
				ends[h[i].Timeline] = no
			}
		}
	}
	// The segment being written is the newest of the newest timeline: it
	// is left out, and so is any older timeline's segment at or after it
	// (off the path, possibly partial), where no history file says so.
	var current *local
	for i := range segs {
		if l := &segs[i]; current == nil || l.seg.Timeline > current.seg.Timeline ||
			l.seg.Timeline == current.seg.Timeline && l.seg.No > current.seg.No {
			current = l
		}
	}
	var inProgress, flushed string
	if current != nil {
		cur := current.seg
		// cut is the segment being written: on the current timeline it
		// and those after it are left out.
		cut := cur.No
		if o.Flushed != 0 {
			cut = uint64(o.Flushed) / segSize
			flushed = o.Flushed.String()
			if cur.No < cut {
				whole, err := walRunsToEnd(filepath.Join(walDir, current.name))
				if err != nil {
					return nil, err
				}
				if !whole {
					log.Warn().Str("segment", current.name).Str("lsn", flushed).
						Msg("left out as the segment being written: the server says its WAL is flushed past this segment, but the local copy's WAL stops before its end; check that the site's first node is the server whose pg_wal this is")
					cut, flushed = cur.No, ""
				}
			}
		}
		segs = slices.DeleteFunc(segs, func(l local) bool {
			end, ended := ends[l.seg.Timeline]
			switch {
			case l.seg.Timeline == cur.Timeline && l.seg.No == cut:
				inProgress = l.name
				return true
			case l.seg.Timeline == cur.Timeline && l.seg.No > cut:
				log.Info().Str("segment", l.name).Str("lsn", flushed).Msg("left out: after the server's flush position")
				return true
			case l.seg.Timeline != cur.Timeline && l.seg.No >= min(cut, cur.No) || ended && l.seg.No >= end:
				log.Info().Str("segment", l.name).Msg("left out: its timeline ends in or before it, so it is partial or off the current timeline")
				return true
			}
			return false
		})
	}
	// By position, then timeline.
	slices.SortFunc(segs, func(x, y local) int {
		return cmp.Or(cmp.Compare(x.seg.No, y.seg.No), cmp.Compare(x.seg.Timeline, y.seg.Timeline))
	})

	backups, err := a.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	res := &SyncResult{Pushed: []string{}, Mismatches: []string{}, InProgress: inProgress, Flushed: flushed}
	// The newest backup whose metadata authenticates where any does, of
	// this cluster's system: a planted backup, or another cluster's,
	// claiming to start far ahead would leave every local segment
	// unlooked at. With none, every local segment is looked at.
	if own := TrustedOfSystem(backups, o.SystemID); len(own) > 0 {
		res.Backup = own[len(own)-1]
	}
	var from uint64
	if res.Backup != nil {
		if s, err := res.Backup.StartSegment(); err == nil {
			from = s.No
		}
	}

	push := PushOptions{HashAlgorithm: o.HashAlgorithm}
	asked := o.PGVersion == nil
	pushOptions := func() PushOptions {
		if !asked {
			asked = true
			push.PGVersion = o.PGVersion(ctx)
		}
		return push
	}

	checks := 0
	for i := len(segs) - 1; i >= 0; i-- {
		l := segs[i]
		if l.seg.No < from {
			break
		}
		if res.Newest == "" {
			res.Newest = l.name
		}
		res.Oldest = l.name
		key := a.Layout.WALKey(l.name)
		st, err := a.Store.Stat(ctx, key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			pr, err := a.PushWAL(ctx, filepath.Join(walDir, l.name), pushOptions())
			if err != nil {
				return res, err
			}
			log.Info().Str("segment", l.name).Bool("uploaded", pr.Uploaded).Msg("stored missing segment")
			res.Pushed = append(res.Pushed, l.name)
		case err != nil:
			return res, fmt.Errorf("stat %s: %w", key, err)
		case maxChecks > 0 && checks < maxChecks:
			checks++
			same, err := sameHash(filepath.Join(walDir, l.name), st.Metadata)
			if err != nil {
				return res, err
			}
			if !same {
				log.Error().Str("segment", l.name).Msg("archived segment differs from the local one")
				res.Mismatches = append(res.Mismatches, l.name)
			}
		}
	}
	res.HashChecked = checks

	slices.Sort(histories)
	for _, name := range histories {
		key := a.Layout.WALKey(name)
		_, err := a.Store.Stat(ctx, key)
		if err == nil {
			continue
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return res, fmt.Errorf("stat %s: %w", key, err)
		}
		if _, err := a.PushWAL(ctx, filepath.Join(walDir, name), pushOptions()); err != nil {
			return res, err
		}
		log.Info().Str("file", name).Msg("stored missing timeline history")
		res.Pushed = append(res.Pushed, name)
	}

	return res, nil
}

// walRunsToEnd reports whether the WAL in the segment file at path runs
// to the segment's end, or to a WAL switch (the rest of a switched
// segment holds no WAL), as recovery reads it (wal.RecordEnd). A copy
// cut short, zeros or a recycled file's old pages after its WAL, does
// not.
func walRunsToEnd(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var rec wal.RecordEnd
	if _, err := io.Copy(&rec, f); err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return !rec.Stopped() || rec.Switched(), nil
}

// sameHash compares the local file's digest with the stored hash
// metadata. An object without a hash counts as the same: there is nothing
// to compare.
func sameHash(path string, md map[string]string) (bool, error) {
	alg, want := MetadataHash(md)
	if want == "" {
		return true, nil
	}
	h, err := NewHash(alg)
	if err != nil {
		return false, err
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("hash %s: %w", path, err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)) == want, nil
}
