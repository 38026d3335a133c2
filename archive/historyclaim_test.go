package archive

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// storedClaim returns the system key's metadata claims ("" for none).
func storedClaim(t *testing.T, a *Archive, key string) string {
	t.Helper()
	obj, err := a.Store.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return obj.Metadata[MetaSystemID]
}

// TestArchive_HistoryClaimWriters: every writer of a history file records
// the writer's system identifier as its metadata (MetaSystemID), with and
// without keys: the daemon (PushWAL with the system IDENTIFY_SYSTEM
// gave), wal-push (PushWAL reading pg_control of the data directory whose
// pg_wal holds the file), archive-sync (Sync), and archive-copy keeps it.
// Without keys, a history file whose pg_control cannot be read is stored
// as before, without a claim.
func TestArchive_HistoryClaimWriters(t *testing.T) {
	ctx := context.Background()
	const sys = 7000000000000000001
	want := strconv.FormatUint(sys, 10)
	body := "1\t0/5000000\tno recovery target specified\n"
	for _, keys := range []bool{false, true} {
		a := walTestArchive(t, keys)
		a.Codec.RequireEncryption = keys
		pgdata := dataDirOf(t, sys)
		walDir := filepath.Join(pgdata, "pg_wal")

		// The daemon: the system is passed.
		if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), "00000002.history", []byte(body)), PushOptions{SystemID: sys}); err != nil {
			t.Fatal(err)
		}
		// wal-push: read from pg_control.
		if _, err := a.PushWAL(ctx, writeWALFile(t, walDir, "00000003.history", []byte(body)), PushOptions{}); err != nil {
			t.Fatal(err)
		}
		// archive-sync: the local history file the archive lacks.
		writeWALFile(t, walDir, "00000004.history", []byte(body))
		if _, err := a.Sync(ctx, SyncOptions{PGData: pgdata, Logger: zerolog.Nop()}); err != nil {
			t.Fatal(err)
		}
		// archive-copy, into a site of another name.
		dst := &Archive{Store: storage.NewMem(), Codec: a.Codec, Layout: Layout{Prefix: "copy"}, Site: "copy"}
		t.Cleanup(func() { dst.Store.Close() })
		if res, err := Copy(ctx, CopyOptions{From: a, To: dst}); err != nil || len(res.Failed) > 0 {
			t.Fatalf("copy: %v, failed %v", err, res.Failed)
		}
		for _, name := range []string{"00000002.history", "00000003.history", "00000004.history"} {
			for _, s := range []*Archive{a, dst} {
				if got := storedClaim(t, s, s.Layout.WALKey(name)); got != want {
					t.Errorf("keys %v: %s holds system %q, want %s", keys, s.Layout.WALKey(name), got, want)
				}
			}
		}
		if keys {
			continue
		}
		// No data directory: stored, claiming nothing.
		if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), "00000005.history", []byte(body)), PushOptions{}); err != nil {
			t.Fatalf("push without pg_control in a site without keys: %v", err)
		}
		if got := storedClaim(t, a, a.Layout.WALKey("00000005.history")); got != "" {
			t.Errorf("a history file of an unknown system claims %q", got)
		}
	}
}

// TestArchive_HistoryClaimKeyed: in a site with keys a claim is never
// looked at on its own, so rewriting it changes nothing: a signed file
// whose claim names another system no longer verifies (refused, as any
// rewritten metadata, not as another system's), and an unsigned file
// from before the markers (PGHoard's) with a claim of another system is
// read as without it, and is not named by OtherSystemHistories.
func TestArchive_HistoryClaimKeyed(t *testing.T) {
	ctx := context.Background()
	const sysA, sysB = 7000000000000000001, 7000000000000000002
	two, three := "00000002.history", "00000003.history"
	body := "1\t0/5000000\tno recovery target specified\n"
	forge := func(t *testing.T, a *Archive, name string, strip bool) {
		t.Helper()
		key := a.Layout.WALKey(name)
		md := unsignedMetadata(t, a, key)
		if !strip {
			obj, err := a.Store.Stat(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			md = obj.Metadata
		}
		md[MetaSystemID] = strconv.FormatUint(sysB, 10)
		moveObject(t, a, key, key, md)
	}

	// Signed for A, the claim rewritten to B.
	a := walTestArchive(t, true)
	a.Codec.RequireEncryption = true
	if err := pushHistory(t, a, three, body, sysA); err != nil {
		t.Fatal(err)
	}
	forge(t, a, three, false)
	for _, sys := range []uint64{sysA, sysB, 0} {
		rerr, ferr := readAndFetchFor(t, a, three, sys)
		for _, err := range []error{rerr, ferr} {
			if !errors.Is(err, ErrHistoryNotAuthentic) || errors.Is(err, ErrOtherSystem) {
				t.Errorf("signed %s with a rewritten claim, read for %d: %v; want it not authentic, not another system's", three, sys, err)
			}
		}
	}

	// PGHoard's unsigned file, no markers, given a claim of B: read by A
	// as before.
	p := walTestArchive(t, true)
	p.Codec.RequireEncryption = true
	md := storage.Metadata{MetaHash: sha1Hex([]byte(body)), MetaHashAlgorithm: "sha1"}
	if _, err := p.Codec.Put(ctx, p.Store, p.Layout.WALKey(two), strings.NewReader(body), int64(len(body)), md); err != nil {
		t.Fatal(err)
	}
	forge(t, p, two, true)
	if rerr, ferr := readAndFetchFor(t, p, two, sysA); rerr != nil || ferr != nil {
		t.Errorf("PGHoard's %s with a claim of another system, in a site with keys: read: %v, fetch: %v; want it read as before", two, rerr, ferr)
	}
	for _, s := range []*Archive{a, p} {
		if others, err := s.OtherSystemHistories(ctx, sysA, 1); err != nil || len(others) != 0 {
			t.Errorf("OtherSystemHistories of a site with keys and forged claims: %v, %v; want none", others, err)
		}
	}

	// A signed file stripped of its HMAC, claiming A, where the markers
	// cover its timeline: still refused for A.
	const four = "00000004.history"
	if err := pushHistory(t, a, four, body, sysA); err != nil {
		t.Fatal(err)
	}
	key := a.Layout.WALKey(four)
	moveObject(t, a, key, key, unsignedMetadata(t, a, key))
	if rerr, _ := readAndFetchFor(t, a, four, sysA); !errors.Is(rerr, ErrHistoryNotAuthentic) {
		t.Errorf("stripped %s claiming the reader's own system: %v; want %v", four, rerr, ErrHistoryNotAuthentic)
	}
}
