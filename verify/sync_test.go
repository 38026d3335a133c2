package verify

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/storage"
)

// localWAL writes a pg_wal with segments from..to of timeline 1 (the last
// one "being written"), and a recycled file named ahead.
func localWAL(t *testing.T, from, to uint64) string {
	t.Helper()
	pgdata := t.TempDir()
	dir := filepath.Join(pgdata, "pg_wal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for no := from; no <= to; no++ {
		if err := os.WriteFile(filepath.Join(dir, seg(1, no)), segmentBytes(t, seg(1, no)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Recycled: an old segment renamed ahead, its header still old.
	if err := os.WriteFile(filepath.Join(dir, seg(1, to+1)), segmentBytes(t, seg(1, from)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00000002.history"), []byte("1\t0/A000000\tno recovery target specified\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The history file's signature binds the system identifier that
	// pg_control starts with.
	if err := os.MkdirAll(filepath.Join(pgdata, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), binary.LittleEndian.AppendUint64(nil, 7000000000000000001), 0o600); err != nil {
		t.Fatal(err)
	}
	return pgdata
}

// TestSync_CheckContinuity is hoard archive-sync: archive.Sync stores what
// the archive lacks of the local pg_wal, then CheckContinuity follows the
// archive's WAL from the newest backup's start.
func TestSync_CheckContinuity(t *testing.T) {
	ctx := context.Background()
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 3, 3, t0)
	putSegments(t, a, 1, 3, 3)
	putSegments(t, a, 1, 6, 6)
	// Segment 5 is archived with other contents than the local copy.
	putSegment(t, a, seg(1, 5), append(segmentBytes(t, seg(1, 5))[:segSize-1], 1))
	pgdata := localWAL(t, 1, 8)

	res, err := a.Sync(ctx, archive.SyncOptions{PGData: pgdata, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{seg(1, 7), seg(1, 4), "00000002.history"}
	if !slices.Equal(res.Pushed, want) {
		t.Errorf("pushed %v, want %v", res.Pushed, want)
	}
	if !slices.Equal(res.Mismatches, []string{seg(1, 5)}) || res.HashChecked != 3 {
		t.Errorf("mismatches %v after %d checks, want %s after 3", res.Mismatches, res.HashChecked, seg(1, 5))
	}
	if res.Newest != seg(1, 7) || res.Oldest != seg(1, 3) {
		t.Errorf("looked at %s..%s, want %s..%s", res.Oldest, res.Newest, seg(1, 3), seg(1, 7))
	}
	if res.Backup == nil || res.Backup.Name != "b1" {
		t.Fatalf("sync bounded by backup %v, want b1", res.Backup)
	}
	ch, err := CheckContinuity(ctx, a, res.Backup)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Continuous() {
		t.Errorf("archive not continuous after the sync: %+v", ch.Gaps)
	}

	t.Run("ErrGap", func(t *testing.T) {
		a := testArchive(t)
		putBackup(t, a, "b1", 1, 3, 3, t0)
		putSegments(t, a, 1, 3, 3)
		putSegments(t, a, 1, 6, 6)
		res, err := a.Sync(ctx, archive.SyncOptions{PGData: localWAL(t, 5, 6), MaxHashChecks: -1, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		ch, err := CheckContinuity(ctx, a, res.Backup)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Continuous() || len(ch.Gaps) != 1 || ch.Gaps[0].First != seg(1, 4) {
			t.Fatalf("gaps %+v, want %s", ch.Gaps, seg(1, 4))
		}
		if res.HashChecked != 0 {
			t.Errorf("%d hash checks with checks off", res.HashChecked)
		}
	})
}

// TestSync_PlantedBackup: a backup planted without a valid metadata HMAC,
// claiming to be newer and to start far ahead, does not bound archive-sync:
// it syncs from the newest authenticated backup's start, stores the
// segments the archive lacks, and reports that backup, where it looked at
// no segment at all and reported the planted one.
func TestSync_PlantedBackup(t *testing.T) {
	a := encryptedArchive(t)
	putBackup(t, a, "b1", 1, 3, 3, t0)
	putBackup(t, a, "b2", 1, 0x100, 0x100, t0.Add(time.Hour))
	archivetest.PlantCopy(t, a.Store, a.Layout.BackupKey("b2"), a.Layout.BackupKey("b2"), func(md storage.Metadata) {
		delete(md, archive.MetaBackupMAC)
	})
	syncFromB1(t, a, "")
}

// TestSync_ForeignBackup: another cluster's backup (system B), newer,
// starting far ahead and authenticated (copied from a site sharing the key
// pair), does not bound archive-sync of cluster A: it syncs from A's
// newest backup and stores the segment the archive lacks, where it looked
// at no segment and reported B's backup.
func TestSync_ForeignBackup(t *testing.T) {
	a := encryptedArchive(t)
	putBackup(t, a, "b1", 1, 3, 3, t0)
	putBackup(t, a, "b2", 1, 0x100, 0x100, t0.Add(time.Hour))
	for name, system := range map[string]string{"b1": "7000000000000000001", "b2": "7000000000000000002"} {
		archivetest.PlantCopy(t, a.Store, a.Layout.BackupKey(name), a.Layout.BackupKey(name), func(md storage.Metadata) {
			md[archive.MetaSystemID] = system
			if err := a.Codec.SignBackup(name, md); err != nil {
				t.Fatal(err)
			}
		})
	}
	syncFromB1(t, a, "7000000000000000001")
}

// syncFromB1 stores segment 3 in a, whose backups b1 (starting at
// segment 3) and b2 (starting at 0x100) the caller stored, and syncs a
// local pg_wal holding segments 1 to 5 into it as cluster systemID: the
// sync must be bounded by b1 and store segment 4 (5 is the one being
// written) and the history file.
func syncFromB1(t *testing.T, a *archive.Archive, systemID string) {
	t.Helper()
	putSegments(t, a, 1, 3, 3)
	res, err := a.Sync(context.Background(), archive.SyncOptions{PGData: localWAL(t, 1, 5), MaxHashChecks: -1, SystemID: systemID, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Backup == nil || res.Backup.Name != "b1" {
		t.Errorf("sync bounded by backup %v, want b1", res.Backup)
	}
	if want := []string{seg(1, 4), "00000002.history"}; !slices.Equal(res.Pushed, want) {
		t.Errorf("pushed %v, want %v", res.Pushed, want)
	}
}

// TestSync_PGVersion: the files Sync stores carry the pg-version its
// PGVersion returns, asked once for all of them; a sync that stores nothing
// asks nothing (archive-sync then opens no connection to the node).
func TestSync_PGVersion(t *testing.T) {
	ctx := context.Background()
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 3, 3, t0)
	putSegments(t, a, 1, 3, 3)
	pgdata := localWAL(t, 1, 6)
	asked := 0
	o := archive.SyncOptions{PGData: pgdata, Logger: zerolog.Nop(), PGVersion: func(context.Context) int {
		asked++
		return 150018
	}}
	res, err := a.Sync(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{seg(1, 5), seg(1, 4), "00000002.history"}; !slices.Equal(res.Pushed, want) {
		t.Fatalf("pushed %v, want %v", res.Pushed, want)
	}
	if asked != 1 {
		t.Errorf("PGVersion asked %d times for %d files, want once", asked, len(res.Pushed))
	}
	for _, name := range res.Pushed {
		st, err := a.Store.Stat(ctx, a.Layout.WALKey(name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Metadata[archive.MetaPGVersion]; got != "150018" {
			t.Errorf("%s: pg-version %q, want 150018", name, got)
		}
	}

	asked = 0
	if res, err = a.Sync(ctx, o); err != nil {
		t.Fatal(err)
	}
	if len(res.Pushed) != 0 || asked != 0 {
		t.Errorf("second sync pushed %v and asked for the version %d times, want nothing and 0", res.Pushed, asked)
	}
}

// TestSync_TimelineSwitch: a promoted server's pg_wal, with archiving off
// (so PostgreSQL left the old timeline's last segment under its full
// name, not .partial) and segments of timeline 1 streamed beyond the
// switch point (a promotion at a recovery target behind what the standby
// had received). The server is writing timeline 2's newest segment: it is
// left out, though timeline 1 has segments further on. Timeline 1's
// segment holding the switch point is partial, and its segments after it
// are off the path the history gives (the newest possibly half received):
// neither is stored as a complete segment.
func TestSync_TimelineSwitch(t *testing.T) {
	pgdata := t.TempDir()
	dir := filepath.Join(pgdata, "pg_wal")
	if err := os.MkdirAll(filepath.Join(pgdata, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), binary.LittleEndian.AppendUint64(nil, 7000000000000000001), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), segmentBytes(t, name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for no := uint64(1); no <= 8; no++ {
		write(seg(1, no))
	}
	write(seg(2, 5))
	write(seg(2, 6)) // being written
	// Timeline 2 began in the middle of segment 5.
	if err := os.WriteFile(filepath.Join(dir, "00000002.history"), []byte("1\t0/580000\tno recovery target specified\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	a := testArchive(t)
	res, err := a.Sync(context.Background(), archive.SyncOptions{PGData: pgdata, MaxHashChecks: -1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{seg(2, 5), seg(1, 4), seg(1, 3), seg(1, 2), seg(1, 1), "00000002.history"}
	if !slices.Equal(res.Pushed, want) {
		t.Errorf("pushed %v, want %v", res.Pushed, want)
	}
	if res.Newest != seg(2, 5) {
		t.Errorf("newest complete local segment %s, want %s", res.Newest, seg(2, 5))
	}
}
