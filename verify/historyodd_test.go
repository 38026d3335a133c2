package verify

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/wal"
)

// TestRun_OddHistory: in local storage, the file of timeline 2's
// .history is replaced, its .metadata sidecar kept, by something no read
// returns (a FIFO, a directory, a socket). The listing passed it over, so
// verify said the history file "is not archived", as if never stored, and
// never named the file someone has to move away before it can be stored
// again: it says it is stored damaged, naming the object and what is
// there, and the archive's problems name it as a timeline history file.
func TestRun_OddHistory(t *testing.T) {
	for _, odd := range testio.OddEntries {
		t.Run(odd.Name, func(t *testing.T) {
			dir := t.TempDir()
			a := archivetest.Local(t, dir, "site", &archive.Codec{Compression: compress.Zstd})
			a.Site = "site"
			putBackup(t, a, "b1", 1, 2, 3, t0)
			putSegments(t, a, 1, 2, 5)
			putSegments(t, a, 2, 5, 6)
			putHistory(t, a, 2, "1\t0/5000000\tno recovery target specified\n")
			key := a.Layout.WALKey(wal.HistoryFileName(2))
			testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(key)), odd.Make)
			rep := run(t, a, false)
			arch := strings.Join(rep.Problems, "\n")
			if strings.Contains(arch, "is not archived") {
				t.Errorf("the archive's problems call %s not archived:\n%s", key, arch)
			}
			if !strings.Contains(arch, "timeline 2 has WAL segments but "+key+" is stored damaged") {
				t.Errorf("the archive's problems do not say timeline 2's history is stored damaged:\n%s", arch)
			}
			if !strings.Contains(arch, "timeline history file "+key+" is stored damaged, and no read returns it") || !strings.Contains(arch, odd.What) {
				t.Errorf("the archive's problems do not name %s saying %q:\n%s", key, odd.What, arch)
			}
		})
	}
}
