package command

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// archive-sync whose gap is the newest segment in pg_wal (an idle server
// right after pg_switch_wal, the next segment not begun: the backup's
// WARNING sends the user here) exits 1 saying the segment is in pg_wal and
// may still be written, and to run again once the server has written into
// the next one, not that the segments are no longer in pg_wal and a new
// basebackup is needed.
func TestArchiveSync_ErrGapInProgress(t *testing.T) {
	name := wal.Segment{Timeline: 1, No: 3}.Name(syncSegSize)
	code, msg := archiveSyncGap(t, 3)
	if code != ExitFailure {
		t.Fatalf("archive-sync: exit %d (%s), want %d", code, msg, ExitFailure)
	}
	if strings.Contains(msg, "no longer in pg_wal") || !strings.Contains(msg, name+" is in pg_wal") || !strings.Contains(msg, "run archive-sync again") {
		t.Errorf("message %q; want it to say %s is in pg_wal and to run archive-sync again", msg, name)
	}

	// Segments 3 and 4 have left pg_wal (5 stored, 6 in progress): a
	// new basebackup.
	code, msg = archiveSyncGap(t, 5, 6)
	if code != ExitFailure || !strings.Contains(msg, "no longer in pg_wal; take a new basebackup") || strings.Contains(msg, "run archive-sync again") {
		t.Errorf("archive-sync with segments gone: exit %d, %q; want exit %d saying they are no longer in pg_wal", code, msg, ExitFailure)
	}
}

const syncSegSize = 1 << 20

// archiveSyncGap runs archive-sync on a site whose one backup starts in
// segment 3, with a pg_wal holding segments nos (the last one in
// progress), and returns its exit code and message.
func archiveSyncGap(t *testing.T, nos ...uint64) (int, string) {
	const segSize, system = syncSegSize, 7123456789012345678
	dir := t.TempDir()
	pgdata := filepath.Join(dir, "data")
	for _, d := range []string{filepath.Join(pgdata, "pg_wal"), filepath.Join(pgdata, "global")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), binary.LittleEndian.AppendUint64(nil, system), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, no := range nos {
		name := wal.Segment{Timeline: 1, No: no}.Name(segSize)
		if err := os.WriteFile(filepath.Join(pgdata, "pg_wal", name), waltest.Segment(t, name, segSize, 0), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	store := filepath.Join(dir, "store")
	a := archivetest.Local(t, store, "s", &archive.Codec{})
	archivetest.PutBackupInfo(t, a, "2026-01-01_00-00_0", archivetest.SegmentBackupInfo(3, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), system, segSize))
	cfg := filepath.Join(dir, "hoard.json")
	js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"pg_data_directory": %q, "pg_version": 150004,
		"object_storage": {"storage_type": "local", "directory": %q}}}}`, filepath.Join(dir, "state"), pgdata, store)
	if err := os.WriteFile(cfg, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	return runErr(t, "archive-sync", "--allow-root", "--config", cfg)
}
