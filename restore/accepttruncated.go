package restore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// ErrBadAccept is wrapped by Run's error for a segment accepted as
// truncated (WALFetch.AcceptTruncated) that wal-fetch would not refuse
// as truncated: not in the archive, or stored whole. Accepting it would
// change nothing, while the operator believes a segment is taken care of.
var ErrBadAccept = errors.New("not a segment wal-fetch refuses as truncated")

// AcceptedSegment is a segment the restore_command's wal-fetch delivers
// although it is refused as truncated: recovery ends at End, where its
// WAL does.
type AcceptedSegment struct {
	Segment string
	End     pglogrepl.LSN
}

// Accepted returns the segments the command passes to wal-fetch as
// --accept-truncated.
func (f *WALFetch) Accepted() []string { return f.accept }

// checkAccepted finds, before anything is written, where the WAL of each
// segment in segs (NAME, or NAME@LSN where the operator names the end
// too) ends: each must be stored and refused as truncated
// (archive.Archive.TruncatedEnd), at LSN where one is named, or the
// restore stops with ErrBadAccept.
func checkAccepted(ctx context.Context, a *archive.Archive, segs []string) ([]AcceptedSegment, error) {
	var acc []AcceptedSegment
	for _, s := range segs {
		seg, want, err := archive.ParseAcceptTruncated(s)
		if err != nil {
			return nil, fmt.Errorf("accept truncated %v: %w", err, ErrBadAccept)
		}
		t, err := a.TruncatedEnd(ctx, seg)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil, fmt.Errorf("accept truncated %s: %v (a typo, or a segment of another timeline?): %w", seg, err, ErrBadAccept)
		case errors.Is(err, archive.ErrNotTruncated):
			return nil, fmt.Errorf("accept truncated %s: %v: wal-fetch delivers it without accepting it: %w", seg, err, ErrBadAccept)
		case err != nil:
			return nil, fmt.Errorf("accept truncated %s: %w", seg, err)
		case want != 0 && t.End != want:
			return nil, fmt.Errorf("accept truncated %s: its WAL ends at %s, not at %s: %w", s, t.End, want, ErrBadAccept)
		}
		acc = append(acc, AcceptedSegment{Segment: seg, End: t.End})
	}
	return acc, nil
}

// pinAccepted makes f pass each segment of acc to wal-fetch with the end
// the restore read (--accept-truncated NAME@LSN): a copy of the segment
// cut elsewhere, put in its place after this check (an earlier copy the
// storage writer kept), is then refused and recovery stops, rather than
// end earlier than the summary says.
func (f *WALFetch) pinAccepted(acc []AcceptedSegment) {
	f.accept = f.accept[:0]
	for _, a := range acc {
		f.accept = append(f.accept, a.Segment+"@"+a.End.String())
	}
}
