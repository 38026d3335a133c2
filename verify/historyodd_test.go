package verify

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
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

// TestRun_OddHistoryRestorable: timeline 2's history file stored
// damaged (a FIFO, a directory, a socket in local storage), a backup on
// timeline 1 whose WAL is whole. Verify followed its WAL along timeline
// 1, the latest probe stopping below the file as if it were absent, and
// called the backup restorable; but PostgreSQL's probe asks
// restore_command for that file, wal-fetch fails on it (exit 255), and
// hoard restore refuses such a restore. The backup is broken, its
// problem naming the file as stored damaged with what is there, and so
// is verify.CheckContinuity's (hoard check, the daemon's WAL check)
// chain's DamagedHistory.
func TestRun_OddHistoryRestorable(t *testing.T) {
	for _, odd := range testio.OddEntries {
		for _, full := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/full=%v", odd.Name, full), func(t *testing.T) {
				dir := t.TempDir()
				a := archivetest.Local(t, dir, "site", &archive.Codec{Compression: compress.Zstd})
				a.Site = "site"
				b := putBackup(t, a, "b1", 1, 2, 3, t0)
				putSegments(t, a, 1, 2, 5)
				putSegments(t, a, 2, 5, 6)
				putHistory(t, a, 2, "1\t0/5000000\tno recovery target specified\n")
				key := a.Layout.WALKey(wal.HistoryFileName(2))
				testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(key)), odd.Make)
				rep := run(t, a, full)
				if len(rep.Backups) != 1 {
					t.Fatalf("%d backups reported, want 1", len(rep.Backups))
				}
				r := rep.Backups[0]
				if r.Restorable || r.Status != StatusBroken {
					t.Errorf("backup b1 restorable=%v status=%s, want broken: restore refuses it (PostgreSQL asks for %s)\n%s",
						r.Restorable, r.Status, key, strings.Join(r.Problems, "\n"))
				}
				p := strings.Join(r.Problems, "\n")
				if !strings.Contains(p, key+" is stored damaged") || !strings.Contains(p, odd.What) || !strings.Contains(p, "wal-fetch") {
					t.Errorf("backup b1's problems do not name %s as stored damaged saying %q:\n%s", key, odd.What, p)
				}
				ch, err := CheckContinuity(context.Background(), a, b)
				if err != nil {
					t.Fatal(err)
				}
				if ch.DamagedHistory == nil || !strings.Contains(ch.DamagedHistory.Error(), key+" is stored damaged") ||
					!errors.Is(ch.DamagedHistory, storage.ErrObjectDamaged) {
					t.Errorf("CheckContinuity's DamagedHistory = %v, want %s named as stored damaged", ch.DamagedHistory, key)
				}
			})
		}
	}
}
