package verify

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// TestRun_OddWALSegment: in local storage, the file of a WAL segment a
// backup needs is replaced, its .metadata sidecar kept, by something no
// read returns (a FIFO, a directory, a socket: someone who can write the
// storage directory, a mistake by hand, a damaged file system). The
// local store lists it as damaged and the WAL listing passes it over, so
// verify showed an unnamed gap, "missing": it names the segment as stored
// damaged, with what is there, in the gap's line and in the archive's
// problems, for a segment between the backup's start and end (broken) and
// after its end (limited), quick and full; nothing waits for a FIFO's
// writer.
func TestRun_OddWALSegment(t *testing.T) {
	for _, odd := range testio.OddEntries {
		for _, tc := range []struct {
			name   string
			no     uint64
			status string
			where  string
		}{
			{"InBackup", 3, StatusBroken, "between the backup's start and end"},
			{"AfterEnd", 5, StatusLimited, "after the backup's end"},
		} {
			t.Run(odd.Name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				a := archivetest.Local(t, dir, "site", &archive.Codec{Compression: compress.Zstd})
				a.Site = "site"
				putBackup(t, a, "b1", 1, 2, 4, t0)
				putSegments(t, a, 1, 2, 6)
				testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(a.Layout.WALKey(seg(1, tc.no)))), odd.Make)
				for _, full := range []bool{false, true} {
					rep := run(t, a, full)
					b := rep.Backups[0]
					if rep.OK() || b.Status != tc.status || len(b.Gaps) != 1 || b.Gaps[0].First != seg(1, tc.no) {
						t.Fatalf("full=%v: OK=%v status %s gaps %+v, want %s and the gap %s\n%s", full, rep.OK(), b.Status, b.Gaps, tc.status, seg(1, tc.no), problems(rep))
					}
					gap := strings.Join(b.Problems, "\n")
					if !strings.Contains(gap, "WAL: "+seg(1, tc.no)+" stored damaged") || !strings.Contains(gap, tc.where) ||
						strings.Contains(gap, seg(1, tc.no)+" missing") {
						t.Errorf("full=%v: the gap's line does not name %s as stored damaged %s:\n%s", full, seg(1, tc.no), tc.where, gap)
					}
					arch := strings.Join(rep.Problems, "\n")
					if !strings.Contains(arch, "WAL segment "+a.Layout.WALKey(seg(1, tc.no))) || !strings.Contains(arch, odd.What) {
						t.Errorf("full=%v: the archive's problems do not name %s saying %q:\n%s", full, seg(1, tc.no), odd.What, arch)
					}
				}
			})
		}
	}
}
