package archive

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// TestSegmentEnd_Real archives real segments of every installed major
// version (1 MiB): switched ones (pg_switch_wal), full ones, records that
// span pages and segments, full-page images. copyChecked accepts each as
// the complete segment it is (WAL written after crash recovery, timeline
// 2's first segment included), and refuses each one's earlier copy, its WAL
// cut in the middle and zeros after, as ErrTruncatedSegment, and its
// copies cut inside its last page (cutLastPage).
func TestSegmentEnd_Real(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
		c.Exec(t, "create table r (id int, pad text)")
		c.Exec(t, "insert into r select g, repeat('x', 300) from generate_series(1, 2000) g")
		c.Exec(t, "checkpoint")
		c.Exec(t, "update r set id = id + 1") // full-page images
		c.Exec(t, "select pg_switch_wal()")
		// A record across pages, then one across segments.
		c.Exec(t, "select pg_logical_emit_message(false, 'p', repeat('y', 30000))")
		c.Exec(t, "select pg_logical_emit_message(false, 'p', (select string_agg(md5(g::text), '') from generate_series(1, 60000) g))")
		// WAL after crash recovery, then a timeline's first segment: the
		// cluster is killed, recovers, and is promoted from standby mode,
		// so timeline 2 starts inside a segment, whose WAL before the
		// switch is timeline 1's.
		c.Exec(t, "insert into r select g, repeat('z', 300) from generate_series(1, 1000) g")
		c.Kill(t)
		c.Start(t)
		c.Exec(t, "insert into r select g, repeat('w', 300) from generate_series(1, 1000) g")
		c.NewTimeline(t)
		c.Exec(t, "insert into r select g, repeat('v', 300) from generate_series(1, 1000) g")
		c.SwitchArchived(t, walDir)

		ents, err := os.ReadDir(walDir)
		if err != nil {
			t.Fatal(err)
		}
		var switched, full, lastPage, tli2, partials int
		for _, e := range ents {
			name := e.Name()
			if strings.HasSuffix(name, ".partial") { // timeline 1's last, archived at the promotion
				data, err := os.ReadFile(filepath.Join(walDir, name))
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := copyChecked(io.Discard, bytes.NewReader(data), nil, name, name); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				partials++
			}
			if !wal.IsSegmentName(name) {
				continue
			}
			if wal.SegmentTimeline(name) == 2 {
				tli2++
			}
			data, err := os.ReadFile(filepath.Join(walDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := copyChecked(io.Discard, bytes.NewReader(data), nil, name, name); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			var end segmentEnd
			_, _ = end.Write(data)
			if end.rec.Switched() {
				switched++
			} else {
				full++
			}
			cut := bytes.Clone(data)
			at := len(bytes.TrimRight(data, "\x00")) / 2
			clear(cut[at:])
			if _, _, err := copyChecked(io.Discard, bytes.NewReader(cut), nil, name, name); !errors.Is(err, ErrTruncatedSegment) {
				t.Errorf("%s cut at %d: %v, want %v", name, at, err, ErrTruncatedSegment)
			}
			// The same copy as a .partial is what it is.
			if _, _, err := copyChecked(io.Discard, bytes.NewReader(cut), nil, name+".partial", name+".partial"); err != nil {
				t.Errorf("%s.partial cut at %d: %v", name, at, err)
			}
			lastPage += cutLastPage(t, name, data)
		}
		if switched == 0 || full == 0 {
			t.Errorf("%d switched and %d full segments archived, want some of both", switched, full)
		}
		if tli2 == 0 || partials == 0 {
			t.Errorf("%d segments of timeline 2 and %d .partial files archived, want some of both", tli2, partials)
		}
		if lastPage == 0 {
			t.Errorf("no cut inside a last page refused: no segment's last page ends a record")
		}
	})
}

// cutLastPage cuts data, the whole segment name, at many offsets inside
// its last page and at each record boundary there, zeros after: each copy
// that loses WAL of a record ending in the segment must be refused as
// ErrTruncatedSegment. It returns how many it checked. A cut after the
// start of the last record, one that goes on in the next segment, is not
// checked: such a copy is not told apart (segmentEnd.check).
func cutLastPage(t *testing.T, name string, data []byte) int {
	t.Helper()
	h, err := wal.DecodePageHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	last := len(data) - int(h.BlockSize)
	// The record boundaries inside the last page: where the walk's end
	// moves, a byte at a time. WAL up to whole's end is in records that
	// end inside the segment.
	var whole wal.RecordEnd
	_, _ = whole.Write(data[:last])
	cuts := map[int]bool{}
	for i := last; i < len(data); i++ {
		_, _ = whole.Write(data[i : i+1])
		if e := int(whole.End()); e >= last && e < len(data) {
			cuts[e] = true
		}
	}
	for at := last; at < len(data); at += 97 {
		cuts[at] = true
	}
	var n int
	for _, at := range slices.Sorted(maps.Keys(cuts)) {
		// A cut in the record that continues in the next segment, or one
		// that clears only zeros, is not checked; one at the start of a
		// header held whole by this segment clears its length.
		if at > int(whole.End()) || at == int(whole.End()) && at+24 > len(data) || len(bytes.TrimRight(data[at:], "\x00")) == 0 {
			continue
		}
		cut := bytes.Clone(data)
		clear(cut[at:])
		if _, _, err := copyChecked(io.Discard, bytes.NewReader(cut), nil, name, name); !errors.Is(err, ErrTruncatedSegment) {
			t.Errorf("%s cut at %d, in its last page (from %d; WAL in whole records to %d): %v, want %v", name, at, last, whole.End(), err, ErrTruncatedSegment)
		}
		n++
	}
	return n
}
