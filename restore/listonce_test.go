package restore

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// TestRun_ListsWALOnce: a restore lists the site's xlog/ once, for its
// check that the backup's WAL is stored, its .partial tail and the
// damaged entries it names, and, with --target-name, for the scan for
// the restore point too. In a site kept for years that folder holds
// hundreds of thousands of segments: each listing is hundreds of
// requests and seconds. Before, the check listed it twice: once for the
// segments (listWAL) and once for the rest (ListStoredWAL); the scan
// for a restore point once more (findRestorePoint).
func TestRun_ListsWALOnce(t *testing.T) {
	const name = "2026-01-02_03-00_0"
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"Backup", Options{Backup: name}},
		{"TargetName", Options{Target: Target{Name: "before_upgrade"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := newChainFiles().parent
			maps.DeleteFunc(files, func(k string, _ string) bool { return strings.HasPrefix(k, "pg_tblspc/") })
			a := hostileArchive(t)
			hostile.Put(t, a, chainBackup(t, name, "", files, files, nil))
			if tc.o.Target.Name != "" {
				// The restore point, in the segment after the backup's.
				seg := wal.Segment{Timeline: 1, No: 4}.Name(hostile.SegmentSize)
				w := waltest.NewWriter(hostile.SegmentSize, 8192, 1, 4*hostile.SegmentSize)
				w.Fill(4*hostile.SegmentSize + hostile.SegmentSize/2)
				w.RestorePoint(tc.o.Target.Name)
				data := w.Segments()[0]
				if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(seg), bytes.NewReader(data), int64(len(data)), nil); err != nil {
					t.Fatal(err)
				}
			}
			st := &storetest.Counter{Store: a.Store}
			a.Store = st
			e := hostile.NewEnv(t)
			o := tc.o
			o.Archive, o.TargetDir, o.RestoreCommand, o.Logger = a, e.Target(), "hoard wal-fetch %f %p", zerolog.Nop()
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatalf("restore of %s: %v", name, err)
			}
			if got, want := st.Lists(a.Layout.Dir(archive.XLogDir)), 1; got != want {
				t.Errorf("restore listed %s %d times, want %d", a.Layout.Dir(archive.XLogDir), got, want)
			}
		})
	}
}
