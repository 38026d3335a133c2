package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/wal"
)

// TestRun_OddHistory: a backup on timeline 1, the archive's timelines
// 1 -> 2 -> 3 in local storage, and in place of a history file PostgreSQL
// asks restore_command for (TestRun_RecoveryHistories) something no read
// returns, its .metadata sidecar kept: a FIFO, a directory, a socket.
// wal-fetch answers it with exit 255 (the store's error), not 1, so
// PostgreSQL stops with the data directory written. The history listing
// passed over it: with recovery_target_timeline latest the probe stopped
// below it and the restore went on to the older timeline; with a number,
// restore called it "not archived". Restore must refuse before writing
// anything, naming the object as stored damaged with what is there.
func TestRun_OddHistory(t *testing.T) {
	hist2 := "1\t0/400000\tno recovery target specified\n"
	hist3 := hist2 + "2\t0/500000\tno recovery target specified\n"
	cases := []struct {
		name string
		o    Options
		odd  string // the history file replaced
	}{
		{name: "LatestProbe", odd: "00000002.history"},
		{name: "LatestProbeLast", odd: "00000003.history"},
		{name: "NumericTarget", o: Options{Target: Target{Timeline: "3"}}, odd: "00000003.history"},
		{name: "NumericPath", o: Options{Target: Target{Timeline: "3"}}, odd: "00000002.history"},
		{name: "NumericPromotion", o: Options{Target: Target{Timeline: "2"}}, odd: "00000003.history"},
		{name: "CurrentPromotion", o: Options{Target: Target{Timeline: "current"}}, odd: "00000002.history"},
	}
	for _, odd := range testio.OddEntries {
		for _, tc := range cases {
			t.Run(odd.Name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				a := archivetest.Local(t, dir, "site", &archive.Codec{Compression: compress.Snappy, Host: "test"})
				hostile.Put(t, a, hostile.Backup{Name: olderBackup})
				pushFile(t, a, "00000002.history", []byte(hist2), 7000000000000000001)
				pushFile(t, a, "00000003.history", []byte(hist3), 7000000000000000001)
				key := a.Layout.WALKey(tc.odd)
				testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(key)), odd.Make)
				e := hostile.NewEnv(t)
				o := tc.o
				o.Archive, o.TargetDir, o.RestoreCommand, o.Logger = a, e.Target(), "hoard wal-fetch %f %p", zerolog.Nop()
				_, err := Run(context.Background(), o)
				if err == nil {
					t.Fatalf("restore with %s stored damaged succeeded: PostgreSQL asks for it and wal-fetch refuses it (exit 255)", tc.odd)
				}
				for _, w := range []string{key + " is stored damaged", odd.What, "wal-fetch"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
					t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
				}
			})
		}
	}
}

// TestCheckRecoveryHistories_OddBackupTimeline: a backup taken on
// timeline 2, recovered on that timeline; PostgreSQL asks for
// 00000002.history at startup (TestCheckRecoveryHistories_BackupTimeline).
// In local storage a FIFO, a directory or a socket stands in its place:
// wal-fetch exits 255 and PostgreSQL stops, so the check must refuse,
// naming it as stored damaged, where a history file not archived at all
// passes.
func TestCheckRecoveryHistories_OddBackupTimeline(t *testing.T) {
	const system = 7000000000000000001
	hist2 := []byte("1\t0/400000\tno recovery target specified\n")
	b := &archive.BackupInfo{Name: olderBackup, StartTimeline: 2, EndTimeline: 2, SystemID: "7000000000000000001",
		StartLSN: 0x500028, WALSegmentSize: hostile.SegmentSize}
	for _, odd := range testio.OddEntries {
		for _, spec := range []string{"", "latest", "current", "2"} {
			t.Run(odd.Name+"/"+spec, func(t *testing.T) {
				dir := t.TempDir()
				a := archivetest.Local(t, dir, "site", &archive.Codec{Compression: compress.Snappy, Host: "test"})
				pushFile(t, a, "00000002.history", hist2, system)
				key := a.Layout.WALKey("00000002.history")
				testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(key)), odd.Make)
				err := checkRecoveryHistories(context.Background(), a, b, wal.History{{Timeline: 2}}, spec, spec == "", "")
				if err == nil {
					t.Fatal("check with 00000002.history stored damaged passed: PostgreSQL asks for it and wal-fetch refuses it")
				}
				for _, w := range []string{key + " is stored damaged", odd.What, "wal-fetch"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			})
		}
	}
}
