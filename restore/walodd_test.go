package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
)

// localFixture is newFixture with its objects in a local store at dir.
func localFixture(t *testing.T, dir string) *fixture {
	t.Helper()
	f := newFixture(t, "basebackup", nil)
	local := archivetest.Local(t, dir, f.a.Layout.Prefix, f.a.Codec)
	archivetest.CopyAll(t, f.a.Store, local.Store)
	f.a.Store = local.Store
	return f
}

// TestRun_OddWALSegment: in local storage, the file of a WAL segment the
// restore needs is replaced, its .metadata sidecar kept, by something no
// read returns (a FIFO, a directory, a socket). The WAL listing passes
// it over, and restore's check before it writes anything called it "not
// archived" (or a gap's segment "missing") without naming the file that
// blocks it: it stops as before (the same error, the same gap), naming
// the object as stored damaged with what is there, as verify does.
func TestRun_OddWALSegment(t *testing.T) {
	for _, odd := range testio.OddEntries {
		for _, tc := range []struct {
			name string
			seg  string
			want error
		}{
			{"InBackup", "000000010000000000000003", ErrMissingWAL},
			{"Gap", "000000010000000000000004", ErrWALGap},
		} {
			t.Run(odd.Name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				f := localFixture(t, dir)
				for _, seg := range []string{"000000010000000000000004", "000000010000000000000005"} {
					f.put(t, f.a.Layout.WALKey(seg), waltest.Segment(t, seg, f.info.SegmentSize(), 1), nil)
				}
				key := f.a.Layout.WALKey(tc.seg)
				testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(key)), odd.Make)
				target := filepath.Join(t.TempDir(), "data")
				_, err := Run(context.Background(), f.options(target))
				if !errors.Is(err, tc.want) {
					t.Fatalf("Run = %v, want %v", err, tc.want)
				}
				if !strings.Contains(err.Error(), key+" is stored damaged") || !strings.Contains(err.Error(), odd.What) {
					t.Errorf("Run = %v, want it to name %s as stored damaged, saying %q", err, key, odd.What)
				}
				if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("target touched before the WAL check failed: %v", err)
				}
			})
		}
	}
}

// TestRun_OddWALSegmentStopAtGap: the gap after the backup's end is a
// segment stored damaged in local storage (a FIFO, a directory, a
// socket), and the restore accepts it (StopAtGap). What counts as the
// gap is unchanged, and Result.WALGap.Damaged names the object; the
// warning that the gap was accepted named only the gap's first and last
// segment, which the summary then called missing: it names the object as
// stored damaged, with what is there.
func TestRun_OddWALSegmentStopAtGap(t *testing.T) {
	for _, odd := range testio.OddEntries {
		t.Run(odd.Name, func(t *testing.T) {
			dir := t.TempDir()
			f := localFixture(t, dir)
			for _, seg := range []string{"000000010000000000000004", "000000010000000000000005"} {
				f.put(t, f.a.Layout.WALKey(seg), waltest.Segment(t, seg, f.info.SegmentSize(), 1), nil)
			}
			const gap = "000000010000000000000004"
			key := f.a.Layout.WALKey(gap)
			testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(key)), odd.Make)
			var logged bytes.Buffer
			o := f.options(filepath.Join(t.TempDir(), "data"))
			o.StopAtGap, o.Logger = true, zerolog.New(&logged)
			res, err := Run(context.Background(), o)
			if err != nil {
				t.Fatalf("Run with StopAtGap: %v", err)
			}
			g := res.WALGap
			if g == nil || g.First != gap || g.Last != gap || g.Next != "000000010000000000000005" {
				t.Fatalf("WALGap = %+v, want %s alone, then 000000010000000000000005", g, gap)
			}
			if len(g.Damaged) != 1 || g.Damaged[0].Key != key || !strings.Contains(g.Damaged[0].Err.Error(), odd.What) {
				t.Errorf("WALGap.Damaged = %v, want %s, saying %q", g.Damaged, key, odd.What)
			}
			var accepted string
			for _, line := range strings.Split(logged.String(), "\n") {
				if strings.Contains(line, "WAL gap accepted") {
					accepted = line
				}
			}
			if !strings.Contains(accepted, key) || !strings.Contains(accepted, odd.What) {
				t.Errorf("the gap's warning %q does not name %s as stored damaged, saying %q", accepted, key, odd.What)
			}
		})
	}
}
