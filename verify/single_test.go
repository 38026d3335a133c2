package verify

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pghoardtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// realPGHoard copies an archive a real PGHoard made
// (testdata/pghoard-real/<mode>, see make-fixtures.sh there) into a
// memory store, with the site's private key.
func realPGHoard(t *testing.T, mode string) *archive.Archive {
	t.Helper()
	return archivetest.New(t, pghoardtest.CopyReal(t, mode), &archive.Codec{PrivateKeys: pghoardtest.Keys(t, pghoardtest.RealDir(mode))})
}

// TestRun_PGHoardSingleTar: the basic and pipe backups of a real PGHoard
// (one pg_basebackup tar) verify, quickly and in full, and a byte flipped
// in the middle of the tar's object is reported by the full check.
func TestRun_PGHoardSingleTar(t *testing.T) {
	for _, mode := range []string{"basic", "pipe"} {
		t.Run(mode, func(t *testing.T) {
			a := realPGHoard(t, mode)
			for _, full := range []bool{false, true} {
				rep := run(t, a, full)
				if len(rep.Backups) != 1 || rep.Backups[0].Status != StatusOK || rep.Backups[0].Chunks != 1 {
					t.Fatalf("full=%v: %+v\n%s", full, rep.Backups, problems(rep))
				}
			}
			key := rep1Key(t, a)
			storetest.Tamper(t, a.Store, key)
			rep := run(t, a, true)
			if rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), key) {
				t.Fatalf("damaged %s: status %s, problems:\n%s", key, rep.Backups[0].Status, problems(rep))
			}
		})
	}
}

func rep1Key(t *testing.T, a *archive.Archive) string {
	t.Helper()
	bs, err := a.ListBackups(context.Background())
	if err != nil || len(bs) != 1 {
		t.Fatalf("%d backups, %v", len(bs), err)
	}
	return bs[0].Key
}

// TestRun_PGHoardDelta: a delta backup a real PGHoard took
// (pghoard-delta-v2: a bundle, basebackup_delta/<hash> objects and files
// embedded in the manifest) verifies, quickly and in full, with its
// bundle and its 29 delta objects checked. A delta object swapped for
// another of the same size (each decodes, but not to its name's digest)
// is reported by the full check, and a deleted one by both, naming the
// object.
func TestRun_PGHoardDelta(t *testing.T) {
	a := realPGHoard(t, "delta")
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if len(rep.Backups) != 1 || rep.Backups[0].Status != StatusOK || rep.Backups[0].Chunks != 30 {
			t.Fatalf("full=%v: %+v\n%s", full, rep.Backups, problems(rep))
		}
	}
	ctx := context.Background()
	victim, other := archivetest.SameSizeDeltaObjects(t, a)
	rc, info, err := a.Store.Open(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Store.Put(ctx, victim, rc, info.Metadata)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rep := run(t, a, false); rep.Backups[0].Status != StatusOK {
		t.Errorf("quick check of a swapped object: status %s, problems:\n%s", rep.Backups[0].Status, problems(rep))
	}
	rep := run(t, a, true)
	if p := problems(rep); rep.Backups[0].Status != StatusBroken || !strings.Contains(p, victim) || !strings.Contains(p, "digest") {
		t.Fatalf("%s swapped: status %s, problems:\n%s", victim, rep.Backups[0].Status, p)
	}
	if err := a.Store.Delete(ctx, victim); err != nil {
		t.Fatal(err)
	}
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), victim) {
			t.Fatalf("full=%v, without %s: status %s, problems:\n%s", full, victim, rep.Backups[0].Status, problems(rep))
		}
	}
}

// TestRun_DeltaRefs: a reference list (as hoard stores with its delta
// backups), added to the real PGHoard delta backup: one naming exactly
// the manifest's delta objects passes; one that leaves an object out,
// though its MAC is valid (made with the configuration), and one altered
// without it, are reported, naming the list, and the backup is limited,
// not broken.
func TestRun_DeltaRefs(t *testing.T) {
	ctx := context.Background()
	a := realPGHoard(t, "delta")
	bs, err := a.ListBackups(ctx)
	if err != nil || len(bs) != 1 {
		t.Fatalf("%d backups: %v", len(bs), err)
	}
	name := bs[0].Name
	var digests []string
	dir := a.Layout.Dir(archive.DeltaDir)
	if err := a.Store.List(ctx, dir, func(o storage.Object) error {
		digests = append(digests, strings.TrimPrefix(o.Key, dir))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w := *a
	w.Codec = &archive.Codec{PrivateKeys: a.Codec.PrivateKeys}
	for kid, k := range a.Codec.PrivateKeys {
		w.Codec.KeyID, w.Codec.PublicKey = kid, &k.PublicKey
	}
	key := a.Layout.DeltaRefsKey(name)
	for _, tc := range []struct {
		name    string
		digests []string
		alter   bool
		want    string // "" : ok
	}{
		{name: "OK", digests: digests},
		{name: "ErrLeftOut", digests: digests[1:], want: "leaves out 1 delta objects"},
		{name: "ErrAltered", digests: digests, alter: true, want: "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := a.Store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
				t.Fatal(err)
			}
			if err := w.StoreDeltaRefs(ctx, name, tc.digests); err != nil {
				t.Fatal(err)
			}
			if tc.alter {
				storetest.Rewrite(t, a.Store, key, func(b []byte, _ storage.Metadata) []byte {
					return []byte(strings.Replace(string(b), `"`+digests[0]+`",`, "", 1))
				})
			}
			rep := run(t, a, false)
			p := problems(rep)
			switch {
			case tc.want == "" && rep.Backups[0].Status != StatusOK:
				t.Errorf("status %s, problems:\n%s", rep.Backups[0].Status, p)
			case tc.want != "" && (rep.Backups[0].Status != StatusLimited || !strings.Contains(p, tc.want) || !strings.Contains(p, key)):
				t.Errorf("status %s, problems:\n%s\nwant limited, naming %s and saying %q", rep.Backups[0].Status, p, key, tc.want)
			}
		})
	}
}

// TestRun_DeltaObjectKeyRemoved: a delta object stored under a key whose
// private half the configuration no longer holds (reused, unread, by the
// delta backups taken after a rotation) is named by verify --full with
// the key to put back, as docs/security.md (Rotation) says.
func TestRun_DeltaObjectKeyRemoved(t *testing.T) {
	ctx := context.Background()
	a := realPGHoard(t, "delta")
	victim, _ := archivetest.SameSizeDeltaObjects(t, a)
	plain, md := archivetest.Decode(t, a.Codec, a.Store, victim)
	old, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	c := &archive.Codec{Compression: md[archive.MetaCompressionAlgorithm], KeyID: "old", PublicKey: &old.PublicKey}
	if _, err := c.Put(ctx, a.Store, victim, bytes.NewReader(plain), int64(len(plain)), nil); err != nil {
		t.Fatal(err)
	}
	rep := run(t, a, true)
	if p := problems(rep); rep.Backups[0].Status == StatusOK || !strings.Contains(p, victim) || !strings.Contains(p, "encryption_keys.old.private") {
		t.Errorf("delta object %s under a key without its private half: status %s, problems:\n%s", victim, rep.Backups[0].Status, p)
	}
}
