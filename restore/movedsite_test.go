package restore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_MovedFromSameLayoutNamesSite: site "new" moved from site "old"
// (its moved_from), each in its own local storage with the same prefix,
// as archive-copy into a new storage leaves them: every object of either
// has the same key in both. The backup and the WAL it needs are in the
// old site only. An object of it that is damaged or refused stopped the
// restore with an error naming its key alone, which does not tell the
// operator which storage holds the copy to fix. The error must name the
// site that holds it, as hoard verify does (b63c760).
func TestRun_MovedFromSameLayoutNamesSite(t *testing.T) {
	hist2 := []byte("1\t0/4000000\tno recovery target specified\n")
	fifo := testio.OddEntries[0]
	cases := []struct {
		name   string
		damage func(t *testing.T, f *fixture, oldDir string) string // returns the key the error names
	}{
		{"Chunk", func(t *testing.T, f *fixture, _ string) string {
			flipStored(t, f.a, f.chunks[0])
			return f.chunks[0]
		}},
		{"ControlObject", func(t *testing.T, f *fixture, _ string) string {
			// Cut short: its tar ends early.
			key := f.a.Layout.BackupKey(testBackup)
			storetest.Rewrite(t, f.a.Store, key, func(data []byte, _ storage.Metadata) []byte {
				return data[:len(data)/2]
			})
			return key
		}},
		{"WALChecked", func(t *testing.T, f *fixture, _ string) string {
			// Another segment's WAL under the name: its page address
			// is refused.
			key := f.a.Layout.WALKey("000000010000000000000003")
			f.put(t, key, waltest.Segment(t, "000000010000000000000002", f.info.SegmentSize(), 1), nil)
			return key
		}},
		{"WALStoredDamaged", func(t *testing.T, f *fixture, oldDir string) string {
			key := f.a.Layout.WALKey("000000010000000000000003")
			testio.ReplaceFile(t, filepath.Join(oldDir, filepath.FromSlash(key)), fifo.Make)
			return key
		}},
		{"History", func(t *testing.T, f *fixture, _ string) string {
			key := f.a.Layout.WALKey("00000002.history")
			pushFile(t, f.a, "00000002.history", hist2, 0)
			flipStored(t, f.a, key)
			return key
		}},
		{"HistoryStoredDamaged", func(t *testing.T, f *fixture, oldDir string) string {
			key := f.a.Layout.WALKey("00000002.history")
			f.put(t, key, hist2, nil)
			testio.ReplaceFile(t, filepath.Join(oldDir, filepath.FromSlash(key)), fifo.Make)
			return key
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldDir := t.TempDir()
			f := localFixture(t, oldDir)
			f.a.Site = "old"
			key := tc.damage(t, f, oldDir)
			a := archivetest.Local(t, t.TempDir(), f.a.Layout.Prefix, f.a.Codec)
			a.Site, a.MovedFrom = "new", []*archive.Archive{f.a}
			o := f.options(filepath.Join(t.TempDir(), "data"))
			o.Archive = a
			_, err := Run(context.Background(), o)
			if err == nil {
				t.Fatalf("restore with %s damaged in site old succeeded", key)
			}
			if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "site old") {
				t.Errorf("error %q does not name %s with its site, old", err, key)
			}
		})
	}
}
