package archive

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// TestSegmentEnd_Real archives real segments of every installed major
// version (1 MiB): switched ones (pg_switch_wal), full ones, records that
// span pages and segments, full-page images. copyChecked accepts each as
// the complete segment it is, and refuses each one's earlier copy, its WAL
// cut in the middle and zeros after, as ErrTruncatedSegment.
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
		c.SwitchArchived(t, walDir)

		ents, err := os.ReadDir(walDir)
		if err != nil {
			t.Fatal(err)
		}
		var switched, full int
		for _, e := range ents {
			name := e.Name()
			if !wal.IsSegmentName(name) {
				continue
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
		}
		if switched == 0 || full == 0 {
			t.Errorf("%d switched and %d full segments archived, want some of both", switched, full)
		}
	})
}
