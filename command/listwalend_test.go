package command

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/wal"
)

// TestList_WALEndAfterUpgrade: hoard list's WAL end in a site holding
// backups from before and after a pg_upgrade into it (without keys, the
// files claiming their writer's system): the old cluster reached timeline
// 2 (its 00000002.history and segments 3 to 10 there), the upgraded one
// is on timeline 1 from segment 0x20 on. The line names the upgraded
// cluster's newest segment, where a restore of the newest backup ends, as
// hoard verify's wal_end does (2e5c198). Before, it named the old
// cluster's last segment on timeline 2, stored before the upgrade.
func TestList_WALEndAfterUpgrade(t *testing.T) {
	ctx := context.Background()
	const segSize = 16 << 20
	seg := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }
	root := t.TempDir()
	store := filepath.Join(root, "store")
	a := archivetest.Local(t, store, "s", &archive.Codec{Compression: compress.Zstd})
	backup := func(name string, startNo uint64, at time.Time, system uint64) {
		t.Helper()
		archivetest.PutBackupInfo(t, a, name, archivetest.SegmentBackupInfo(startNo, at, system, segSize))
	}
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	archivetest.UpgradedSiteWAL(t, a, segSize)
	backup("2026-01-02_03-00_0", 1, t0, archivetest.UpgradeOldSystem)
	backup("2026-01-04_03-00_0", 0x20, t0.Add(48*time.Hour), archivetest.UpgradeNewSystem)
	cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s", "object_storage": {"storage_type": "local", "directory": %q}}}}`,
		filepath.Join(root, "state"), store)
	cfgFile := filepath.Join(root, "hoard.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	app := App("test")
	app.Writer, app.ErrWriter = &out, &errOut
	if err := app.RunContext(ctx, []string{"hoard", "--config", cfgFile, "list"}); err != nil {
		t.Fatalf("hoard list: %v\n%s", err, errOut.String())
	}
	want := fmt.Sprintf("Stored WAL ends at LSN 0/23000000 on timeline 1 (%s)", seg(1, 0x22))
	if !strings.Contains(out.String(), want) {
		t.Errorf("hoard list:\n%s\nwant the line %q", out.String(), want)
	}
}
