package archive

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// pushSegmentOf pushes a segment called name (1 MiB) whose first page
// names database system system, and returns its key.
func pushSegmentOf(tb testing.TB, a *Archive, name string, system uint64) string {
	tb.Helper()
	data := waltest.SegmentOf(tb, name, testSegSize, 1, system)
	if _, err := a.PushWAL(context.Background(), writeWALFile(tb, tb.TempDir(), name, data), PushOptions{SystemID: system}); err != nil {
		tb.Fatal(err)
	}
	return a.Layout.WALKey(name)
}

// oldHistorySite returns a site (with keys or without) holding
// 00000002.history of database system old, forked at 0/300000.
func oldHistorySite(tb testing.TB, keys bool, old uint64) *Archive {
	tb.Helper()
	a := walTestArchive(tb, keys)
	a.Codec.RequireEncryption = keys
	if err := pushHistory(tb, a, "00000002.history", "1\t0/300000\tno recovery target specified\n", old); err != nil {
		tb.Fatal(err)
	}
	return a
}

// TestArchive_UpgradedHistoryNoOwnWAL: after a pg_upgrade into the same
// site (the old system's 00000002.history, and its WAL on timelines 1 and
// 2; the upgraded system's WAL on timeline 1), wal-fetch for the upgraded
// cluster on timeline 1 treats the old 00000002.history, above its
// timeline, as absent (storage.ErrNotFound, nothing delivered, a warning
// naming the object, both systems, pg_upgrade and the prefix), as the
// archive holds no WAL of the upgraded system on timeline 2 or later.
// Where it holds some (on timeline 3), the file stands where the
// system's own 00000002.history was: refused (ErrOtherSystem), naming
// that WAL. Where the first pages cannot be read (no private key), or
// the timeline is not known: refused. The same in a site without keys, by the system the
// files' metadata claims.
func TestArchive_UpgradedHistoryNoOwnWAL(t *testing.T) {
	testio.WithAndWithoutKeys(t, testUpgradedHistoryNoOwnWAL)
}

func testUpgradedHistoryNoOwnWAL(t *testing.T, keys bool) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	const two = "00000002.history"
	a := oldHistorySite(t, keys, sysOld)
	pushSegmentOf(t, a, "000000010000000000000002", sysOld)
	pushSegmentOf(t, a, "000000020000000000000003", sysOld)
	pushSegmentOf(t, a, "000000020000000000000004", sysOld)
	pushSegmentOf(t, a, "000000010000000000000009", sysNew)
	fetch := func(a *Archive, tli uint32) (string, error) {
		dest := filepath.Join(t.TempDir(), "RECOVERYHISTORY")
		return dest, a.FetchWAL(ctx, two, dest, FetchOptions{SystemID: sysNew, Timeline: tli})
	}

	dest, err := fetch(a, 1)
	ig, ok := errors.AsType[*IgnoredHistoryError](err)
	if !ok || !ig.NoOwnWAL || !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("fetch %s on timeline 1 for the upgraded system, none of its WAL on timeline 2 or later: %v; want it treated as absent", two, err)
	}
	for _, w := range []string{a.Layout.WALKey(two), "7000000000000000001", "7000000000000000002", "no WAL of database system",
		"pg_upgrade", "backup_sites.<site>.prefix"} {
		if !strings.Contains(ig.Error(), w) {
			t.Errorf("warning %q does not say %s", ig, w)
		}
	}
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fetch %s treated as absent left %s: %v", two, dest, err)
	}
	// The old system still reads its own.
	if err := a.FetchWAL(ctx, two, filepath.Join(t.TempDir(), "h"), FetchOptions{SystemID: sysOld, Timeline: 1}); err != nil {
		t.Errorf("fetch %s for its own system: %v", two, err)
	}

	refused := func(a *Archive, tli uint32, want ...string) {
		t.Helper()
		dest, err := fetch(a, tli)
		if !errors.Is(err, ErrOtherSystem) || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("fetch %s on timeline %d: %v; want it refused (ErrOtherSystem)", two, tli, err)
			return
		}
		for _, w := range append(want, a.Layout.WALKey(two), "7000000000000000001", "7000000000000000002") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("refusal %q does not say %s", err, w)
			}
		}
		if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused fetch of %s left %s: %v", two, dest, err)
		}
	}
	refused(a, 0)
	// Without the private key (wal-fetch cannot read the history file
	// then either), the first pages cannot be read: refused.
	if keys {
		publicOnly := *a
		publicOnly.Codec = &Codec{Compression: a.Codec.Compression, Host: "test", KeyID: a.Codec.KeyID, PublicKey: a.Codec.PublicKey,
			RequireEncryption: true}
		other := &OtherSystemHistoryError{Key: a.Layout.WALKey(two), Timeline: 2, System: "7000000000000000001", Want: sysNew}
		if err := publicOnly.IgnoreOtherHistory(ctx, other, 1, ReplayStart{}); !errors.Is(err, ErrOtherSystem) || errors.Is(err, storage.ErrNotFound) ||
			!strings.Contains(err.Error(), "could not be told") {
			t.Errorf("IgnoreOtherHistory without the private key: %v; want the refusal, saying the WAL could not be told", err)
		}
	}

	own := pushSegmentOf(t, a, "000000030000000000000007", sysNew)
	refused(a, 1, own, "its own 00000002.history")
}

// TestArchive_UpgradedHistoryReplayStart: after a pg_upgrade into the
// same site, the old system's 00000002.history and its segments on
// timeline 2 below where the upgraded cluster's recovery starts (R) are
// passed over unread: the file is absent, without one Open of them (a
// standby asks every few seconds; on object storage each is a GET). The
// upgraded system's own segment on timeline 2 in R's segment is still
// found (refused), and R not known reads them all, as before.
func TestArchive_UpgradedHistoryReplayStart(t *testing.T) {
	testio.WithAndWithoutKeys(t, testUpgradedHistoryReplayStart)
}

func testUpgradedHistoryReplayStart(t *testing.T, keys bool) {
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	a := oldHistorySite(t, keys, sysOld)
	ctx := context.Background()
	const oldSegments = 8
	for n := range uint64(oldSegments) {
		pushSegmentOf(t, a, wal.Segment{Timeline: 2, No: 3 + n}.Name(testSegSize), sysOld)
	}
	counter := &openCounter{Store: a.Store}
	counted := *a
	counted.Store = counter
	other := &OtherSystemHistoryError{Key: a.Layout.WALKey("00000002.history"), Timeline: 2, System: "7000000000000000001", Want: sysNew}
	r := ReplayStart{LSN: wal.Segment{No: 0x10}.StartLSN(testSegSize) + 0x28, SegmentSize: testSegSize}

	ignored := func(from ReplayStart, wantOpens int) {
		t.Helper()
		counter.opens = 0
		err := counted.IgnoreOtherHistory(ctx, other, 1, from)
		if ig, ok := errors.AsType[*IgnoredHistoryError](err); !ok || !ig.NoOwnWAL {
			t.Errorf("IgnoreOtherHistory from %+v: %v; want it treated as absent", from, err)
		}
		if counter.opens != wantOpens {
			t.Errorf("IgnoreOtherHistory from %+v opened %d objects; want %d", from, counter.opens, wantOpens)
		}
	}
	ignored(r, 0)
	ignored(ReplayStart{}, oldSegments)
	// A backup's start bounds it with the segment size it recorded; not
	// recorded, 16 MiB could be too small: no bound.
	ignored((&BackupInfo{StartLSN: r.LSN, WALSegmentSize: testSegSize}).ReplayStart(), 0)
	ignored((&BackupInfo{StartLSN: 0x20000000}).ReplayStart(), oldSegments)

	own := pushSegmentOf(t, a, wal.Segment{Timeline: 2, No: 0x10}.Name(testSegSize), sysNew)
	if err := counted.IgnoreOtherHistory(ctx, other, 1, r); !errors.Is(err, ErrOtherSystem) || !strings.Contains(err.Error(), own) {
		t.Errorf("IgnoreOtherHistory from %+v with %s of the reader's system: %v; want it refused, naming it", r, own, err)
	}
}

// TestClusterReplayStart: the bound is pg_control's REDO location, or
// backup_label's START WAL LOCATION where that is earlier, with
// pg_control's segment size; none for a pg_control layout not known; an
// error for a backup_label without its start.
func TestClusterReplayStart(t *testing.T) {
	control := func(version uint32, redo uint64, segSize uint32) string {
		dir := t.TempDir()
		b := make([]byte, 8192)
		binary.LittleEndian.PutUint32(b[wal.ControlVersionOffset:], version)
		binary.LittleEndian.PutUint64(b[wal.ControlRedoOffset:], redo)
		binary.LittleEndian.PutUint32(b[wal.ControlSegSizeOffset:], segSize)
		if at, err := wal.ControlCRCOffset(b); err == nil {
			binary.LittleEndian.PutUint32(b[at:], wal.ControlCRC(b[:at]))
		}
		if err := os.MkdirAll(filepath.Join(dir, "global"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	label := func(dir, body string) {
		if err := os.WriteFile(filepath.Join(dir, "backup_label"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := func(dir string, w ReplayStart) {
		t.Helper()
		if r, err := ClusterReplayStart(dir); err != nil || r != w {
			t.Errorf("ClusterReplayStart = %+v, %v; want %+v", r, err, w)
		}
	}
	dir := control(1700, 0x5000028, 16<<20)
	want(dir, ReplayStart{LSN: 0x5000028, SegmentSize: 16 << 20})
	label(dir, "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n")
	want(dir, ReplayStart{LSN: 0x2000028, SegmentSize: 16 << 20})
	label(dir, "START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\n")
	want(dir, ReplayStart{LSN: 0x5000028, SegmentSize: 16 << 20})
	label(dir, "CHECKPOINT LOCATION: 0/2000060\n")
	if r, err := ClusterReplayStart(dir); err == nil {
		t.Errorf("ClusterReplayStart with a backup_label without START WAL LOCATION = %+v; want an error", r)
	}
	want(control(1100, 0x5000028, 16<<20), ReplayStart{})

	// A pg_control whose CRC fails (damaged, or torn by the server's
	// rewrite) gives no REDO location: a wrong one would bound the search
	// for the cluster's own WAL wrongly.
	torn := control(1700, 0x5000028, 16<<20)
	f, err := os.OpenFile(filepath.Join(torn, "global", "pg_control"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var redo [8]byte
	binary.LittleEndian.PutUint64(redo[:], 0x9000028)
	if _, err := f.WriteAt(redo[:], wal.ControlRedoOffset); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if r, err := ClusterReplayStart(torn); !errors.Is(err, wal.ErrControlCRC) {
		t.Errorf("ClusterReplayStart of a pg_control whose CRC fails = %+v, %v; want an error wrapping wal.ErrControlCRC", r, err)
	}
}

// TestLowestReplayStart: the lowest of several bounds, and no bound where
// one is none or their segment sizes differ.
func TestLowestReplayStart(t *testing.T) {
	mib := uint64(1 << 20)
	for _, tt := range []struct {
		name string
		rs   []ReplayStart
		want ReplayStart
	}{
		{name: "OK", rs: []ReplayStart{{0x3000000, mib}, {0x2000028, mib}, {0x5000000, mib}}, want: ReplayStart{0x2000028, mib}},
		{name: "OKOne", rs: []ReplayStart{{0x3000000, mib}}, want: ReplayStart{0x3000000, mib}},
		{name: "NoneEmpty"},
		{name: "NoneOneUnbounded", rs: []ReplayStart{{0x3000000, mib}, {0x2000028, 0}}},
		{name: "NoneSizesDiffer", rs: []ReplayStart{{0x3000000, mib}, {0x2000028, 16 * mib}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := LowestReplayStart(tt.rs); got != tt.want {
				t.Errorf("LowestReplayStart(%v) = %v, want %v", tt.rs, got, tt.want)
			}
		})
	}
}

// TestArchive_ForeignSegment: the daemon's hole check passes over an
// archived segment whose first page names another database system (the
// old cluster's, after a pg_upgrade into the same site) or that is no
// longer stored; the streamed system's own segment, and one whose first
// page cannot be read for want of a private key, may be its own; one
// that is not WAL is no answer.
func TestArchive_ForeignSegment(t *testing.T) {
	testio.WithAndWithoutKeys(t, func(t *testing.T, keys bool) {
		ctx := context.Background()
		const sysOld, sysNew = 7000000000000000001, 7000000000000000002
		a := walTestArchive(t, keys)
		pushSegmentOf(t, a, "000000010000000000000004", sysOld)
		pushSegmentOf(t, a, "00000001000000000000000A", sysNew)
		if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey("00000001000000000000000B"), strings.NewReader("not wal"), -1, nil); err != nil {
			t.Fatal(err)
		}
		check := func(a *Archive, name string, want bool) {
			t.Helper()
			if got, err := a.ForeignSegment(ctx, name, sysNew); err != nil || got != want {
				t.Errorf("ForeignSegment(%s) = %v, %v; want %v", name, got, err, want)
			}
		}
		check(a, "000000010000000000000004", true)
		check(a, "00000001000000000000000A", false)
		if got, err := a.ForeignSegment(ctx, "00000001000000000000000B", sysNew); err == nil {
			t.Errorf("ForeignSegment(00000001000000000000000B), not WAL, = %v, nil; want an error (TestArchive_ForeignSegment_ReadFails)", got)
		}
		check(a, "000000010000000000000009", true)
		if keys {
			publicOnly := *a
			publicOnly.Codec = &Codec{Compression: a.Codec.Compression, Host: "test", KeyID: a.Codec.KeyID, PublicKey: a.Codec.PublicKey,
				RequireEncryption: true}
			check(&publicOnly, "000000010000000000000004", false)
		}
		done, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := a.ForeignSegment(done, "000000010000000000000004", sysNew); err == nil {
			t.Error("ForeignSegment with ctx ended: no error")
		}
	})
}
