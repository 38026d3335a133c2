package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/metrics"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// gapSegSize is the WAL segment size of findWALGaps' fixtures.
const gapSegSize = 1 << 20

func gapSeg(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(gapSegSize) }

// gapBackup is a backup of system from segment startNo to endNo on
// timeline tli, as the listing returns it (not stored: findWALGaps reads
// only its WAL).
func gapBackup(name string, tli uint32, startNo, endNo uint64, system uint64) *archive.BackupInfo {
	start := wal.Segment{Timeline: tli, No: startNo}
	b := &archive.BackupInfo{
		Name: name, Format: archive.FormatBBv2, StartTime: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), StartWALSegment: start.Name(gapSegSize), EndWALSegment: gapSeg(tli, endNo),
		StartLSN: start.StartLSN(gapSegSize) + 0x28, EndLSN: wal.Segment{No: endNo}.StartLSN(gapSegSize) + 0x100,
		StartTimeline: tli, EndTimeline: tli, WALSegmentSize: gapSegSize,
	}
	if system != 0 {
		b.SystemID = fmt.Sprint(system)
	}
	return b
}

// listed returns a listing of the backups bs.
func listed(bs []*archive.BackupInfo) func(context.Context) ([]*archive.BackupInfo, error) {
	return func(context.Context) ([]*archive.BackupInfo, error) { return bs, nil }
}

// pushSegments stores segments first to last of timeline tli in a.
func pushSegments(t *testing.T, a *archive.Archive, tli uint32, first, last uint64, system uint64) {
	t.Helper()
	for no := first; no <= last; no++ {
		name := gapSeg(tli, no)
		archivetest.PushWAL(t, a, name, waltest.SegmentOf(t, name, gapSegSize, 0, system), system)
	}
}

// pushPartial stores the first 300000 bytes of segment name as its
// .partial, as the daemon stores the segment it is receiving.
func pushPartial(t *testing.T, a *archive.Archive, name string, system uint64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+wal.PartialSuffix)
	if err := os.WriteFile(p, waltest.SegmentOf(t, name, gapSegSize, 0, system)[:300000], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutPartialWAL(context.Background(), p, archive.PushOptions{SystemID: system}); err != nil {
		t.Fatal(err)
	}
}

func deleteWAL(t *testing.T, a *archive.Archive, name string) {
	t.Helper()
	if err := a.Store.Delete(context.Background(), a.Layout.WALKey(name)); err != nil {
		t.Fatal(err)
	}
}

// TestFindWALGaps: the WAL archive check reports the segments missing
// between a kept backup's start and stored WAL after them on the
// timelines its recovery follows, with the backups they cut; WAL not
// stored yet (after the newest stored file, or waiting in the spool) is
// no gap, nor is a segment a later timeline supersedes, nor another
// system's WAL after a pg_upgrade into the site.
func TestFindWALGaps(t *testing.T) {
	ctx := context.Background()
	const sys = 7000000000000000009
	newArchive := func(t *testing.T) *archive.Archive {
		return archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	}
	check := func(t *testing.T, a *archive.Archive, bs []*archive.BackupInfo, spool map[string]bool, want walGaps) {
		t.Helper()
		got, err := findWALGaps(ctx, a, listed(bs), func() (map[string]bool, error) { return spool, nil }, walEnd{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("findWALGaps (-want +got):\n%s", diff)
		}
	}

	checkEnd := func(t *testing.T, a *archive.Archive, bs []*archive.BackupInfo, spool map[string]bool, end walEnd, want walGaps) {
		t.Helper()
		got, err := findWALGaps(ctx, a, listed(bs), func() (map[string]bool, error) { return spool, nil }, end)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("findWALGaps with the receiver's end %+v (-want +got):\n%s", end, diff)
		}
	}
	// uploaded is the receiver's end once it stored the segments of
	// system sys before segment no of timeline tli.
	uploaded := func(sys uint64, tli uint32, no uint64) walEnd {
		return walEnd{System: sys, Timeline: tli, LSN: wal.Segment{No: no}.StartLSN(gapSegSize)}
	}

	t.Run("OK", func(t *testing.T) {
		a := newArchive(t)
		pushSegments(t, a, 1, 1, 6, sys)
		// The newest backup's end is not stored yet: no gap.
		bs := []*archive.BackupInfo{gapBackup("b1", 1, 2, 3, sys), gapBackup("b2", 1, 5, 8, sys)}
		check(t, a, bs, nil, walGaps{})
	})

	t.Run("Deleted", func(t *testing.T) {
		a := newArchive(t)
		pushSegments(t, a, 1, 1, 8, sys)
		deleteWAL(t, a, gapSeg(1, 3))
		deleteWAL(t, a, gapSeg(1, 4))
		deleteWAL(t, a, gapSeg(1, 7))
		bs := []*archive.BackupInfo{gapBackup("b1", 1, 2, 3, sys), gapBackup("b2", 1, 5, 5, sys)}
		check(t, a, bs, nil, walGaps{Missing: []string{gapSeg(1, 3), gapSeg(1, 4), gapSeg(1, 7)}, Backups: []string{"b1", "b2"}})
		// The newest segment deleted: nothing stored after it, nothing
		// to report yet.
		a = newArchive(t)
		pushSegments(t, a, 1, 1, 4, sys)
		deleteWAL(t, a, gapSeg(1, 4))
		check(t, a, bs[:1], nil, walGaps{})
	})

	t.Run("TimelineSwitch", func(t *testing.T) {
		a := newArchive(t)
		pushSegments(t, a, 1, 1, 4, sys)
		// Promoted in segment 4: timeline 2 from there.
		archivetest.PushWAL(t, a, "00000002.history", []byte("1\t0/400100\tno recovery target specified\n"), sys)
		pushSegments(t, a, 2, 4, 9, sys)
		// Timeline 1's segment 4 is superseded by timeline 2's: recovery
		// reads that one.
		deleteWAL(t, a, gapSeg(1, 4))
		bs := []*archive.BackupInfo{gapBackup("b1", 1, 2, 3, sys), gapBackup("b2", 2, 6, 6, sys)}
		check(t, a, bs, nil, walGaps{})
		deleteWAL(t, a, gapSeg(2, 5))
		check(t, a, bs, nil, walGaps{Missing: []string{gapSeg(2, 5)}, Backups: []string{"b1"}})
		// Timeline 1's copy of segment 5 does not stand in for it: the
		// switch was before it.
		pushSegments(t, a, 1, 5, 5, sys)
		check(t, a, bs, nil, walGaps{Missing: []string{gapSeg(2, 5)}, Backups: []string{"b1"}})
	})

	t.Run("Forked", func(t *testing.T) {
		// Timeline 2 forked from timeline 1 in segment 4, before b1
		// ended (a point-in-time restore that was promoted): b1's
		// recovery follows its own timeline, and the check of the other
		// backups is made all the same.
		a := newArchive(t)
		pushSegments(t, a, 1, 1, 8, sys)
		archivetest.PushWAL(t, a, "00000002.history", []byte("1\t0/400100\tbefore 2026-01-02 03:00:00+00\n"), sys)
		pushSegments(t, a, 2, 4, 6, sys)
		bs := []*archive.BackupInfo{gapBackup("b1", 1, 2, 6, sys), gapBackup("b2", 2, 5, 5, sys)}
		check(t, a, bs, nil, walGaps{})
		deleteWAL(t, a, gapSeg(1, 7))
		deleteWAL(t, a, gapSeg(2, 5))
		check(t, a, bs, nil, walGaps{Missing: []string{gapSeg(2, 5), gapSeg(1, 7)}, Backups: []string{"b1", "b2"}})
	})

	t.Run("Upgrade", func(t *testing.T) {
		a := newArchive(t)
		archivetest.UpgradedSiteWAL(t, a, gapSegSize)
		old := gapBackup("old", 1, 1, 2, archivetest.UpgradeOldSystem)
		upgraded := gapBackup("new", 1, 0x20, 0x21, archivetest.UpgradeNewSystem)
		bs := []*archive.BackupInfo{old, upgraded}
		// The old cluster's timeline 2 is absent to the upgraded
		// cluster's recovery, and its segments 0x20 on are beyond the
		// old cluster's: no gap either way.
		check(t, a, bs, nil, walGaps{})
		deleteWAL(t, a, gapSeg(2, 5))
		check(t, a, bs, nil, walGaps{Missing: []string{gapSeg(2, 5)}, Backups: []string{"old"}})
		deleteWAL(t, a, gapSeg(1, 0x21))
		check(t, a, bs, nil, walGaps{Missing: []string{gapSeg(2, 5), gapSeg(1, 0x21)}, Backups: []string{"old", "new"}})
	})

	t.Run("Spool", func(t *testing.T) {
		a := newArchive(t)
		pushSegments(t, a, 1, 1, 3, sys)
		// Segment 4 waits in the spool (its upload retried) while the
		// .partial of segment 5, being received, is stored: the .partial
		// is not read, and ends no chain.
		pushPartial(t, a, gapSeg(1, 5), sys)
		bs := []*archive.BackupInfo{gapBackup("b1", 1, 2, 3, sys)}
		check(t, a, bs, map[string]bool{gapSeg(1, 4): true, gapSeg(1, 5): true}, walGaps{})
		check(t, a, bs, nil, walGaps{})
		// Segments 5 and 6 stored, 4 still in the spool.
		pushSegments(t, a, 1, 5, 6, sys)
		check(t, a, bs, map[string]bool{gapSeg(1, 4): true, gapSeg(1, 7): true}, walGaps{})
		// Not in the spool: lost.
		check(t, a, bs, map[string]bool{gapSeg(1, 7): true}, walGaps{Missing: []string{gapSeg(1, 4)}, Backups: []string{"b1"}})
		// Stored between the listing and the read of the spool.
		got, err := findWALGaps(ctx, a, listed(bs), func() (map[string]bool, error) {
			pushSegments(t, a, 1, 4, 4, sys)
			return map[string]bool{gapSeg(1, 7): true}, nil
		}, walEnd{})
		if err != nil || len(got.Missing) != 0 {
			t.Errorf("findWALGaps with segment 4 stored after the listing = %+v, %v; want no gap", got, err)
		}
	})

	t.Run("Streamed", func(t *testing.T) {
		// The receiver stored segments up to 5 and receives 6: segment
		// 5, the newest stored, deleted from the bucket is missing now,
		// not once segment 6 is stored.
		a := newArchive(t)
		pushSegments(t, a, 1, 1, 5, sys)
		pushPartial(t, a, gapSeg(1, 6), sys)
		b1, b2 := gapBackup("b1", 1, 2, 3, sys), gapBackup("b2", 1, 5, 8, sys)
		bs := []*archive.BackupInfo{b1, b2}
		end := uploaded(sys, 1, 6)
		checkEnd(t, a, bs, nil, end, walGaps{})
		deleteWAL(t, a, gapSeg(1, 5))
		checkEnd(t, a, bs, nil, end, walGaps{Missing: []string{gapSeg(1, 5)}, Backups: []string{"b1", "b2"}})
		deleteWAL(t, a, gapSeg(1, 4))
		checkEnd(t, a, bs, nil, end, walGaps{Missing: []string{gapSeg(1, 4), gapSeg(1, 5)}, Backups: []string{"b1", "b2"}})
		checkEnd(t, a, bs[:1], nil, end, walGaps{Missing: []string{gapSeg(1, 4), gapSeg(1, 5)}, Backups: []string{"b1"}})
		// Still in the spool (a restarted receiver counts the segments
		// its spool holds as not stored yet): no gap.
		checkEnd(t, a, bs, map[string]bool{gapSeg(1, 4): true, gapSeg(1, 5): true, gapSeg(1, 6): true}, end, walGaps{})
		// Without the receiver's end (archive_command), as before: nothing
		// stored after them.
		check(t, a, bs, nil, walGaps{})
		// Another system's end (after a pg_upgrade into the site), or
		// another timeline's than the one b1's recovery follows: it says
		// nothing of b1's WAL.
		checkEnd(t, a, bs, nil, uploaded(sys+1, 1, 6), walGaps{})
		checkEnd(t, a, bs, nil, uploaded(sys, 2, 6), walGaps{})
		// b2's end, segments 6 to 8, not streamed yet: only what the
		// receiver stored counts.
		pushSegments(t, a, 1, 4, 5, sys)
		checkEnd(t, a, bs, nil, end, walGaps{})
		// The whole prefix wiped: every segment stored from b1's start.
		for no := uint64(1); no <= 5; no++ {
			deleteWAL(t, a, gapSeg(1, no))
		}
		checkEnd(t, a, bs, nil, end, walGaps{Missing: []string{gapSeg(1, 2), gapSeg(1, 3), gapSeg(1, 4), gapSeg(1, 5)}, Backups: []string{"b1", "b2"}})
	})

	t.Run("StreamedUpgrade", func(t *testing.T) {
		// The upgraded cluster's receiver stored its segments up to
		// 0x22: the last deleted is missing for its backup, not for the
		// old cluster's.
		a := newArchive(t)
		archivetest.UpgradedSiteWAL(t, a, gapSegSize)
		old := gapBackup("old", 1, 1, 2, archivetest.UpgradeOldSystem)
		upgraded := gapBackup("new", 1, 0x20, 0x20, archivetest.UpgradeNewSystem)
		bs := []*archive.BackupInfo{old, upgraded}
		end := uploaded(archivetest.UpgradeNewSystem, 1, 0x23)
		checkEnd(t, a, bs, nil, end, walGaps{})
		deleteWAL(t, a, gapSeg(1, 0x22))
		checkEnd(t, a, bs, nil, end, walGaps{Missing: []string{gapSeg(1, 0x22)}, Backups: []string{"new"}})
	})

	t.Run("Retention", func(t *testing.T) {
		a := newArchive(t)
		pushSegments(t, a, 1, 1, 8, sys)
		b0, b1 := gapBackup("b0", 1, 1, 2, sys), gapBackup("b1", 1, 5, 6, sys)
		// Retention deletes b0, then the WAL before b1, oldest first,
		// while the check runs: it has deleted segments 1 and 2 when the
		// check lists the WAL, b0 was listed before.
		calls := 0
		list := func(context.Context) ([]*archive.BackupInfo, error) {
			if calls++; calls == 1 {
				deleteWAL(t, a, gapSeg(1, 1))
				deleteWAL(t, a, gapSeg(1, 2))
				return []*archive.BackupInfo{b0, b1}, nil
			}
			return []*archive.BackupInfo{b1}, nil
		}
		if got, err := findWALGaps(ctx, a, list, nil, walEnd{}); err != nil || len(got.Missing) != 0 {
			t.Errorf("findWALGaps while retention deletes b0 and its WAL = %+v, %v; want no gap", got, err)
		}
		// b0 still listed: its WAL is missing.
		check(t, a, []*archive.BackupInfo{b0, b1}, nil, walGaps{Missing: []string{gapSeg(1, 1), gapSeg(1, 2)}, Backups: []string{"b0"}})
	})

	t.Run("ErrStorage", func(t *testing.T) {
		a := newArchive(t)
		pushSegments(t, a, 1, 1, 6, sys)
		deleteWAL(t, a, gapSeg(1, 3))
		st := &downStore{Store: a.Store}
		a.Store = st
		bs := []*archive.BackupInfo{gapBackup("b1", 1, 2, 2, sys)}
		st.down.Store(true)
		if got, err := findWALGaps(ctx, a, listed(bs), nil, walEnd{}); err == nil || !strings.Contains(err.Error(), errDown.Error()) || len(got.Missing) != 0 {
			t.Errorf("findWALGaps with the storage down = %+v, %v; want an error and no gap", got, err)
		}
		// The listing answers, but a timeline history file recovery
		// follows is not sent.
		st.down.Store(false)
		archivetest.PushWAL(t, a, "00000002.history", []byte("1\t0/700100\tno recovery target specified\n"), sys)
		pushSegments(t, a, 2, 7, 8, sys)
		a.Store = failingOpen{Store: st, key: a.Layout.WALKey("00000002.history"), err: errDown}
		if got, err := findWALGaps(ctx, a, listed(bs), nil, walEnd{}); err == nil || !strings.Contains(err.Error(), errDown.Error()) || len(got.Missing) != 0 {
			t.Errorf("findWALGaps with the history file not sent = %+v, %v; want an error and no gap", got, err)
		}
	})
}

// TestSupervisor_checkWALStorageFailed: a WAL archive check the storage
// kept from being made leaves the missing segment count and the status
// as the last check made left them (a gap stays reported, nothing is
// reported whole), counts in hoard_wal_archive_check_failures_total and
// shows as wal_archive.last_error; the next check made clears that.
func TestSupervisor_checkWALStorageFailed(t *testing.T) {
	ctx := context.Background()
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	st := &downStore{Store: a.Store}
	a.Store = st
	const sys = 7000000000000000009
	pushSegments(t, a, 1, 1, 6, sys)
	b := gapBackup("b1", 1, 2, 3, sys)
	md := b.ToMetadata()
	if err := a.Codec.SignBackup(b.Name, md); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Codec.Put(ctx, a.Store, a.Layout.BackupKey(b.Name), strings.NewReader("control"), 7, md); err != nil {
		t.Fatal(err)
	}
	missing := gapSeg(1, 4)
	deleteWAL(t, a, missing)

	d := testDaemon(t)
	sup := newSupervisor(d, Site{Name: "site", Active: true, WAL: WALArchiveCommand})
	sup.checkWAL(ctx, a)
	if got := sup.m.walMissing.Value(); got != 1 {
		t.Fatalf("%s = %v after the first check, want 1", MetricWALArchiveMissing, got)
	}
	first := sup.status().WALArchive
	if first == nil || first.FirstMissing != missing || first.MissingSegments != 1 || len(first.BackupsCut) != 1 {
		t.Fatalf("status = %+v, want %s missing", first, missing)
	}

	// The missing segment comes back while the storage is down: the
	// check is not made.
	pushSegments(t, a, 1, 4, 4, sys)
	st.down.Store(true)
	sup.checkWAL(ctx, a)
	if got := sup.m.walMissing.Value(); got != 1 {
		t.Errorf("%s = %v after a check the storage failed, want 1 (as the last check left it)", MetricWALArchiveMissing, got)
	}
	if got := sup.m.walCheckFailures.Value(); got != 1 {
		t.Errorf("%s = %v, want 1", MetricWALArchiveCheckFailures, got)
	}
	w := sup.status().WALArchive
	if w == nil || w.FirstMissing != missing || !strings.Contains(w.LastError, errDown.Error()) || w.LastErrorAt == nil {
		t.Errorf("status = %+v, want %s still missing and the storage's error", w, missing)
	}

	st.down.Store(false)
	sup.checkWAL(ctx, a)
	if got := sup.m.walMissing.Value(); got != 0 {
		t.Errorf("%s = %v once the storage answers, want 0", MetricWALArchiveMissing, got)
	}
	if w := sup.status().WALArchive; w == nil || w.MissingSegments != 0 || w.FirstMissing != "" || w.LastError != "" {
		t.Errorf("status = %+v, want whole and no error", w)
	}
}

// TestSupervisor_checkWALAlertFile: the wal_archive_gap_error alert file
// follows the checks made, as the metric does. A file an earlier run
// left is reported until a check is made; a check the storage kept from
// being made neither clears it nor raises it; the first check made that
// finds a segment missing raises it, and it stays while any site holds
// it: a second site's whole archive does not clear it, nor does a check
// the storage failed once the segment is back; the next check made does.
func TestSupervisor_checkWALAlertFile(t *testing.T) {
	ctx := context.Background()
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	st := &downStore{Store: a.Store}
	a.Store = st
	const sys = 7000000000000000009
	pushSegments(t, a, 1, 1, 6, sys)
	archivetest.PutBackupInfo(t, a, "b1", gapBackup("b1", 1, 2, 3, sys))
	whole := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	pushSegments(t, whole, 1, 1, 6, sys)
	archivetest.PutBackupInfo(t, whole, "b1", gapBackup("b1", 1, 2, 3, sys))

	d := testDaemon(t)
	file := filepath.Join(d.opts.AlertDir, AlertWALArchiveGap)
	raised := func() bool {
		_, err := os.Stat(file)
		return err == nil
	}
	// Left by an earlier run.
	if err := d.alerts.Raise(AlertWALArchiveGap); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.alerts.Active(), AlertWALArchiveGap) {
		t.Errorf("alerts %v do not list the file an earlier run left", d.alerts.Active())
	}
	sup := newSupervisor(d, Site{Name: "site", Active: true, WAL: WALArchiveCommand})
	other := newSupervisor(d, Site{Name: "other", Active: true, WAL: WALArchiveCommand})
	st.down.Store(true)
	sup.checkWAL(ctx, a)
	if !raised() {
		t.Errorf("a check the storage failed cleared the file an earlier run left")
	}
	st.down.Store(false)
	sup.checkWAL(ctx, a)
	if raised() {
		t.Errorf("the file an earlier run left stays after a check made found nothing missing")
	}

	// The file left is cleared, so a check the storage failed does not
	// raise it either, whatever is missing.
	deleteWAL(t, a, gapSeg(1, 4))
	st.down.Store(true)
	sup.checkWAL(ctx, a)
	if raised() {
		t.Errorf("a check the storage failed raised %s", AlertWALArchiveGap)
	}
	st.down.Store(false)
	sup.checkWAL(ctx, a)
	if !raised() {
		t.Fatalf("no %s after a check found %s missing", AlertWALArchiveGap, gapSeg(1, 4))
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "alert" {
		t.Errorf("alert file holds %q (%v), want \"alert\"", b, err)
	}
	if got := d.alerts.Active(); !slices.Equal(got, []string{AlertWALArchiveGap}) {
		t.Errorf("alerts %v, want [%s]", got, AlertWALArchiveGap)
	}
	other.checkWAL(ctx, whole)
	if !raised() {
		t.Errorf("a check of another site, whole, cleared %s while site still misses %s", AlertWALArchiveGap, gapSeg(1, 4))
	}

	pushSegments(t, a, 1, 4, 4, sys)
	st.down.Store(true)
	sup.checkWAL(ctx, a)
	if !raised() {
		t.Errorf("a check the storage failed cleared %s", AlertWALArchiveGap)
	}
	st.down.Store(false)
	sup.checkWAL(ctx, a)
	if raised() {
		t.Errorf("%s stays after a check made found nothing missing", AlertWALArchiveGap)
	}
}

// TestRun_WALArchiveGap streams from a real cluster and takes a
// basebackup; once the WAL after it is stored, a segment of it is
// deleted from the storage (someone who can write to the bucket, a
// clean-up script): within the check interval the daemon reports it in
// hoard_wal_archive_missing_segments, in /status (wal_archive, the first
// missing segment and the backup it cuts) and in a warning naming the
// segment and hoard verify. Before, nothing did until someone ran hoard
// verify or a restore test restored that backup. The newest stored
// segment deleted next, while the receiver streams the one after it, is
// reported too: the receiver stored it. Before, it was not until the
// segment after it was stored.
func TestRun_WALArchiveGap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := storage.NewLocal(t.TempDir())
	c, site := backedUpCluster(t, st)
	arch, _, err := site.OpenArchive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	port := testio.FreePort(t)
	rd := runDaemon(t, Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port},
		DrainTimeout: time.Second, WALCheckInterval: 500 * time.Millisecond})
	backup := rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 }).Sites["test"].LastBackup

	var switched []string
	for range 3 {
		c.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'x')")
		switched = append(switched, c.QueryString(t, "select pg_walfile_name(pg_switch_wal())"))
	}
	stored := func(name string) bool {
		_, err := st.Stat(context.Background(), arch.Layout.WALKey(name))
		return err == nil
	}
	rd.waitFor("the switched segments stored", func(Status) bool { return stored(switched[2]) })
	// Checks made while the WAL streams find nothing missing.
	checked := rd.waitFor("a check after the segments were stored", func(st Status) bool {
		w := st.Sites["test"].WALArchive
		return w != nil && w.CheckedAt != nil && w.CheckedAt.After(time.Now().Add(-time.Second))
	}).Sites["test"].WALArchive
	if checked.MissingSegments != 0 || checked.LastError != "" {
		t.Fatalf("wal_archive %+v before any deletion, want nothing missing", checked)
	}

	lost := switched[1]
	if lost <= backup.StartWAL {
		t.Fatalf("segment %s is not after the backup's start %s", lost, backup.StartWAL)
	}
	if err := st.Delete(context.Background(), arch.Layout.WALKey(lost)); err != nil {
		t.Fatal(err)
	}
	w := rd.waitFor("the missing segment reported", func(st Status) bool {
		w := st.Sites["test"].WALArchive
		return w != nil && w.MissingSegments > 0
	}).Sites["test"].WALArchive
	if w.FirstMissing != lost || w.MissingSegments != 1 || len(w.BackupsCut) != 1 || w.BackupsCut[0] != backup.Name {
		t.Errorf("wal_archive %+v, want %s missing, cutting %s", w, lost, backup.Name)
	}
	if m := metric(t, port, MetricWALArchiveMissing); m != MetricWALArchiveMissing+`{site="test"} 1` {
		t.Errorf("metric %q, want 1 segment", m)
	}
	logs := rd.logs.String()
	if !strings.Contains(logs, `"segment":"`+lost+`"`) || !strings.Contains(logs, "hoard verify") || !strings.Contains(logs, backup.Name) {
		t.Errorf("no warning naming %s, backup %s and hoard verify in the log:\n%s", lost, backup.Name, logs)
	}

	// The newest stored segment deleted too, the receiver streaming the
	// one after it: no later segment is stored, but the receiver stored
	// it, so it is missing now.
	newest := switched[2]
	if err := st.Delete(context.Background(), arch.Layout.WALKey(newest)); err != nil {
		t.Fatal(err)
	}
	w = rd.waitFor("the newest stored segment reported missing", func(st Status) bool {
		w := st.Sites["test"].WALArchive
		return w != nil && w.MissingSegments > 1
	}).Sites["test"].WALArchive
	if w.FirstMissing != lost || w.MissingSegments != 2 || len(w.BackupsCut) != 1 || w.BackupsCut[0] != backup.Name {
		t.Errorf("wal_archive %+v, want %s and %s missing, cutting %s", w, lost, newest, backup.Name)
	}
	if seg, err := wal.ParseSegmentName(newest, 1<<20); err != nil {
		t.Fatal(err)
	} else if next := seg.Next().Name(1 << 20); stored(next) {
		t.Fatalf("segment %s, after %s, is stored: the check did not need the receiver to see %s missing", next, newest, newest)
	}
}

// TestRun_WALArchiveGapAlert streams from a real cluster into local
// storage and takes a basebackup; a segment after it is deleted from the
// storage: the daemon's WAL archive check raises the
// wal_archive_gap_error alert file (it holds the word alert, and /status
// lists it under alerts), and clears it once a later check finds the
// segment stored again. Before, the check said so only in metrics, the
// status and a warning: an operator watching alert files, as PGHoard's
// monitoring does, never heard that point-in-time recovery of a kept
// backup had become impossible.
func TestRun_WALArchiveGapAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	st := storage.NewLocal(t.TempDir())
	c, site := backedUpCluster(t, st)
	arch, _, err := site.OpenArchive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rd := runDaemon(t, Options{Sites: []Site{site}, DrainTimeout: time.Second, WALCheckInterval: 500 * time.Millisecond})
	rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 })
	switched := []string{c.SwitchWAL(t), c.SwitchWAL(t)}
	key := arch.Layout.WALKey(switched[0])
	rd.waitFor("the switched segments stored", func(Status) bool {
		_, err := st.Stat(ctx, arch.Layout.WALKey(switched[1]))
		return err == nil
	})
	rd.waitFor("a check after the segments were stored", func(st Status) bool {
		w := st.Sites["test"].WALArchive
		return w != nil && w.CheckedAt != nil && w.CheckedAt.After(time.Now().Add(-time.Second))
	})
	if rd.alertFile(AlertWALArchiveGap) {
		t.Fatalf("%s raised before any segment was deleted", AlertWALArchiveGap)
	}

	// Keep the stored object to put back, then delete it.
	r, obj, err := st.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	got := rd.waitFor("the missing segment reported", func(st Status) bool {
		w := st.Sites["test"].WALArchive
		return w != nil && w.MissingSegments > 0
	})
	rd.waitFor("the alert raised", func(Status) bool { return rd.alertFile(AlertWALArchiveGap) })
	if b, err := os.ReadFile(filepath.Join(rd.opts.AlertDir, AlertWALArchiveGap)); err != nil || string(b) != "alert" {
		t.Errorf("alert file %s holds %q (%v), want \"alert\"", AlertWALArchiveGap, b, err)
	}
	got = rd.waitFor("the alert in the status", func(st Status) bool { return slices.Contains(st.Alerts, AlertWALArchiveGap) })
	if w := got.Sites["test"].WALArchive; w.FirstMissing != switched[0] {
		t.Errorf("wal_archive %+v, want %s missing", w, switched[0])
	}
	if slices.Contains(got.Alerts, AlertTimelineHistoryDamaged) {
		t.Errorf("alerts %v: %s raised with no history file damaged", got.Alerts, AlertTimelineHistoryDamaged)
	}

	// The same object stored again: the next check finds nothing missing.
	if err := st.Put(ctx, key, bytes.NewReader(stored), obj.Metadata); err != nil {
		t.Fatal(err)
	}
	rd.waitFor("the alert cleared", func(st Status) bool {
		w := st.Sites["test"].WALArchive
		return w != nil && w.MissingSegments == 0 && !rd.alertFile(AlertWALArchiveGap) && !slices.Contains(st.Alerts, AlertWALArchiveGap)
	})
}

// TestRun_WALArchiveGapMovedFrom streams from a real cluster into a site
// and takes a basebackup there, then moves the site (a new prefix whose
// moved_from names the old site, the same slot) and runs the daemon on
// the new one: a segment deleted from the old site inside the old
// backup's reach is reported, cutting that backup, once retention keeps
// it. Before, only the new site's own backups were followed.
func TestRun_WALArchiveGapMovedFrom(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	st := storage.NewLocal(t.TempDir())
	c, oldSite := backedUpCluster(t, st)
	oldArch, _, err := oldSite.OpenArchive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rd := runDaemon(t, Options{Sites: []Site{oldSite}, DrainTimeout: time.Second, WALCheckInterval: 500 * time.Millisecond})
	oldBackup := rd.waitFor("the old site's basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 }).Sites["test"].LastBackup
	switched := []string{c.SwitchWAL(t), c.SwitchWAL(t)}
	stored := func(a *archive.Archive, name string) bool {
		_, err := st.Stat(ctx, a.Layout.WALKey(name))
		return err == nil
	}
	rd.waitFor("the switched segments stored", func(Status) bool { return stored(oldArch, switched[1]) })
	rd.stop()

	newArch := &archive.Archive{Store: st, Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "new"}, Site: "new", MovedFrom: []*archive.Archive{oldArch}}
	newSite := oldSite
	newSite.Name, newSite.SpoolDir = "new", filepath.Join(t.TempDir(), "xlog_incoming")
	newSite.OpenArchive = func(context.Context) (*archive.Archive, func(), error) { return newArch, func() {}, nil }
	rd = runDaemon(t, Options{Sites: []Site{newSite}, DrainTimeout: time.Second, WALCheckInterval: 500 * time.Millisecond,
		RetentionInterval: time.Second})
	rd.waitFor("the new site's basebackup and a check", func(st Status) bool {
		s := st.Sites["new"]
		return s.Backups == 1 && s.WALArchive != nil && s.WALArchive.CheckedAt != nil && s.LastRetention != nil
	})
	lost := switched[0]
	if lost <= oldBackup.StartWAL {
		t.Fatalf("segment %s is not after the old backup's start %s", lost, oldBackup.StartWAL)
	}
	if err := st.Delete(ctx, oldArch.Layout.WALKey(lost)); err != nil {
		t.Fatal(err)
	}
	w := rd.waitFor("the segment missing from the old site reported", func(st Status) bool {
		w := st.Sites["new"].WALArchive
		return w != nil && w.MissingSegments > 0
	}).Sites["new"].WALArchive
	if w.FirstMissing != lost || w.MissingSegments != 1 || !slices.Equal(w.BackupsCut, []string{oldBackup.Name}) {
		t.Errorf("wal_archive %+v, want %s missing, cutting %s", w, lost, oldBackup.Name)
	}
}

// TestForgetSiteMetrics_WALArchiveMissing: a reload that makes a site
// inactive takes away its hoard_wal_archive_missing_segments (and
// hoard_wal_archive_damaged_history_backups), as a
// daemon started so would not have it: no check runs for the site any
// more, and a last value above 0 would keep HoardWALArchiveGap firing
// for good. A site that stays active keeps it.
func TestForgetSiteMetrics_WALArchiveMissing(t *testing.T) {
	m := metrics.New(nil)
	site := Site{Name: "s", Active: true, WAL: WALArchiveCommand}
	sm := newSiteMetrics(m, "s")
	sm.walMissing.Set(3)
	sm.walDamagedHistory.Set(1)
	has := func(name string) bool {
		var b strings.Builder
		if err := m.WritePrometheus(&b); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(b.String(), name+`{site="s"}`)
	}
	names := []string{MetricWALArchiveMissing, MetricWALArchiveDamagedHistory}
	forgetSiteMetrics(m, site, site)
	for _, n := range names {
		if !has(n) {
			t.Fatalf("%s gone after a reload that keeps the site active", n)
		}
	}
	inactive := site
	inactive.Active = false
	forgetSiteMetrics(m, site, inactive)
	for _, n := range names {
		if has(n) {
			t.Errorf("%s still exported after a reload that made the site inactive", n)
		}
	}
}

// TestSupervisor_checkWALMovedFrom: the WAL archive check follows the
// WAL of the backups of the sites the site moved from (moved_from) too,
// as restore lists them with the site's own and reads their WAL, once
// retention keeps their WAL: a segment deleted from an old site's xlog/
// inside the reach of a backup stored there cuts it. Before, only the
// site's own backups were followed. One that retention keeps only
// because its site is read-only to it (its policy would delete it, and
// it deletes the WAL it needs) is not followed, nor any before
// retention has planned.
func TestSupervisor_checkWALMovedFrom(t *testing.T) {
	ctx := context.Background()
	const sys = 7000000000000000009
	st := storage.NewMem()
	codec := &archive.Codec{Compression: compress.Zstd}
	oldStore := &downStore{Store: st}
	old := &archive.Archive{Store: oldStore, Codec: codec, Layout: archive.Layout{Prefix: "old"}, Site: "old"}
	a := &archive.Archive{Store: st, Codec: codec, Layout: archive.Layout{Prefix: "new"}, Site: "new", MovedFrom: []*archive.Archive{old}}
	// The old site holds b0 and the WAL up to segment 5, the new one b1
	// and the WAL from segment 6.
	pushSegments(t, old, 1, 1, 5, sys)
	pushSegments(t, a, 1, 6, 8, sys)
	b0, b1 := gapBackup("b0", 1, 2, 3, sys), gapBackup("b1", 1, 7, 7, sys)
	archivetest.PutBackupInfo(t, old, b0.Name, b0)
	archivetest.PutBackupInfo(t, a, b1.Name, b1)

	listedB0 := *b0
	listedB0.Key = old.Layout.BackupKey(b0.Name)
	kept := func(extra string) archive.RetentionPlan {
		return archive.RetentionPlan{Keep: []archive.BackupDecision{{Backup: &listedB0, Site: old.Site, Extra: extra}, {Backup: b1, Site: a.Site}}}
	}

	sup := newSupervisor(testDaemon(t), Site{Name: "new", Active: true, WAL: WALArchiveCommand})
	sup.noteWALKept(a, kept(""))
	sup.checkWAL(ctx, a)
	if w := sup.status().WALArchive; w == nil || w.MissingSegments != 0 || w.LastError != "" {
		t.Fatalf("status = %+v before any deletion, want nothing missing", w)
	}
	missing := gapSeg(1, 4)
	deleteWAL(t, old, missing)
	sup.checkWAL(ctx, a)
	if got := sup.m.walMissing.Value(); got != 1 {
		t.Errorf("%s = %v with %s deleted from the old site, want 1", MetricWALArchiveMissing, got, missing)
	}
	if w := sup.status().WALArchive; w == nil || w.FirstMissing != missing || w.MissingSegments != 1 || !slices.Equal(w.BackupsCut, []string{b0.Name}) {
		t.Errorf("status = %+v, want %s missing, cutting %s", w, missing, b0.Name)
	}
	// The old site's storage down: no check made, the gap stays.
	oldStore.down.Store(true)
	sup.checkWAL(ctx, a)
	if got := sup.m.walCheckFailures.Value(); got != 1 {
		t.Errorf("%s = %v with the old site's storage down, want 1", MetricWALArchiveCheckFailures, got)
	}
	if w := sup.status().WALArchive; w == nil || w.FirstMissing != missing || !strings.Contains(w.LastError, errDown.Error()) {
		t.Errorf("status = %+v with the old site's storage down, want %s still missing and the storage's error", w, missing)
	}
	oldStore.down.Store(false)

	// Kept only because the old site is read-only to retention: its
	// WAL is not kept, no gap of it counts.
	sup.noteWALKept(a, kept(archive.ExtraReadOnly))
	sup.checkWAL(ctx, a)
	if w := sup.status().WALArchive; w == nil || w.MissingSegments != 0 || w.LastError != "" {
		t.Errorf("status = %+v with %s kept read-only, want nothing missing", w, b0.Name)
	}
	// Before retention has planned: the site's own backups only.
	sup = newSupervisor(testDaemon(t), Site{Name: "new", Active: true, WAL: WALArchiveCommand})
	sup.checkWAL(ctx, a)
	if w := sup.status().WALArchive; w == nil || w.MissingSegments != 0 || w.LastError != "" {
		t.Errorf("status = %+v before retention planned, want nothing missing", w)
	}
}
