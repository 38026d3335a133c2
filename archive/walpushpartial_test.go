package archive

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
)

// The .partial a promoted server archives (PostgreSQL's archive_command,
// hoard wal-push) under the name the site's streaming daemon stored its
// own copies of the segment under: a copy of the same stream, holding
// less WAL or more. wal-push must store a file holding more WAL over a
// copy that holds a prefix of it, and count one that holds all of the
// file's WAL as archived, instead of failing as a conflict at every try
// (PostgreSQL's archiver retries the oldest file first and archives
// nothing else meanwhile); a copy of other WAL stays a conflict.
func TestArchive_PushWAL_PartialOverDaemonCopy(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	full := waltest.Segment(t, name, 1<<20, 5)
	short, long := zeroPadded(full[:300000], len(full)), zeroPadded(full[:700000], len(full))
	type archiveOf func(t *testing.T) *Archive
	keys := map[string]archiveOf{
		"plain":     func(t *testing.T) *Archive { return walTestArchive(t, false) },
		"encrypted": func(t *testing.T) *Archive { return walTestArchive(t, true) },
		"public key only": func(t *testing.T) *Archive {
			a := walTestArchive(t, true)
			a.Codec.PrivateKeys = nil
			return a
		},
	}
	for what, newArchive := range keys {
		t.Run(what, func(t *testing.T) {
			// The daemon's copy holds less: the promoted server's is stored.
			a := newArchive(t)
			key := "site/xlog/" + name + ".partial"
			if _, err := a.PutPartialWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", short), PushOptions{}); err != nil {
				t.Fatal(err)
			}
			res, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", long), PushOptions{SystemID: testSystemID})
			if err != nil || !res.Uploaded {
				t.Fatalf("wal-push of a .partial holding more WAL than the stored copy: uploaded=%v, %v", res.Uploaded, err)
			}
			if what != "public key only" {
				if got, _ := storedPlain(t, a, key); !bytes.Equal(got, long) {
					t.Fatal("the stored .partial is not the file pushed")
				}
			}
			// The same file again (PostgreSQL retries): archived already.
			res, err = a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", long), PushOptions{SystemID: testSystemID})
			if err != nil || res.Uploaded {
				t.Fatalf("the same .partial again: uploaded=%v, %v", res.Uploaded, err)
			}
		})
	}
	t.Run("public key only/stored holds more", func(t *testing.T) {
		// A copy that claims more WAL than the file cannot be read to
		// check the claim: not counted, not stored over (the limit).
		a := keys["public key only"](t)
		key := "site/xlog/" + name + ".partial"
		if _, err := a.PutPartialWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", long), PushOptions{}); err != nil {
			t.Fatal(err)
		}
		before, err := a.Store.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", short), PushOptions{SystemID: testSystemID})
		if !errors.Is(err, ErrUnverifiedPartial) {
			t.Fatalf("wal-push under a copy claiming more WAL, public key only: %v, want ErrUnverifiedPartial", err)
		}
		if after, err := a.Store.Stat(ctx, key); err != nil || after.Metadata[MetaHash] != before.Metadata[MetaHash] {
			t.Fatalf("the stored .partial changed: %v", err)
		}
	})
	for _, what := range []string{"plain", "encrypted"} {
		t.Run(what+"/stored holds more", func(t *testing.T) {
			// The daemon's copy holds the file's WAL and more: archived.
			a := keys[what](t)
			key := "site/xlog/" + name + ".partial"
			if _, err := a.PutPartialWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", long), PushOptions{}); err != nil {
				t.Fatal(err)
			}
			res, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", short), PushOptions{SystemID: testSystemID})
			if err != nil || res.Uploaded {
				t.Fatalf("wal-push of a .partial whose WAL the stored copy holds and more: uploaded=%v, %v", res.Uploaded, err)
			}
			if got, _ := storedPlain(t, a, key); !bytes.Equal(got, long) {
				t.Fatal("the stored .partial changed")
			}
		})
		t.Run(what+"/stored by wal-push", func(t *testing.T) {
			// A shorter copy without partial-data-size (stored by
			// wal-push, or by hoard before 2026-12-02): read, and found
			// a prefix of the file.
			a := keys[what](t)
			if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", short), PushOptions{SystemID: testSystemID}); err != nil {
				t.Fatal(err)
			}
			res, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", long), PushOptions{SystemID: testSystemID})
			if err != nil || !res.Uploaded {
				t.Fatalf("uploaded=%v, %v", res.Uploaded, err)
			}
			if got, _ := storedPlain(t, a, "site/xlog/"+name+".partial"); !bytes.Equal(got, long) {
				t.Fatal("the stored .partial is not the file pushed")
			}
		})
		t.Run(what+"/other WAL", func(t *testing.T) {
			// A stored copy that is not a prefix of the file, nor the
			// file of it: a conflict, left alone.
			a := keys[what](t)
			key := "site/xlog/" + name + ".partial"
			other := bytes.Clone(short)
			other[200000] ^= 0xff
			if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", other), PushOptions{SystemID: testSystemID}); err != nil {
				t.Fatal(err)
			}
			for _, file := range [][]byte{long, short} {
				_, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", file), PushOptions{SystemID: testSystemID})
				if !errors.Is(err, ErrWALConflict) {
					t.Fatalf("wal-push over a .partial of other WAL: %v, want ErrWALConflict", err)
				}
				if got, _ := storedPlain(t, a, key); !bytes.Equal(got, other) {
					t.Fatal("the stored .partial changed")
				}
			}
		})
	}
}
