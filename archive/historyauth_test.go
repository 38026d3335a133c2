package archive

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// testSystemID is the system identifier the tests' history files are
// pushed for.
const testSystemID = 7000000000000000001

// moveObject stores src's bytes under dst with md (src's own metadata
// when nil): what someone who can write the storage, holding no key, can
// do with any object.
func moveObject(tb testing.TB, a *Archive, src, dst string, md storage.Metadata) {
	tb.Helper()
	b, own := storetest.Read(tb, a.Store, src)
	if md == nil {
		md = own.Metadata
	}
	if err := a.Store.Put(context.Background(), dst, bytes.NewReader(b), md); err != nil {
		tb.Fatal(err)
	}
}

// unsignedMetadata returns key's metadata without its HMAC.
func unsignedMetadata(tb testing.TB, a *Archive, key string) storage.Metadata {
	tb.Helper()
	obj, err := a.Store.Stat(context.Background(), key)
	if err != nil {
		tb.Fatal(err)
	}
	md := maps.Clone(obj.Metadata)
	delete(md, MetaBackupMAC)
	return md
}

// pushHistories pushes the history files of timelines 2 and 3 into a.
func pushHistories(tb testing.TB, a *Archive) {
	tb.Helper()
	dir := tb.TempDir()
	// In timeline order, as PostgreSQL archives them: the marker names
	// the first one pushed.
	for _, h := range []struct{ name, body string }{
		{"00000002.history", "1\t0/5000000\tno recovery target specified\n"},
		{"00000003.history", "1\t0/5000000\tno recovery target specified\n2\t0/8000000\tno recovery target specified\n"},
	} {
		if _, err := a.PushWAL(context.Background(), writeWALFile(tb, dir, h.name, []byte(h.body)), PushOptions{SystemID: testSystemID}); err != nil {
			tb.Fatal(err)
		}
	}
}

// readAndFetch reads history file name of a as restore does and fetches
// it as wal-fetch does, and returns their errors.
func readAndFetch(t *testing.T, a *Archive, name string) (readErr, fetchErr error) {
	t.Helper()
	return readAndFetchFor(t, a, name, 0)
}

// readAndFetchFor is readAndFetch for the cluster whose system identifier
// is system (0: not known).
func readAndFetchFor(t *testing.T, a *Archive, name string, system uint64) (readErr, fetchErr error) {
	t.Helper()
	f := WALFile{Name: name, Key: a.Layout.WALKey(name), Archive: a}
	_, readErr = f.ReadHistory(context.Background(), system)
	fetchErr = a.FetchWAL(context.Background(), name, filepath.Join(t.TempDir(), "RECOVERYHISTORY"), FetchOptions{SystemID: system})
	if (readErr == nil) != (f.CheckSystem(context.Background(), system) == nil) {
		t.Errorf("WALFile.Check and ReadHistory disagree on %s (read: %v)", name, readErr)
	}
	return readErr, fetchErr
}

func TestArchive_HistoryAuth(t *testing.T) {
	ctx := context.Background()
	two, three := "00000002.history", "00000003.history"
	setup := func(t *testing.T) *Archive {
		a := walTestArchive(t, true)
		a.Codec.RequireEncryption = true
		pushHistories(t, a)
		return a
	}
	ok := func(t *testing.T, a *Archive, name string) {
		t.Helper()
		if rerr, ferr := readAndFetch(t, a, name); rerr != nil || ferr != nil {
			t.Fatalf("read: %v, fetch: %v; want both to succeed", rerr, ferr)
		}
	}
	refused := func(t *testing.T, a *Archive, name string, want error) {
		t.Helper()
		rerr, ferr := readAndFetch(t, a, name)
		for _, err := range []error{rerr, ferr} {
			if !errors.Is(err, want) {
				t.Errorf("got %v, want %v", err, want)
			}
		}
	}

	t.Run("OK", func(t *testing.T) {
		a := setup(t)
		ok(t, a, two)
		ok(t, a, three)
		obj, err := a.Store.Stat(ctx, a.Layout.SignedHistoriesKey())
		if err != nil {
			t.Fatalf("marker: %v", err)
		}
		if got := obj.Metadata[MetaFirstSignedTimeline]; got != "2" {
			t.Errorf("marker names timeline %q, want 2 (the first signed)", got)
		}
	})
	t.Run("ErrMoved", func(t *testing.T) {
		a := setup(t)
		moveObject(t, a, a.Layout.WALKey(two), a.Layout.WALKey(three), nil)
		refused(t, a, three, ErrHistoryNotAuthentic)
	})
	t.Run("ErrStripped", func(t *testing.T) {
		a := setup(t)
		moveObject(t, a, a.Layout.WALKey(two), a.Layout.WALKey(three), unsignedMetadata(t, a, a.Layout.WALKey(two)))
		refused(t, a, three, ErrHistoryNotAuthentic)
	})
	t.Run("ErrOtherMetadata", func(t *testing.T) {
		// 00000002.history's bytes with 00000003.history's own metadata,
		// HMAC and hash included: the hash does not match.
		a := setup(t)
		obj, err := a.Store.Stat(ctx, a.Layout.WALKey(three))
		if err != nil {
			t.Fatal(err)
		}
		moveObject(t, a, a.Layout.WALKey(two), a.Layout.WALKey(three), obj.Metadata)
		rerr, ferr := readAndFetch(t, a, three)
		if rerr == nil || ferr == nil {
			t.Fatalf("read: %v, fetch: %v; want both to fail on the hash", rerr, ferr)
		}
	})
	t.Run("ErrMarkerReplaced", func(t *testing.T) {
		// The marker written over with another object's bytes and
		// metadata: every history file must then be signed.
		a := setup(t)
		moveObject(t, a, a.Layout.WALKey(two), a.Layout.SignedHistoriesKey(), nil)
		ok(t, a, three)
		moveObject(t, a, a.Layout.WALKey(two), a.Layout.WALKey(two), unsignedMetadata(t, a, a.Layout.WALKey(two)))
		refused(t, a, two, ErrHistoryNotAuthentic)
	})
	t.Run("Unsigned", func(t *testing.T) {
		// PGHoard's or an older hoard's history files: no HMAC, no
		// marker. Then hoard signs timeline 4's: the older ones are
		// still read, an unsigned one of timeline 4 is not.
		a := walTestArchive(t, true)
		a.Codec.RequireEncryption = true
		for _, name := range []string{two, three} {
			body := []byte("1\t0/5000000\tno recovery target specified\n")
			// Stored through the codec alone: encrypted, not signed.
			md := storage.Metadata{MetaHash: sha1Hex(body), MetaHashAlgorithm: "sha1"}
			if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(name), bytes.NewReader(body), int64(len(body)), md); err != nil {
				t.Fatal(err)
			}
			ok(t, a, name)
		}
		four := "00000004.history"
		p := filepath.Join(t.TempDir(), four)
		if err := os.WriteFile(p, []byte("1\t0/5000000\tno recovery target specified\n3\t0/9000000\tx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID}); err != nil {
			t.Fatal(err)
		}
		ok(t, a, two)
		ok(t, a, three)
		ok(t, a, four)
		moveObject(t, a, a.Layout.WALKey(three), a.Layout.WALKey(four), nil)
		refused(t, a, four, ErrHistoryNotAuthentic)
	})
	t.Run("NoKeys", func(t *testing.T) {
		// A site without keys authenticates nothing.
		a := walTestArchive(t, false)
		pushHistories(t, a)
		if _, err := a.Store.Stat(ctx, a.Layout.SignedHistoriesKey()); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("marker in a site without keys: %v", err)
		}
		moveObject(t, a, a.Layout.WALKey(two), a.Layout.WALKey(three), nil)
		ok(t, a, three)
	})
}

// TestCopy_SignedHistories: archive-copy into a site of another name
// keeps the history files' HMACs and the marker valid there.
func TestCopy_SignedHistories(t *testing.T) {
	src := walTestArchive(t, true)
	src.Codec.RequireEncryption = true
	pushHistories(t, src)
	dst := &Archive{Store: storage.NewMem(), Codec: &Codec{PrivateKeys: src.Codec.PrivateKeys, RequireEncryption: true},
		Layout: Layout{Prefix: "copy"}, Site: "copy"}
	res, err := Copy(context.Background(), CopyOptions{From: src, To: dst})
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("copy: %v, failed %v", err, res.Failed)
	}
	for _, name := range []string{"00000002.history", "00000003.history"} {
		if rerr, ferr := readAndFetch(t, dst, name); rerr != nil || ferr != nil {
			t.Fatalf("%s in the copy: read: %v, fetch: %v", name, rerr, ferr)
		}
	}
	moveObject(t, dst, dst.Layout.WALKey("00000002.history"), dst.Layout.WALKey("00000003.history"),
		unsignedMetadata(t, dst, dst.Layout.WALKey("00000002.history")))
	if _, err := dst.Store.Stat(context.Background(), dst.Layout.SignedHistoriesKey()); err != nil {
		t.Fatalf("marker not copied: %v", err)
	}
	if rerr, _ := readAndFetch(t, dst, "00000003.history"); !errors.Is(rerr, ErrHistoryNotAuthentic) {
		t.Fatalf("stripped history in the copy: %v, want %v", rerr, ErrHistoryNotAuthentic)
	}
}

// putV1History stores history file name with body in a as a hoard from
// before history files were bound to a system did: signed with the v1
// label, its marker stored first.
func putV1History(tb testing.TB, a *Archive, name, body string) {
	tb.Helper()
	ctx := context.Background()
	tli, err := wal.ParseHistoryFileName(name)
	if err != nil {
		tb.Fatal(err)
	}
	mark := storage.Metadata{MetaFormat: "hoard-signed-histories-v1", MetaFirstSignedTimeline: strconv.FormatUint(uint64(tli), 10)}
	if err := a.Codec.signNamed(historyMACLabel, signedHistoriesName, mark, signedHistoriesMACKeys); err != nil {
		tb.Fatal(err)
	}
	if _, err := a.Codec.Create(ctx, a.Store, a.Layout.SignedHistoriesKey(), bytes.NewReader(nil), 0, mark); err != nil && !errors.Is(err, storage.ErrExist) {
		tb.Fatal(err)
	}
	md := storage.Metadata{MetaHash: sha1Hex([]byte(body)), MetaHashAlgorithm: "sha1"}
	if err := a.Codec.signNamed(historyMACLabel, name, md, historyMACKeys); err != nil {
		tb.Fatal(err)
	}
	if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(name), strings.NewReader(body), int64(len(body)), md); err != nil {
		tb.Fatal(err)
	}
}

// pushHistory pushes history file name with body into a for system.
func pushHistory(tb testing.TB, a *Archive, name, body string, system uint64) error {
	tb.Helper()
	_, err := a.PushWAL(context.Background(), writeWALFile(tb, tb.TempDir(), name, []byte(body)), PushOptions{SystemID: system})
	return err
}

// TestArchive_HistorySystem: where sites share a key pair, site B's
// signed history file (or its marker) copied into site A is refused by
// A's readers, which know A's system identifier, naming both; A's own
// history files, signed before (v1) and after (v2), are read; a v1 file
// at or above the timeline the v2 marker names is refused.
func TestArchive_HistorySystem(t *testing.T) {
	ctx := context.Background()
	const sysA, sysB = 7000000000000000001, 7000000000000000002
	two, three, four := "00000002.history", "00000003.history", "00000004.history"
	body := "1\t0/5000000\tno recovery target specified\n"
	sites := func(t *testing.T) (a, b *Archive) {
		a = walTestArchive(t, true)
		a.Codec.RequireEncryption = true
		b = &Archive{Store: storage.NewMem(), Codec: a.Codec, Layout: a.Layout, Site: a.Site}
		return a, b
	}
	ok := func(t *testing.T, a *Archive, name string, system uint64) {
		t.Helper()
		if rerr, ferr := readAndFetchFor(t, a, name, system); rerr != nil || ferr != nil {
			t.Fatalf("%s for %d: read: %v, fetch: %v; want both to succeed", name, system, rerr, ferr)
		}
	}
	refused := func(t *testing.T, a *Archive, name string, system uint64, want ...error) {
		t.Helper()
		rerr, ferr := readAndFetchFor(t, a, name, system)
		for _, err := range []error{rerr, ferr} {
			for _, w := range want {
				if !errors.Is(err, w) {
					t.Errorf("%s for %d: got %v, want %v", name, system, err, w)
				}
			}
		}
	}
	copyFrom := func(t *testing.T, dst, src *Archive, key string) {
		t.Helper()
		rc, obj, err := src.Store.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if err := dst.Store.Put(ctx, key, rc, obj.Metadata); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("ErrOtherSystem", func(t *testing.T) {
		a, b := sites(t)
		for _, s := range []struct {
			arc *Archive
			sys uint64
		}{{a, sysA}, {b, sysB}} {
			for _, n := range []string{two, three} {
				if err := pushHistory(t, s.arc, n, body, s.sys); err != nil {
					t.Fatal(err)
				}
			}
		}
		ok(t, a, three, sysA)
		copyFrom(t, a, b, a.Layout.WALKey(three))
		refused(t, a, three, sysA, ErrHistoryNotAuthentic, ErrOtherSystem)
		rerr, _ := readAndFetchFor(t, a, three, sysA)
		for _, w := range []string{a.Layout.WALKey(three), "7000000000000000001", "7000000000000000002"} {
			if rerr == nil || !strings.Contains(rerr.Error(), w) {
				t.Errorf("error %v does not name %s", rerr, w)
			}
		}
		// A reader that does not know the system cannot tell.
		ok(t, a, three, 0)
		ok(t, a, two, sysA)
	})
	t.Run("ErrSystemStripped", func(t *testing.T) {
		// A v2 file without its system identifier is checked as v1:
		// the label differs, and it does not verify.
		a, _ := sites(t)
		if err := pushHistory(t, a, two, body, sysA); err != nil {
			t.Fatal(err)
		}
		md := unsignedMetadata(t, a, a.Layout.WALKey(two))
		obj, _ := a.Store.Stat(ctx, a.Layout.WALKey(two))
		md[MetaBackupMAC] = obj.Metadata[MetaBackupMAC]
		delete(md, MetaSystemID)
		moveObject(t, a, a.Layout.WALKey(two), a.Layout.WALKey(two), md)
		refused(t, a, two, sysA, ErrHistoryNotAuthentic)
		refused(t, a, two, 0, ErrHistoryNotAuthentic)
	})
	// upgraded returns sites whose A had an older hoard sign timelines
	// 2 and 3 (v1) and this one sign 4 with its system.
	upgraded := func(t *testing.T) (a, b *Archive) {
		a, b = sites(t)
		putV1History(t, a, two, body)
		putV1History(t, a, three, body)
		if err := pushHistory(t, a, four, body, sysA); err != nil {
			t.Fatal(err)
		}
		return a, b
	}

	t.Run("V1ThenV2", func(t *testing.T) {
		// The v2 marker names timeline 4 and A's system.
		a, b := upgraded(t)
		obj, err := a.Store.Stat(ctx, a.Layout.SignedHistoriesV2Key())
		if err != nil {
			t.Fatalf("v2 marker: %v", err)
		}
		if got, want := obj.Metadata[MetaFirstSignedTimeline], "4"; got != want {
			t.Errorf("v2 marker names timeline %s, want %s", got, want)
		}
		if got, want := obj.Metadata[MetaSystemID], "7000000000000000001"; got != want {
			t.Errorf("v2 marker names system %s, want %s", got, want)
		}
		for _, sys := range []uint64{sysA, 0} {
			ok(t, a, two, sys)
			ok(t, a, three, sys)
			ok(t, a, four, sys)
		}
		// Site B's v1 file of timeline 4 (B upgraded later) in place of
		// A's v2 one, and one of timeline 5 above it: refused.
		putV1History(t, b, four, body)
		copyFrom(t, a, b, a.Layout.WALKey(four))
		putV1History(t, b, "00000005.history", body)
		copyFrom(t, a, b, a.Layout.WALKey("00000005.history"))
		for _, sys := range []uint64{sysA, 0} {
			refused(t, a, four, sys, ErrHistoryNotAuthentic)
			refused(t, a, "00000005.history", sys, ErrHistoryNotAuthentic)
		}
	})
	t.Run("ErrForeignMarker", func(t *testing.T) {
		// B's v2 marker (timeline 9) written over A's: A's readers then
		// refuse every v1 file, which B's marker would have let through
		// below 9.
		a, b := upgraded(t)
		if err := pushHistory(t, b, "00000009.history", body, sysB); err != nil {
			t.Fatal(err)
		}
		copyFrom(t, a, b, a.Layout.SignedHistoriesV2Key())
		refused(t, a, three, sysA, ErrHistoryNotAuthentic)
		ok(t, a, four, sysA)
		ok(t, a, three, 0)
	})
	t.Run("ErrNoSystem", func(t *testing.T) {
		// A history file whose system cannot be found is not stored in
		// a site that signs; in one without keys it is.
		a, _ := sites(t)
		if err := pushHistory(t, a, two, body, 0); err == nil {
			t.Fatal("pushed without a system identifier")
		}
		if _, err := a.Store.Stat(ctx, a.Layout.WALKey(two)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("stored: %v", err)
		}
		plain := walTestArchive(t, false)
		if err := pushHistory(t, plain, two, body, 0); err != nil {
			t.Fatal(err)
		}
	})
}
