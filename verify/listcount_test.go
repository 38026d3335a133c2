package verify

import (
	"context"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestRun_ListsOncePerRun: hoard verify and the daemon's check of the
// kept backups' WAL (CheckContinuityOf) list each folder of the site a
// number of times that does not grow with its backups: each LIST of a
// bucket is a request (and, on S3, a charge), and a site keeps hundreds
// of backups. Before, both listed timeline/ again for each backup, twice
// (the recovery path, then its damaged history files): 601 listings for
// 300 backups, each a request to the storage. And where the backups'
// timeline has a later one stored and their database system is known
// (after a failover), both listed timeline/ and asked for each later
// history file by key (Stat, its metadata checked for another system's)
// again for each backup: 21 listings and 20 Stats for 20 backups. And
// where a later timeline's history file is another system's (after a
// pg_upgrade into the same site: OtherSystemAbove), both listed xlog/
// again for each backup to look for the system's own WAL behind it
// (Archive.IgnoreOtherHistory): 21 listings for 20 backups.
func TestRun_ListsOncePerRun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeline bool
		system   string // of the backups: "" none recorded
		upgrade  bool   // timeline 2's history file is another system's (pg_upgrade into the site)
	}{{"OneTimeline", false, "", false}, {"TwoTimelines", true, "", false}, {"TwoTimelinesKnownSystem", true, "7", false},
		{"OtherSystemAbove", false, "7", true}} {
		t.Run(tc.name, func(t *testing.T) {
			st := &storetest.Counter{Store: storage.NewMem()}
			a := archivetest.New(t, st, &archive.Codec{Compression: compress.Zstd})
			last := uint64(2 + 20*3)
			for i := range 20 {
				start := uint64(2 + i*3)
				putBackupOf(t, a, fmt.Sprintf("b%02d", i), 1, start, start+1, t0.Add(time.Duration(i)*time.Hour), tc.system)
			}
			putSegments(t, a, 1, 2, last)
			if tc.upgrade {
				// The old cluster (system 8) had reached timeline 2;
				// the upgraded one (7) has no WAL there.
				h := "1\t0/1000000\tno recovery target specified\n"
				if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(wal.HistoryFileName(2)), strings.NewReader(h), int64(len(h)), storage.Metadata{archive.MetaSystemID: "8"}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.timeline {
				// Promoted in the segment after the last on timeline 1.
				putHistory(t, a, 2, fmt.Sprintf("1\t0/%X\tno recovery target specified\n", (last+1)*segSize))
				putSegments(t, a, 2, last+1, last+2)
			}
			st.Reset()
			rep := run(t, a, false)
			if !rep.OK() {
				t.Fatalf("verify: %s", problems(rep))
			}
			lists, stats := st.Counts()
			for prefix, n := range lists {
				if n > 2 {
					t.Errorf("verify of 20 backups listed %s %d times, want at most 2", prefix, n)
				}
			}
			for dir, n := range stats {
				if path.Base(dir) == archive.TimelineDir && n > 2 {
					t.Errorf("verify of 20 backups asked for %d objects of %s by key (Stat), want at most 2", n, dir)
				}
			}
			bs, err := a.ListBackups(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st.Reset()
			if _, err := CheckContinuityOf(context.Background(), a, bs); err != nil {
				t.Fatal(err)
			}
			lists, stats = st.Counts()
			for prefix, n := range lists {
				if n > 2 {
					t.Errorf("CheckContinuityOf of 20 backups listed %s %d times, want at most 2", prefix, n)
				}
			}
			for dir, n := range stats {
				if path.Base(dir) == archive.TimelineDir && n > 2 {
					t.Errorf("CheckContinuityOf of 20 backups asked for %d objects of %s by key (Stat), want at most 2", n, dir)
				}
			}
		})
	}
}
