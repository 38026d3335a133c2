package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// moveObject stores src's bytes under dst with md (src's own metadata
// when nil): what someone who can write the storage, holding no key, can
// do with any object.
func moveObject(tb testing.TB, a *Archive, src, dst string, md storage.Metadata) {
	tb.Helper()
	ctx := context.Background()
	rc, own, err := a.Store.Open(ctx, src)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		tb.Fatal(err)
	}
	if md == nil {
		md = own.Metadata
	}
	if err := a.Store.Put(ctx, dst, bytes.NewReader(b), md); err != nil {
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
		if _, err := a.PushWAL(context.Background(), writeWALFile(tb, dir, h.name, []byte(h.body)), PushOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
}

// readAndFetch reads history file name of a as restore does and fetches
// it as wal-fetch does, and returns their errors.
func readAndFetch(t *testing.T, a *Archive, name string) (readErr, fetchErr error) {
	t.Helper()
	f := WALFile{Name: name, Key: a.Layout.WALKey(name), Archive: a}
	_, readErr = f.ReadHistory(context.Background())
	fetchErr = a.FetchWAL(context.Background(), name, filepath.Join(t.TempDir(), "RECOVERYHISTORY"), FetchOptions{})
	if (readErr == nil) != (f.Check(context.Background()) == nil) {
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
		if _, err := a.PushWAL(ctx, p, PushOptions{}); err != nil {
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
