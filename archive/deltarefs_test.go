package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// A reference list is stored without the envelope: anyone who can write
// to the bucket can replace it, also in a site with keys, and it is
// decoded before its MAC can be checked. A list of 16 MiB of empty
// digests is refused at the first one, allocating little more than the
// list's bytes. Before, its 5.6 million strings were decoded first (645
// MiB allocated; for a list of 64 MiB, the most read, some 2.5 GiB), to
// be refused by the MAC.
func TestArchive_ReadDeltaRefsErrShortDigests(t *testing.T) {
	a := walTestArchive(t, true)
	var b bytes.Buffer
	b.WriteString(`{"format":"` + FormatDeltaRefs + `","backup":"b","key_id":"k1","digests":[`)
	b.Write(bytes.Repeat([]byte(`"",`), 16<<20/3))
	b.WriteString(`""],"mac":"00"}`)
	if err := a.Store.Put(context.Background(), a.Layout.DeltaRefsKey("b"), &b, storage.Metadata{MetaFormat: FormatDeltaRefs}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := a.ReadDeltaRefs(context.Background(), "b")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrDeltaRefsInvalid) || !strings.Contains(err.Error(), "not a delta object's digest") {
		t.Fatalf("err = %v, want ErrDeltaRefsInvalid for a digest that is not one", err)
	}
	// The list's bytes, read whole and buffered by the JSON decoder
	// (both growing as they are read), and little more: 98 MiB, 133 MiB
	// under -race, whose allocations are larger. Decoding the digests
	// first took 645 MiB.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d MiB", alloc>>20)
	if alloc > 256<<20 {
		t.Errorf("allocated %d MiB", alloc>>20)
	}
}

// A digest that is not one is named in the error by its start only: the
// error goes to the log, the daemon's status and its state file, and the
// string is as long as whoever replaced the list made it (up to the
// list's limit). Before, the whole string was quoted.
func TestArchive_ReadDeltaRefsErrLongDigest(t *testing.T) {
	a := walTestArchive(t, true)
	long := strings.Repeat("a", 1<<20)
	list := `{"format":"` + FormatDeltaRefs + `","backup":"b","key_id":"k1","digests":["` + long + `"],"mac":"00"}`
	if err := a.Store.Put(context.Background(), a.Layout.DeltaRefsKey("b"), strings.NewReader(list), storage.Metadata{MetaFormat: FormatDeltaRefs}); err != nil {
		t.Fatal(err)
	}
	_, err := a.ReadDeltaRefs(context.Background(), "b")
	if !errors.Is(err, ErrDeltaRefsInvalid) || !strings.Contains(err.Error(), "not a delta object's digest") {
		t.Fatalf("err = %v, want ErrDeltaRefsInvalid for a digest that is not one", err)
	}
	if len(err.Error()) > 1024 {
		t.Errorf("error of %d bytes, want the digest's start only", len(err.Error()))
	}
}

// TestArchive_ReadDeltaRefs_RotatedPublicOnly: after a rotation, a host
// holding only public keys verifies a list stored under the old key with
// that key's public half (Codec.PublicKeys), so retention there can delete
// delta objects again; a codec without the old key's public half names
// the key.
func TestArchive_ReadDeltaRefs_RotatedPublicOnly(t *testing.T) {
	ctx := context.Background()
	old := walTestArchive(t, true) // key k1
	digest := strings.Repeat("ab", 32)
	if err := old.StoreDeltaRefs(ctx, "b", []string{digest}); err != nil {
		t.Fatal(err)
	}
	k2, err := crypto.GenerateKey(1024)
	if err != nil {
		t.Fatal(err)
	}
	rotated := *old
	rotated.Codec = &Codec{Compression: compress.Snappy, KeyID: "k2", PublicKey: &k2.PublicKey, RequireEncryption: true,
		PublicKeys: map[string]*rsa.PublicKey{"k1": old.Codec.PublicKey, "k2": &k2.PublicKey}}
	refs, err := rotated.ReadDeltaRefs(ctx, "b")
	if err != nil || !refs[digest] || len(refs) != 1 {
		t.Errorf("ReadDeltaRefs with k1's public key configured = %v, %v; want the list's one digest", refs, err)
	}
	delete(rotated.Codec.PublicKeys, "k1")
	if _, err := rotated.ReadDeltaRefs(ctx, "b"); !errors.Is(err, ErrDeltaRefsInvalid) || !strings.Contains(err.Error(), `"k1"`) {
		t.Errorf("ReadDeltaRefs without k1's key = %v, want ErrDeltaRefsInvalid naming k1", err)
	}
}
