package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

const testSegSize = 1 << 20

// segName names segment no of timeline 1 (1 MiB).
func segName(no uint64) string { return wal.Segment{Timeline: 1, No: no}.Name(testSegSize) }

// pushSegments pushes segments first..last of timeline 1 (1 MiB) and
// returns their contents by name.
func pushSegments(tb testing.TB, a *Archive, first, last uint64) map[string][]byte {
	tb.Helper()
	dir := tb.TempDir()
	out := map[string][]byte{}
	for no := first; no <= last; no++ {
		name := segName(no)
		data := waltest.Segment(tb, name, testSegSize, int64(no))
		if _, err := a.PushWAL(context.Background(), writeWALFile(tb, dir, name, data), PushOptions{SystemID: testSystemID}); err != nil {
			tb.Fatal(err)
		}
		out[name] = data
	}
	return out
}

func checkFile(tb testing.TB, path string, want []byte) {
	tb.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("%s: content differs (%d bytes, want %d)", path, len(got), len(want))
	}
}

// tamper flips one stored byte of key.
func tamper(tb testing.TB, a *Archive, key string, at int) {
	tb.Helper()
	storetest.Rewrite(tb, a.Store, key, func(b []byte, _ storage.Metadata) []byte {
		if at < 0 {
			at += len(b)
		}
		b[at] ^= 0x40
		return b
	})
}

func TestArchive_FetchWAL(t *testing.T) {
	ctx := context.Background()
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		segs := pushSegments(t, a, 3, 3)
		src := t.TempDir()
		files := map[string][]byte{
			"00000002.history":                         []byte("1\t0/3000000\tno recovery target specified\n"),
			"000000010000000000000002.00000028.backup": []byte("START WAL LOCATION: 0/2000028\n"),
			"000000010000000000000004.partial":         waltest.Segment(t, "000000010000000000000004", testSegSize, 4)[:50000],
		}
		for name, data := range files {
			if _, err := a.PushWAL(ctx, writeWALFile(t, src, name, data), PushOptions{SystemID: testSystemID}); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range segs {
			files[name] = data
		}
		pgwal := t.TempDir()
		for name, data := range files {
			dest := filepath.Join(pgwal, "RECOVERYXLOG")
			if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); err != nil {
				t.Fatalf("encrypted=%v %s: %v", encrypted, name, err)
			}
			if wal.IsPartialName(name) {
				// Delivered at the segment size, ready for pg_wal.
				data = append(append([]byte(nil), data...), make([]byte, testSegSize-len(data))...)
			}
			checkFile(t, dest, data)
		}
		if got := testio.DirNames(t, pgwal); len(got) != 1 || got[0] != "RECOVERYXLOG" {
			t.Fatalf("pg_wal holds %v", got)
		}
	}
}

func TestArchive_FetchWAL_ErrNotFound(t *testing.T) {
	a := walTestArchive(t, false)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	for _, name := range []string{"000000010000000000000007", "00000003.history"} {
		err := a.FetchWAL(context.Background(), name, dest, FetchOptions{})
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: err = %v, want ErrNotFound", name, err)
		}
		if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: dest exists after a miss", name)
		}
	}
	if err := a.FetchWAL(context.Background(), "pg_control", dest, FetchOptions{}); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("bad name: err = %v", err)
	}
}

// The older sites of moved_from are searched in order, each in its own
// store: a site that moved to a new bucket still restores from the old one.
func TestArchive_FetchWAL_MovedFrom(t *testing.T) {
	ctx := context.Background()
	old := walTestArchive(t, true)
	segs := pushSegments(t, old, 5, 5)
	a := walTestArchive(t, true)
	a.Layout = Layout{Prefix: "newsite"}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	name := "000000010000000000000005"
	if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("without moved_from: err = %v", err)
	}
	gone := walTestArchive(t, true)
	gone.Layout = Layout{Prefix: "gone"}
	a.MovedFrom = []*Archive{gone, old}
	o := FetchOptions{}
	if err := a.FetchWAL(ctx, name, dest, o); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dest, segs[name])
	err := a.FetchWAL(ctx, "000000010000000000000006", dest, o)
	if !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "gone/xlog/000000010000000000000006") {
		t.Fatalf("missing everywhere: err = %v", err)
	}
}

// A damaged object never reaches dest: not by the envelope's HMAC, not by
// the compression's checksums, not by the recorded hash, not by the page
// header check.
func TestArchive_FetchWAL_ErrDamaged(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000003"
	key := "site/xlog/" + name
	tests := []struct {
		name      string
		encrypted bool
		setup     func(t *testing.T, a *Archive)
		wantErr   string
	}{
		{"ErrTamperedEncrypted", true, func(t *testing.T, a *Archive) { tamper(t, a, key, 3000) }, ""},
		{"ErrTamperedSnappy", false, func(t *testing.T, a *Archive) { tamper(t, a, key, 3000) }, ""},
		{"ErrHash", false, func(t *testing.T, a *Archive) {
			// Uncompressed and unencrypted, only the hash can tell.
			a.Codec.Compression = ""
			pushSegments(t, a, 3, 3)
			tamper(t, a, key, 5000)
		}, "damaged object"},
		{"ErrHeader", false, func(t *testing.T, a *Archive) {
			data := waltest.Segment(t, "000000010000000000000002", testSegSize, 2)
			if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
				t.Fatal(err)
			}
		}, "recycled or misnamed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := walTestArchive(t, tt.encrypted)
			if tt.name != "ErrHash" && tt.name != "ErrHeader" {
				pushSegments(t, a, 3, 3)
			}
			tt.setup(t, a)
			pgwal := t.TempDir()
			dest := filepath.Join(pgwal, "RECOVERYXLOG")
			err := a.FetchWAL(ctx, name, dest, FetchOptions{Spool: SpoolDir(dest)})
			if err == nil || errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("err = %v, want a damage error", err)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
			if got := testio.DirNames(t, pgwal); len(got) != 0 {
				t.Fatalf("pg_wal holds %v after a failed fetch", got)
			}
		})
	}
}

// TestArchive_FetchWAL_StaleTemp: a temporary file of FetchWAL's naming
// whose flock can be taken is a dead download's, however recent, and is
// removed; one whose lock is held (a live download's, createLockedTemp) is
// kept, however old.
func TestArchive_FetchWAL_StaleTemp(t *testing.T) {
	a := walTestArchive(t, false)
	segs := pushSegments(t, a, 3, 3)
	pgwal := t.TempDir()
	dead := filepath.Join(pgwal, fetchTempPrefix+"000000010000000000000002-123")
	live := filepath.Join(pgwal, fetchTempPrefix+"000000010000000000000003-456")
	for _, p := range []string{dead, live} {
		if err := os.WriteFile(p, []byte("partial download"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleFetchTemp)
	if err := os.Chtimes(live, old, old); err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file: this one conflicts with
	// FetchWAL's in the same process.
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := flockExclusive(f); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	if err := a.FetchWAL(context.Background(), "000000010000000000000003", dest, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dest, segs["000000010000000000000003"])
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Error("a recent temporary file whose lock is free (a dead download's) kept")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("an old temporary file whose lock is held (a live download's) removed")
	}
}

func TestArchive_PrefetchWAL(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	segs := pushSegments(t, a, 1, 6)
	name := segName
	pgwal := t.TempDir()
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	spoolDir := SpoolDir(dest)
	o := FetchOptions{Spool: spoolDir}
	po := PrefetchOptions{Count: 3}

	// Nothing delivered yet: the worker has nothing to do.
	if res, err := a.PrefetchWAL(ctx, spoolDir, po); err != nil || len(res.Fetched) != 0 {
		t.Fatalf("empty spool: %+v, %v", res, err)
	}
	// Leftovers of a killed worker and of an earlier recovery.
	if err := os.WriteFile(filepath.Join(spoolDir, spoolTmpPrefix+name(2)+"-1"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spoolDir, name(0)), segs[name(1)], 0o600); err != nil {
		t.Fatal(err)
	}

	if err := a.FetchWAL(ctx, name(1), dest, o); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dest, segs[name(1)])
	res, err := a.PrefetchWAL(ctx, spoolDir, po)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(res.Fetched)
	if want := []string{name(2), name(3), name(4)}; strings.Join(res.Fetched, " ") != strings.Join(want, " ") || res.Missing != "" {
		t.Fatalf("prefetched %+v, want %v", res, want)
	}
	if got, want := strings.Join(testio.DirNames(t, spoolDir), " "), strings.Join([]string{name(2), name(2) + spoolSumSuffix, name(3), name(3) + spoolSumSuffix,
		name(4), name(4) + spoolSumSuffix, "identity", "lock", "want"}, " "); got != want {
		t.Fatalf("spool holds %s, want %s", got, want)
	}

	// Spooled segments are served without the store.
	for no := uint64(2); no <= 4; no++ {
		if err := a.Store.Delete(ctx, a.Layout.WALKey(name(no))); err != nil {
			t.Fatal(err)
		}
	}
	for no := uint64(2); no <= 3; no++ {
		if err := a.FetchWAL(ctx, name(no), dest, o); err != nil {
			t.Fatalf("%s from the spool: %v", name(no), err)
		}
		checkFile(t, dest, segs[name(no)])
	}
	// The next run starts after segment 3: 4 is spooled, 5 and 6 are
	// fetched.
	res, err = a.PrefetchWAL(ctx, spoolDir, po)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(res.Fetched)
	if strings.Join(res.Fetched, " ") != name(5)+" "+name(6) || res.Missing != "" {
		t.Fatalf("second run %+v", res)
	}
	for no := uint64(4); no <= 6; no++ {
		if err := a.FetchWAL(ctx, name(no), dest, o); err != nil {
			t.Fatal(err)
		}
		checkFile(t, dest, segs[name(no)])
	}
	// After 6 the worker finds the end of the archive.
	if res, err = a.PrefetchWAL(ctx, spoolDir, po); err != nil || len(res.Fetched) != 0 || res.Missing != name(7) {
		t.Fatalf("third run %+v, %v", res, err)
	}
	// The end of the archive empties the spool.
	if err := os.WriteFile(filepath.Join(spoolDir, name(9)), segs[name(1)], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.FetchWAL(ctx, name(7), dest, o); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("end of archive: err = %v", err)
	}
	if got := strings.Join(testio.DirNames(t, spoolDir), " "); got != "identity lock want" {
		t.Fatalf("spool after the end of the archive: %s", got)
	}
}

// A spooled file that does not fit its name is dropped and the segment is
// downloaded instead.
func TestArchive_FetchWAL_BadSpooledFile(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	segs := pushSegments(t, a, 4, 4)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	spoolDir := SpoolDir(dest)
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	name := "000000010000000000000004"
	if err := os.WriteFile(filepath.Join(spoolDir, name), waltest.Segment(t, "000000010000000000000003", testSegSize, 3), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.FetchWAL(ctx, name, dest, FetchOptions{Spool: spoolDir}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dest, segs[name])
}

func TestArchive_PrefetchWAL_ErrBusy(t *testing.T) {
	a := walTestArchive(t, false)
	dir := filepath.Join(t.TempDir(), SpoolDirName)
	if PrefetchRunning(dir) {
		t.Fatal("running before any worker")
	}
	sp, err := openSpool(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	lock, err := sp.lock()
	if err != nil {
		t.Fatal(err)
	}
	if !PrefetchRunning(dir) {
		t.Fatal("lock held but not running")
	}
	if _, err := a.PrefetchWAL(context.Background(), dir, PrefetchOptions{Count: 2}); !errors.Is(err, ErrPrefetchBusy) {
		t.Fatalf("err = %v, want ErrPrefetchBusy", err)
	}
	lock.Close()
	if PrefetchRunning(dir) {
		t.Fatal("running after unlock")
	}
}

// A damaged object stops the worker with an error and spools nothing under
// its name.
func TestArchive_PrefetchWAL_ErrDamaged(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	pushSegments(t, a, 1, 4)
	tamper(t, a, "site/xlog/000000010000000000000003", -10)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	o := FetchOptions{Spool: SpoolDir(dest)}
	if err := a.FetchWAL(ctx, "000000010000000000000001", dest, o); err != nil {
		t.Fatal(err)
	}
	_, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 3})
	if err == nil {
		t.Fatal("damaged segment prefetched without error")
	}
	for _, n := range testio.DirNames(t, o.Spool) {
		if strings.Contains(n, "000000010000000000000003") {
			t.Fatalf("spool holds %s", n)
		}
	}
	if err := a.FetchWAL(ctx, "000000010000000000000002", dest, o); err != nil {
		t.Fatal(err)
	}
	if err := a.FetchWAL(ctx, "000000010000000000000003", dest, o); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("damaged segment: err = %v", err)
	}
}

// A segment named on a timeline whose first page is on an older one is
// delivered only when it is that timeline's first segment, as its history
// says: the segment of the older timeline that a bucket writer put under
// the name (no key needed: encrypted objects move whole) is refused, not
// handed to PostgreSQL, which would end recovery at its first page
// without an error. Without the history it cannot be checked: refused too.
func TestArchive_FetchWAL_ErrWrongTimeline(t *testing.T) {
	ctx := context.Background()
	tl := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(testSegSize) }
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		src := t.TempDir()
		push := func(name string, data []byte) {
			t.Helper()
			if _, err := a.PushWAL(ctx, writeWALFile(t, src, name, data), PushOptions{SystemID: testSystemID}); err != nil {
				t.Fatal(err)
			}
		}
		// Timeline 2 began inside segment 3 (1 MiB segments): its segment 3
		// starts as a copy of timeline 1's; its segment 4 is its own.
		first := waltest.Segment(t, tl(1, 3), testSegSize, 3)
		own := waltest.Segment(t, tl(2, 4), testSegSize, 4)
		older := waltest.Segment(t, tl(1, 4), testSegSize, 4)
		// Timeline 3 has no history stored.
		noHistory := waltest.Segment(t, tl(2, 6), testSegSize, 6)
		push("00000002.history", []byte("1\t0/380000\tno recovery target specified\n"))
		push(tl(2, 3), first)
		push(tl(2, 4), own)
		push(tl(1, 4), older)
		// The bucket writer replaces timeline 2's segment 4 with timeline
		// 1's, stored bytes and metadata as they are.
		data, obj := storetest.Read(t, a.Store, a.Layout.WALKey(tl(1, 4)))
		if err := a.Store.Put(ctx, a.Layout.WALKey(tl(2, 4)), bytes.NewReader(data), obj.Metadata); err != nil {
			t.Fatal(err)
		}
		push(tl(3, 6), noHistory)
		// hoard verify --full checks the files as wal-fetch does.
		l, err := a.ListStoredWAL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for name, wantErr := range map[string]bool{tl(2, 3): false, tl(2, 4): true, tl(3, 6): true, tl(1, 4): false} {
			if err := l.Segments[name].Check(ctx); (err != nil) != wantErr {
				t.Errorf("encrypted=%v: Check of %s = %v, want an error: %v", encrypted, name, err, wantErr)
			}
		}
		pgwal := t.TempDir()
		dest := filepath.Join(pgwal, "RECOVERYXLOG")
		if err := a.FetchWAL(ctx, tl(2, 3), dest, FetchOptions{}); err != nil {
			t.Fatalf("encrypted=%v: timeline 2's first segment: %v", encrypted, err)
		}
		checkFile(t, dest, first)
		if err := os.Remove(dest); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{
			tl(2, 4): "segment of another timeline",
			tl(3, 6): "00000003.history, which says whether it may be, is not in the archive",
		} {
			err := a.FetchWAL(ctx, name, dest, FetchOptions{})
			if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), want) {
				t.Errorf("encrypted=%v: fetch %s = %v, want an error saying %q", encrypted, name, err, want)
			}
			if name == tl(2, 4) && !errors.Is(err, ErrWrongTimeline) {
				t.Errorf("encrypted=%v: fetch %s = %v, want ErrWrongTimeline", encrypted, name, err)
			}
			if got := testio.DirNames(t, pgwal); len(got) != 0 {
				t.Errorf("encrypted=%v: fetch %s left %v in pg_wal", encrypted, name, got)
			}
		}
	}
}

// withPages writes a short page header (PostgreSQL 15's magic) at every
// 8 KiB page after the first of segment b, which starts at start: the
// page's address and the timeline tliAt gives for it.
func withPages(b []byte, start uint64, tliAt func(addr uint64) uint32) []byte {
	b = append([]byte(nil), b...)
	for off := 8192; off < len(b); off += 8192 {
		addr := start + uint64(off)
		binary.LittleEndian.PutUint16(b[off:], 0xD110)
		binary.LittleEndian.PutUint16(b[off+2:], 0)
		binary.LittleEndian.PutUint32(b[off+4:], tliAt(addr))
		binary.LittleEndian.PutUint64(b[off+8:], addr)
	}
	return b
}

// The old timeline's own copy of the segment where a timeline began
// starts with the same page as the new timeline's; past the switch point
// its pages are still the old timeline's, and recovery would replay the
// old timeline's WAL there as the new one's: refused, not delivered. The
// new timeline's copy (old pages before the switch point, new ones from
// it) and the old copy under its own name are delivered.
func TestArchive_FetchWAL_ErrOldTimelineSwitchSegment(t *testing.T) {
	ctx := context.Background()
	name := func(tli uint32) string { return wal.Segment{Timeline: tli, No: 3}.Name(testSegSize) }
	const start, switchAt = 0x300000, 0x384000 // timeline 2 began at 0/384000
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		src := t.TempDir()
		base := waltest.Segment(t, name(1), testSegSize, 3)
		newer := withPages(base, start, func(addr uint64) uint32 {
			if addr >= switchAt {
				return 2
			}
			return 1
		})
		older := withPages(base, start, func(uint64) uint32 { return 1 })
		for n, data := range map[string][]byte{"00000002.history": []byte("1\t0/384000\tno recovery target specified\n"), name(2): newer, name(1): older} {
			if _, err := a.PushWAL(ctx, writeWALFile(t, src, n, data), PushOptions{SystemID: testSystemID}); err != nil {
				t.Fatal(err)
			}
		}
		pgwal := t.TempDir()
		dest := filepath.Join(pgwal, "RECOVERYXLOG")
		for n, want := range map[string][]byte{name(2): newer, name(1): older} {
			if err := a.FetchWAL(ctx, n, dest, FetchOptions{}); err != nil {
				t.Fatalf("encrypted=%v: %s: %v", encrypted, n, err)
			}
			checkFile(t, dest, want)
		}
		if err := os.Remove(dest); err != nil {
			t.Fatal(err)
		}
		data, obj := storetest.Read(t, a.Store, a.Layout.WALKey(name(1)))
		if err := a.Store.Put(ctx, a.Layout.WALKey(name(2)), bytes.NewReader(data), obj.Metadata); err != nil {
			t.Fatal(err)
		}
		err := a.FetchWAL(ctx, name(2), dest, FetchOptions{})
		if !errors.Is(err, ErrWrongTimeline) || !strings.Contains(err.Error(), "page at 0/384000 is on timeline 1") {
			t.Errorf("encrypted=%v: fetch of the old timeline's copy under %s = %v, want ErrWrongTimeline at 0/384000", encrypted, name(2), err)
		}
		if got := testio.DirNames(t, pgwal); len(got) != 0 {
			t.Errorf("encrypted=%v: the refused fetch left %v in pg_wal", encrypted, got)
		}
		l, err := a.ListStoredWAL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Segments[name(2)].Check(ctx); !errors.Is(err, ErrWrongTimeline) {
			t.Errorf("encrypted=%v: Check of the old timeline's copy under %s = %v, want ErrWrongTimeline", encrypted, name(2), err)
		}
	}
}

// TestArchive_FetchWAL_ErrSyncDir: when the directory of %p cannot be
// fsynced after a segment is renamed into it, from the spool or from
// storage, wal-fetch fails with that error instead of answering
// PostgreSQL that the segment is there (the disk has said the rename may
// not last) or that it is not archived.
func TestArchive_FetchWAL_ErrSyncDir(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	segs := pushSegments(t, a, 1, 3)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	spoolDir := SpoolDir(dest)
	o := FetchOptions{Spool: spoolDir}
	if err := a.FetchWAL(ctx, segName(1), dest, o); err != nil {
		t.Fatal(err)
	}
	// Segment 2 is spooled only (its stored copy deleted since, as
	// retention may), 3 only stored. Were the spooled segment given up for
	// the stored copy, its absence would read as the end of the archive
	// (exit 1) and PostgreSQL would end recovery early.
	if res, err := a.PrefetchWAL(ctx, spoolDir, PrefetchOptions{Count: 1}); err != nil || len(res.Fetched) != 1 {
		t.Fatalf("prefetch: %+v, %v", res, err)
	}
	if err := a.Store.Delete(ctx, a.Layout.WALKey(segName(2))); err != nil {
		t.Fatal(err)
	}
	errSync := errors.New("injected directory fsync error")
	pgwal := filepath.Dir(dest)
	syncDir = func(dir *os.Root) error {
		if dir.Name() == pgwal {
			return errSync
		}
		return storage.SyncRoot(dir)
	}
	t.Cleanup(func() { syncDir = storage.SyncRoot })
	for _, c := range []struct {
		name string
		seg  string
	}{
		{"Spooled", segName(2)},
		{"Stored", segName(3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := a.FetchWAL(ctx, c.seg, dest, o); !errors.Is(err, errSync) {
				t.Errorf("FetchWAL with a failing directory fsync = %v, want %v", err, errSync)
			}
		})
	}
	syncDir = storage.SyncRoot
	if err := a.FetchWAL(ctx, segName(3), dest, o); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dest, segs[segName(3)])
}
