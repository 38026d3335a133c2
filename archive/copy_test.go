package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// copySource builds a site "src" in a memory store: two WAL segments, a
// history file, and two backups with a chunk each, all encrypted.
func copySource(t *testing.T) (*Archive, map[string][]byte) {
	t.Helper()
	key := testKey(t)
	codec := &Codec{Compression: "snappy", KeyID: "k1", PublicKey: &key.PublicKey, PrivateKeys: map[string]*rsa.PrivateKey{"k1": key}}
	a := &Archive{Store: storage.NewMem(), Codec: codec, Layout: Layout{Prefix: "src"}, Site: "src"}
	plain := map[string][]byte{
		"src/xlog/000000010000000000000001":                                           bytes.Repeat([]byte("w1"), 5000),
		"src/xlog/000000010000000000000002":                                           bytes.Repeat([]byte("w2"), 5000),
		"src/timeline/00000002.history":                                               []byte("1\t0/3000000\tno recovery target specified\n"),
		"src/basebackup_chunk/2024-01-01_10-00_0/2024-01-01_10-00_0.00000001.pghoard": bytes.Repeat([]byte("c1"), 9000),
		"src/basebackup/2024-01-01_10-00_0.00000000.pghoard":                          []byte("control 1"),
		"src/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard": bytes.Repeat([]byte("c2"), 9000),
		"src/basebackup/2024-01-02_10-00_0.00000000.pghoard":                          []byte("control 2"),
	}
	for k, v := range plain {
		if _, err := codec.Put(context.Background(), a.Store, k, bytes.NewReader(v), int64(len(v)), storage.Metadata{"format": "pghoard-bb-v2"}); err != nil {
			t.Fatal(err)
		}
	}
	return a, plain
}

func copyTarget(prefix string, keys map[string]*rsa.PrivateKey) *Archive {
	return &Archive{Store: storage.NewMem(), Codec: &Codec{PrivateKeys: keys}, Layout: Layout{Prefix: prefix}, Site: prefix}
}

// storedBytes reads every object of a store: key → stored bytes.
func storedBytes(t *testing.T, st storage.Store, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := st.List(context.Background(), prefix, func(o storage.Object) error {
		b, _ := storetest.Read(t, st, o.Key)
		out[o.Key] = string(b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCopy_OK(t *testing.T) {
	ctx := context.Background()
	src, plain := copySource(t)
	dst := copyTarget("dst", nil) // no private key: the source's decodes
	res, err := Copy(ctx, CopyOptions{From: src, To: dst, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != len(plain) || res.Copied != len(plain) || res.Decoded != len(plain) || res.Skipped != 0 || len(res.Failed)+len(res.Conflicts) != 0 {
		t.Fatalf("first copy: %+v, want %d objects copied and decoded", res, len(plain))
	}
	want := map[string]string{}
	for k, v := range storedBytes(t, src.Store, "") {
		want["dst/"+strings.TrimPrefix(k, "src/")] = v
	}
	if diff := cmp.Diff(want, storedBytes(t, dst.Store, "")); diff != "" {
		t.Errorf("target's stored bytes (-want +got):\n%s", diff)
	}
	// The metadata travels too, and the target decodes with the key.
	dst.Codec.PrivateKeys = src.Codec.PrivateKeys
	got, md := storedPlain(t, dst, "dst/xlog/000000010000000000000001")
	if !bytes.Equal(got, plain["src/xlog/000000010000000000000001"]) || md["format"] != "pghoard-bb-v2" || md[MetaEncryptionKeyID] != "k1" {
		t.Errorf("copied WAL decodes to %d bytes, metadata %v", len(got), md)
	}
	// Run again: everything is there.
	res, err = Copy(ctx, CopyOptions{From: src, To: dst, VerifyExisting: true})
	if err != nil || res.Skipped != len(plain) || res.Copied != 0 || res.Decoded != len(plain) {
		t.Errorf("second copy: %+v, %v; want every object skipped after a check", res, err)
	}
}

// A site below the source's prefix but outside its folders (site src/t,
// beside site src) is another site: Copy leaves its objects out, and any
// other object outside the site's folders, and counts them, instead of
// copying them into the target as the source's (dst/t/...).
func TestCopy_LeavesOutSiteBelow(t *testing.T) {
	ctx := context.Background()
	src, plain := copySource(t)
	below := &Archive{Store: src.Store, Codec: src.Codec, Layout: Layout{Prefix: "src/t"}, Site: "src/t"}
	for _, k := range []string{below.Layout.WALKey("000000010000000000000001"), below.Layout.BackupKey("2024-01-03_10-00_0"), "src/stray"} {
		if _, err := src.Codec.Put(ctx, src.Store, k, strings.NewReader("other"), 5, nil); err != nil {
			t.Fatal(err)
		}
	}
	dst := copyTarget("dst", nil)
	res, err := Copy(ctx, CopyOptions{From: src, To: dst, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != len(plain) || res.Copied != len(plain) || res.LeftOut != 3 || len(res.Failed)+len(res.Conflicts) != 0 {
		t.Errorf("Copy = %+v, want the %d objects of site src copied and 3 left out", res, len(plain))
	}
	for k := range storedBytes(t, dst.Store, "") {
		if strings.HasPrefix(k, "dst/t/") || k == "dst/stray" {
			t.Errorf("target holds %s, which is not site src's", k)
		}
	}
}

// Without either private key, copies are checked by their bytes.
func TestCopy_HashOnly(t *testing.T) {
	src, plain := copySource(t)
	src.Codec.PrivateKeys = nil
	res, err := Copy(context.Background(), CopyOptions{From: src, To: copyTarget("dst", nil)})
	if err != nil || res.Copied != len(plain) || res.HashOnly != len(plain) || res.Decoded != 0 {
		t.Errorf("Copy = %+v, %v; want every object copied, checked by hash only", res, err)
	}
}

// An interrupted copy (here: cancelled after some objects) continues where
// it stopped, and control objects are stored after everything else.
func TestCopy_Resume(t *testing.T) {
	src, plain := copySource(t)
	rec := &recordingStore{Store: storage.NewMem()}
	dst := &Archive{Store: rec, Codec: &Codec{}, Layout: Layout{Prefix: "dst"}, Site: "dst"}
	ctx, cancel := context.WithCancel(context.Background())
	rec.afterPut = func(n int) {
		if n == 3 {
			cancel()
		}
	}
	if _, err := Copy(ctx, CopyOptions{From: src, To: dst, Parallel: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Copy = %v, want context.Canceled", err)
	}
	if len(rec.puts) != 3 {
		t.Fatalf("%d objects stored before the interruption, want 3", len(rec.puts))
	}
	rec.afterPut = nil
	res, err := Copy(context.Background(), CopyOptions{From: src, To: dst, Parallel: 2})
	if err != nil || res.Skipped != 3 || res.Copied != len(plain)-3 {
		t.Fatalf("resumed Copy = %+v, %v; want 3 skipped, %d copied", res, err, len(plain)-3)
	}
	for i, k := range rec.puts {
		if strings.HasPrefix(k, "dst/basebackup/") && i < len(rec.puts)-2 {
			t.Errorf("control object %s stored at position %d of %d, before other objects", k, i, len(rec.puts))
		}
	}
}

// An object the target holds with other bytes is a conflict and stays.
func TestCopy_ErrConflict(t *testing.T) {
	ctx := context.Background()
	src, plain := copySource(t)
	dst := copyTarget("dst", nil)
	const k = "dst/xlog/000000010000000000000002"
	if err := dst.Store.Put(ctx, k, strings.NewReader("other"), storage.Metadata{"format": "x"}); err != nil {
		t.Fatal(err)
	}
	copyOneConflict(ctx, t, src, dst, len(plain), k, "conflicting object")
}

// A chunk the target holds with other bytes (a planted object, or a
// chunk of another cluster's backup of the same name) is a conflict, left
// alone, and its backup's control object is not copied: the target would
// list a backup whose chunk is not the backup's. The other backup is
// copied whole.
func TestCopy_ErrConflictChunk(t *testing.T) {
	ctx := context.Background()
	src, plain := copySource(t)
	dst := copyTarget("dst", nil)
	const chunk = "dst/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard"
	if err := dst.Store.Put(ctx, chunk, strings.NewReader("other"), storage.Metadata{"format": "x"}); err != nil {
		t.Fatal(err)
	}
	res, err := Copy(ctx, CopyOptions{From: src, To: dst})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"src/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard"}; !cmp.Equal(res.Conflicts, want) {
		t.Errorf("conflicts %v, want %v", res.Conflicts, want)
	}
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.Key)
	}
	if want := []string{"src/basebackup/2024-01-02_10-00_0.00000000.pghoard"}; !cmp.Equal(failed, want) || res.Copied != len(plain)-2 {
		t.Fatalf("Copy = %+v; want %q failed (not copied) and the rest copied", res, want)
	}
	got := storedBytes(t, dst.Store, "")
	if _, ok := got["dst/basebackup/2024-01-02_10-00_0.00000000.pghoard"]; ok {
		t.Error("the target lists the backup whose chunk it holds with other bytes")
	}
	if got[chunk] != "other" {
		t.Errorf("%s = %q, want it left alone", chunk, got[chunk])
	}
	if _, ok := got["dst/basebackup/2024-01-01_10-00_0.00000000.pghoard"]; !ok {
		t.Error("the sound backup's control object was not copied")
	}
}

// copyOneConflict copies src (of n objects) into dst, whose object k
// holds "other" where src has segment 2: Copy must report that one
// conflict, copy the rest and leave k (named what in failures) alone.
func copyOneConflict(ctx context.Context, t *testing.T, src, dst *Archive, n int, k, what string) {
	t.Helper()
	res, err := Copy(ctx, CopyOptions{From: src, To: dst})
	if err != nil || !cmp.Equal(res.Conflicts, []string{"src/xlog/000000010000000000000002"}) || res.Copied != n-1 {
		t.Fatalf("Copy = %+v, %v; want one conflict and the rest copied", res, err)
	}
	if got := storedBytes(t, dst.Store, "dst/xlog/")[k]; got != "other" {
		t.Errorf("%s = %q, want it left alone", what, got)
	}
}

// A source chunk that does not decode (tampered ciphertext) is reported,
// its copy removed, and its backup's control object not copied; the other
// backup is copied whole.
func TestCopy_ErrDamagedSource(t *testing.T) {
	ctx := context.Background()
	src, plain := copySource(t)
	const chunk = "src/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard"
	storetest.Tamper(t, src.Store, chunk)
	dst := copyTarget("dst", nil)
	res, err := Copy(ctx, CopyOptions{From: src, To: dst})
	if err != nil {
		t.Fatal(err)
	}
	checkChunkFailed(t, res, chunk, len(plain))
	got := storedBytes(t, dst.Store, "")
	for _, k := range []string{"dst/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard", "dst/basebackup/2024-01-02_10-00_0.00000000.pghoard"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s is in the target", k)
		}
	}
	if _, ok := got["dst/basebackup/2024-01-01_10-00_0.00000000.pghoard"]; !ok {
		t.Error("the sound backup's control object was not copied")
	}
}

// A copy that does not read back as the source's bytes is removed.
func TestCopy_ErrCopyDiffers(t *testing.T) {
	src, plain := copySource(t)
	dst := &Archive{Store: &corruptingStore{Store: storage.NewMem()}, Codec: &Codec{}, Layout: Layout{Prefix: "dst"}, Site: "dst"}
	res, err := Copy(context.Background(), CopyOptions{From: src, To: dst})
	if err != nil {
		t.Fatal(err)
	}
	if res.Copied != 0 || len(res.Failed) != len(plain) {
		t.Fatalf("Copy = %+v; want every object failed", res)
	}
	if !errors.Is(res.Failed[len(res.Failed)-1].Err, errCopyDiffers) && !strings.Contains(res.Failed[len(res.Failed)-1].Err.Error(), "not copied") {
		t.Errorf("failure: %v", res.Failed[len(res.Failed)-1].Err)
	}
	if got := storedBytes(t, dst.Store, ""); len(got) != 0 {
		t.Errorf("bad copies left in the target: %d", len(got))
	}
}

// recordingStore records the keys Put and Create store, in order.
type recordingStore struct {
	storage.Store
	mu       sync.Mutex
	puts     []string
	afterPut func(n int)
}

func (r *recordingStore) Put(ctx context.Context, key string, rd io.Reader, md storage.Metadata) error {
	if err := r.Store.Put(ctx, key, rd, md); err != nil {
		return err
	}
	r.stored(key)
	return nil
}

func (r *recordingStore) Create(ctx context.Context, key string, rd io.Reader, md storage.Metadata) error {
	if err := r.Store.Create(ctx, key, rd, md); err != nil {
		return err
	}
	r.stored(key)
	return nil
}

func (r *recordingStore) stored(key string) {
	r.mu.Lock()
	r.puts = append(r.puts, key)
	n, f := len(r.puts), r.afterPut
	r.mu.Unlock()
	if f != nil {
		f(n)
	}
}

// corruptingStore flips a bit of every object it stores.
type corruptingStore struct{ storage.Store }

func (c *corruptingStore) Put(ctx context.Context, key string, rd io.Reader, md storage.Metadata) error {
	b, err := flipFirst(rd)
	if err != nil {
		return err
	}
	return c.Store.Put(ctx, key, bytes.NewReader(b), md)
}

func (c *corruptingStore) Create(ctx context.Context, key string, rd io.Reader, md storage.Metadata) error {
	b, err := flipFirst(rd)
	if err != nil {
		return err
	}
	return c.Store.Create(ctx, key, bytes.NewReader(b), md)
}

// flipFirst reads r whole and flips a bit of its first byte (an empty r
// becomes one zero byte).
func flipFirst(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		b[0] ^= 1
	} else {
		b = []byte{0}
	}
	return b, nil
}

// In a source site that encrypts, an unencrypted object the site's codec
// refuses (planted without a key) is not copied: the target would record
// the copy's time, not the planted object's. Its backup's control object
// stays behind. One the storage wrote before unencrypted_objects_before
// is copied.
func TestCopy_ErrUnencrypted(t *testing.T) {
	ctx := context.Background()
	src, plain := copySource(t)
	src.Codec.RequireEncryption = true
	const chunk = "src/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard"
	if err := src.Store.Put(ctx, chunk, strings.NewReader("planted"), storage.Metadata{"format": "pghoard-bb-v2"}); err != nil {
		t.Fatal(err)
	}
	dst := copyTarget("dst", nil)
	res, err := Copy(ctx, CopyOptions{From: src, To: dst})
	if err != nil {
		t.Fatal(err)
	}
	checkChunkFailed(t, res, chunk, len(plain))
	if !errors.Is(res.Failed[1].Err, ErrUnencrypted) {
		t.Errorf("chunk's failure = %v, want ErrUnencrypted", res.Failed[1].Err)
	}
	if _, ok := storedBytes(t, dst.Store, "")["dst/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard"]; ok {
		t.Error("the unencrypted chunk was copied")
	}

	src.Codec.UnencryptedBefore = time.Now().Add(time.Hour)
	res, err = Copy(ctx, CopyOptions{From: src, To: dst})
	if err != nil || len(res.Failed) != 0 || res.Copied != 2 {
		t.Fatalf("Copy with unencrypted_objects_before after the object = %+v, %v; want the chunk and its control object copied", res, err)
	}
}

// An object another writer stores in the target between Copy's look and
// its upload is a conflict: Copy creates only if absent and never
// replaces it.
func TestCopy_ErrConflictRace(t *testing.T) {
	ctx := context.Background()
	src, plain := copySource(t)
	const k = "dst/xlog/000000010000000000000002"
	dst := &Archive{Store: &racingStore{Store: storage.NewMem(), key: k}, Codec: &Codec{}, Layout: Layout{Prefix: "dst"}, Site: "dst"}
	copyOneConflict(ctx, t, src, dst, len(plain), k, "object stored by the other writer")
}

// racingStore stores "other" under key just before the first upload of
// key reaches the store, as a second writer would.
type racingStore struct {
	storage.Store
	key  string
	once sync.Once
}

func (r *racingStore) race(ctx context.Context, key string) error {
	var err error
	if key == r.key {
		r.once.Do(func() { err = r.Store.Put(ctx, key, strings.NewReader("other"), storage.Metadata{"format": "x"}) })
	}
	return err
}

func (r *racingStore) Put(ctx context.Context, key string, rd io.Reader, md storage.Metadata) error {
	if err := r.race(ctx, key); err != nil {
		return err
	}
	return r.Store.Put(ctx, key, rd, md)
}

func (r *racingStore) Create(ctx context.Context, key string, rd io.Reader, md storage.Metadata) error {
	if err := r.race(ctx, key); err != nil {
		return err
	}
	return r.Store.Create(ctx, key, rd, md)
}

// checkChunkFailed checks that a copy of copySource's plain objects failed
// chunk and its backup's control object, in that order, and copied the
// rest.
func checkChunkFailed(t *testing.T, res CopyResult, chunk string, plain int) {
	t.Helper()
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.Key)
	}
	if want := []string{"src/basebackup/2024-01-02_10-00_0.00000000.pghoard", chunk}; !cmp.Equal(failed, want) || res.Copied != plain-2 {
		t.Fatalf("Copy = %+v; want %q failed and the rest copied", res, want)
	}
}

// TestCopy_DeltaRefs: a delta backup's reference list, plaintext by
// design in a site whose codec refuses unencrypted objects, is copied and
// still verifies in the target (same key).
func TestCopy_DeltaRefs(t *testing.T) {
	ctx := context.Background()
	src, _ := copySource(t)
	src.Codec.RequireEncryption = true
	if err := src.StoreDeltaRefs(ctx, "2024-01-02_10-00_0", []string{digest('a')}); err != nil {
		t.Fatal(err)
	}
	dst := copyTarget("dst", src.Codec.PrivateKeys)
	res, err := Copy(ctx, CopyOptions{From: src, To: dst, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed)+len(res.Conflicts) != 0 {
		t.Fatalf("copy: %+v", res)
	}
	refs, err := dst.ReadDeltaRefs(ctx, "2024-01-02_10-00_0")
	if err != nil || !refs[digest('a')] || len(refs) != 1 {
		t.Errorf("copied list: %v, %v", refs, err)
	}
}

// A damaged source chunk in a site without keys (snappy only) is caught by
// decoding: cut short, its original-file-size altered, or its
// compression-algorithm altered. Each is listed as failed, its copy
// removed, and its backup's control object not copied.
func TestCopy_ErrDamagedPlainSource(t *testing.T) {
	const chunk = "src/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard"
	for _, tc := range []struct {
		name string
		edit func(data []byte, md storage.Metadata) []byte
	}{
		{"Truncated", func(data []byte, _ storage.Metadata) []byte { return data[:len(data)-7] }},
		{"SizeLies", func(data []byte, md storage.Metadata) []byte { md[MetaOriginalFileSize] = "17000"; return data }},
		{"CompressionLies", func(data []byte, md storage.Metadata) []byte { md[MetaCompressionAlgorithm] = "zstd"; return data }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			src, plain := copySource(t)
			// Store the site again without encryption.
			codec := &Codec{Compression: "snappy"}
			plainSrc := &Archive{Store: storage.NewMem(), Codec: codec, Layout: src.Layout, Site: "src"}
			for k, v := range plain {
				if _, err := codec.Put(ctx, plainSrc.Store, k, bytes.NewReader(v), int64(len(v)), storage.Metadata{"format": "pghoard-bb-v2"}); err != nil {
					t.Fatal(err)
				}
			}
			storetest.Rewrite(t, plainSrc.Store, chunk, tc.edit)
			dst := copyTarget("dst", nil)
			res, err := Copy(ctx, CopyOptions{From: plainSrc, To: dst})
			if err != nil {
				t.Fatal(err)
			}
			checkChunkFailed(t, res, chunk, len(plain))
			if _, ok := storedBytes(t, dst.Store, "")["dst/basebackup_chunk/2024-01-02_10-00_0/2024-01-02_10-00_0.00000001.pghoard"]; ok {
				t.Error("the damaged chunk's copy is in the target")
			}
		})
	}
}

// A source site without encryption copied into a target site that
// requires it (it has encryption keys): the target would refuse every
// copy, written now, after its unencrypted_objects_before (or with none
// set), so nothing is copied and each object is listed as failed, saying
// why. With the target's unencrypted_objects_before after the copy, the
// copies are admitted and copied.
func TestCopy_ErrTargetRefusesUnencrypted(t *testing.T) {
	ctx := context.Background()
	_, plain := copySource(t)
	codec := &Codec{Compression: "snappy"}
	src := &Archive{Store: storage.NewMem(), Codec: codec, Layout: Layout{Prefix: "src"}, Site: "src"}
	for k, v := range plain {
		if _, err := codec.Put(ctx, src.Store, k, bytes.NewReader(v), int64(len(v)), storage.Metadata{"format": "pghoard-bb-v2"}); err != nil {
			t.Fatal(err)
		}
	}
	dst := copyTarget("dst", nil)
	dst.Codec.RequireEncryption = true
	res, err := Copy(ctx, CopyOptions{From: src, To: dst})
	if err != nil {
		t.Fatal(err)
	}
	if res.Copied != 0 || len(res.Failed) != len(plain) {
		t.Fatalf("Copy = %+v; want every object failed", res)
	}
	for _, f := range res.Failed {
		if !strings.HasPrefix(f.Key, "src/basebackup/") && (!errors.Is(f.Err, ErrUnencrypted) || !strings.Contains(f.Err.Error(), "target")) {
			t.Errorf("%s failed with %v, want ErrUnencrypted naming the target", f.Key, f.Err)
		}
	}
	if got := storedBytes(t, dst.Store, ""); len(got) != 0 {
		t.Errorf("%d unencrypted copies in a target that refuses them", len(got))
	}

	dst.Codec.UnencryptedBefore = time.Now().Add(time.Hour)
	res, err = Copy(ctx, CopyOptions{From: src, To: dst})
	if err != nil || len(res.Failed) != 0 || res.Copied != len(plain) {
		t.Fatalf("Copy with the target's unencrypted_objects_before after the copy = %+v, %v; want everything copied", res, err)
	}
}
