package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// readOnlyArchive is the archive of a site with a key pair in
// encryption_keys but no encryption_key_id: its codec reads only
// encrypted objects (RequireEncryption) and has no key for uploads.
func readOnlyArchive(t *testing.T) *Archive {
	t.Helper()
	a := walTestArchive(t, true)
	a.Codec.PublicKeys = map[string]*rsa.PublicKey{"k1": &walKey.PublicKey}
	a.Codec.RequireEncryption = true
	a.Codec.KeyID, a.Codec.PublicKey = "", nil
	return a
}

// storedKeys lists every object of st.
func storedKeys(t *testing.T, st storage.Store) []string {
	t.Helper()
	var keys []string
	if err := st.List(context.Background(), "", func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func checkNoUploadKey(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrNoUploadKey) || !strings.Contains(err.Error(), "encryption_key_id") {
		t.Errorf("%s: %v, want an error wrapping ErrNoUploadKey naming encryption_key_id", what, err)
	}
}

// A codec that reads only encrypted objects and holds no key for uploads
// (a site with keys in encryption_keys but no encryption_key_id) would
// refuse to read back everything it stored unencrypted: every way it
// encodes refuses, and nothing is stored. The commands check this first
// (command.checkUploadKey); this is the codec's own guard for a caller
// that does not.
func TestCodec_Put_ErrNoUploadKey(t *testing.T) {
	ctx := context.Background()
	a := readOnlyArchive(t)
	c, st := a.Codec, a.Store
	plain := []byte("would be stored in plaintext")

	_, err := c.Put(ctx, st, "site/basebackup/b", bytes.NewReader(plain), int64(len(plain)), nil)
	checkNoUploadKey(t, "Put", err)
	_, err = c.Create(ctx, st, "site/hoard/marker", bytes.NewReader(nil), 0, nil)
	checkNoUploadKey(t, "Create", err)
	// A basebackup chunk (basebackup/chunker.go).
	if u, err := c.NewUpload(ctx, st, "site/basebackup_chunk/b/b_0", nil, UploadOptions{Size: -1}); err == nil {
		_, _ = u.Write(plain)
		_, err = u.Close()
		checkNoUploadKey(t, "chunk upload", err)
	} else {
		checkNoUploadKey(t, "NewUpload", err)
	}
	// A delta file staged before it is stored (basebackup/delta.go).
	var staged bytes.Buffer
	if u, err := c.NewEncoder(ctx, &staged, "delta", nil, UploadOptions{Size: int64(len(plain))}); err == nil {
		_, _ = u.Write(plain)
		_, err = u.Close()
		checkNoUploadKey(t, "delta staging", err)
	} else {
		checkNoUploadKey(t, "NewEncoder", err)
	}
	if staged.Len() != 0 {
		t.Errorf("NewEncoder wrote %d bytes", staged.Len())
	}

	dir := t.TempDir()
	name := "000000010000000000000003"
	seg := writeWALFile(t, dir, name, waltest.Segment(t, name, 16<<20, 3))
	_, err = a.PushWAL(ctx, seg, PushOptions{SystemID: testSystemID})
	checkNoUploadKey(t, "PushWAL", err)
	hist := writeWALFile(t, dir, "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"))
	_, err = a.PushWAL(ctx, hist, PushOptions{SystemID: testSystemID})
	checkNoUploadKey(t, "PushWAL of a history file", err)
	// The daemon's .partial copies, with and without its cache.
	part := writeWALFile(t, dir, name+".partial", waltest.Segment(t, name, 1<<20, 3)[:100000])
	_, err = a.PutPartialWAL(ctx, part, PushOptions{})
	checkNoUploadKey(t, "PutPartialWAL", err)
	_, err = a.PutPartialWAL(ctx, part, PushOptions{Partial: &PartialCache{}})
	checkNoUploadKey(t, "PutPartialWAL with a PartialCache", err)

	if keys := storedKeys(t, st); len(keys) != 0 {
		t.Errorf("stored %v", keys)
	}
}

// A codec without keys (a site that does not encrypt) and a read-only
// codec's reads are unaffected: the restore host's codec decodes what the
// site's writer stored.
func TestCodec_Put_NoUploadKeyReads(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	defer st.Close()
	plain := []byte("stored unencrypted by a site without keys")
	if _, err := (&Codec{Compression: compress.Zstd}).Put(ctx, st, "k", bytes.NewReader(plain), int64(len(plain)), nil); err != nil {
		t.Fatalf("Put without keys: %v", err)
	}
	a := readOnlyArchive(t)
	w := &Codec{Compression: compress.Zstd, KeyID: "k1", PublicKey: &walKey.PublicKey, RequireEncryption: true}
	if _, err := w.Put(ctx, a.Store, "site/basebackup/b", bytes.NewReader(plain), int64(len(plain)), nil); err != nil {
		t.Fatal(err)
	}
	rc, _, err := a.Codec.Open(ctx, a.Store, "site/basebackup/b")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("read-only codec decoded %q, %v", got, err)
	}
}
