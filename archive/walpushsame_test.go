package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// A stored object whose metadata records the hash of the file pushed but
// whose bytes are others is not taken for the file: wal-push would exit 0
// and PostgreSQL recycle a segment the archive does not hold. Such an
// object is left by a crash between data and metadata on a store that
// writes them apart, by a disk that failed under the store, or planted by
// someone who can write the storage and keeps a real object's metadata.
// Where the push can decode the object (a site without keys, or one whose
// configuration holds the private key of the object's key id), it
// compares the decoded bytes with the file, as it does for an object
// without a hash.
func TestArchive_PushWAL_SameHashOtherBytes(t *testing.T) {
	ctx := context.Background()
	const name = "000000010000000000000003"
	const key = "site/xlog/" + name
	data := waltest.Segment(t, name, 1<<20, 3)
	other := waltest.Segment(t, name, 1<<20, 4)
	for _, encrypted := range []bool{false, true} {
		// Another file's object under the name, with the metadata of
		// the file pushed.
		t.Run(fmt.Sprintf("ErrOtherBytes/encrypted=%v", encrypted), func(t *testing.T) {
			a := walTestArchive(t, encrypted)
			md := storage.Metadata{MetaHash: sha1Hex(data), MetaHashAlgorithm: "sha1"}
			if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(other), int64(len(other)), md); err != nil {
				t.Fatal(err)
			}
			res, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, data), PushOptions{SystemID: testSystemID})
			if !errors.Is(err, ErrWALConflict) {
				t.Fatalf("push over another file's object with the file's hash = %+v, %v; want ErrWALConflict", res, err)
			}
			if got, _ := storedPlain(t, a, key); !bytes.Equal(got, other) {
				t.Error("the stored object was replaced")
			}
		})
		// The file's own object, one stored byte flipped.
		t.Run(fmt.Sprintf("ErrDamaged/encrypted=%v", encrypted), func(t *testing.T) {
			a := walTestArchive(t, encrypted)
			p := writeWALFile(t, t.TempDir(), name, data)
			if _, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID}); err != nil {
				t.Fatal(err)
			}
			flipStoredByte(t, a.Store, key)
			res, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID})
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("push over its own object damaged = %+v, %v; want a DecodeError", res, err)
			}
			if !strings.Contains(err.Error(), "moved away") {
				t.Errorf("push over its own object damaged: %v; want it to say what to do", err)
			}
		})
	}
	// A host holding only the public key cannot decrypt the object: it
	// goes by the hash (docs/security.md), so that its own retries still
	// succeed.
	t.Run("PublicKeyOnly", func(t *testing.T) {
		a := walTestArchive(t, true)
		p := writeWALFile(t, t.TempDir(), name, data)
		if _, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID}); err != nil {
			t.Fatal(err)
		}
		a.Codec.PrivateKeys = nil
		res, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID})
		if err != nil || res.Uploaded {
			t.Fatalf("retry on a host holding only the public key = %+v, %v; want success without upload", res, err)
		}
	})
}

// flipStoredByte flips one byte in the middle of the stored bytes of key, keeping
// its metadata.
func flipStoredByte(t *testing.T, st storage.Store, key string) {
	t.Helper()
	ctx := context.Background()
	rc, obj, err := st.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x40
	if err := st.Put(ctx, key, bytes.NewReader(raw), obj.Metadata); err != nil {
		t.Fatal(err)
	}
}
