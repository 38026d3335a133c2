package archive

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// pythonDigests are hashlib.new(name, b"hoard").hexdigest() as Python 3
// computes them: PGHoard's hashes, to check hoard's against.
var pythonDigests = map[string]string{
	"blake2b":    "a7f9d4921a03e2cf4e7e9743a4b8190d832e82182175dd6f3f1dc83f27f195ed2b72391a232d6ef973fef96f0bbd308ef102657555b4a35fe028b79be2237c8b",
	"blake2s":    "dcd87a7c2b3a629313918327c46d16bd950821e7fcef2f8eb0a5d0e0660f6f57",
	"md5":        "8bdf745a284c5511be0a3559717c2ede",
	"sha1":       "d133fd5ce757ca4ab5c6247e600237a609f74354",
	"sha224":     "a285b86d14cd42d048dd56f68971b1f6d4a0f0f00ddc24375b3213e2",
	"sha256":     "4e1568bdaf79b70b40e65ed157a3100daf713a9544af4058a1d14b92a5a415cd",
	"sha384":     "8587a63b350687499747d0802e1d793cfa46c2d02e7e7ca6ff224fec4c035cff02190ee737d97447c200fac758e24ed7",
	"sha3_224":   "3ee786d275b45c3254670498d67e6a78138a8058a714b43a4a09cefb",
	"sha3_256":   "f1337999b58c1b62e288477b72e159338cb1d441162044e3ee3f5a17c11cb43c",
	"sha3_384":   "7c7d19c1e3c740cd6e1cddd29b290787fda12c1a3b680ebeef4394ebad1be9c06df828577d4bfa9925197843ad65f9c5",
	"sha3_512":   "c13bc016bad96de887c491fc356ded80525345e8b4240f5e2ee286f71b866a83a7167f7ccc7f356bd9f6701541ef972b797085276c7d8421245f71a5c9f97807",
	"sha512":     "8ce21ce7fa648876ce1cc89b911b4226d634c4a61810d4a5734959edf5eb2faf6ffd6d9bbcd450b66fd4f9a0a6f69f41a543b137258faeb7775766ef14cb07ef",
	"sha512_224": "b1096ebb6ba50e044ae2a74227b6b666aeb5be9487e8440e7083d99a",
	"sha512_256": "eb0cc3904a6ed8b3cfab83f677e08e246697800a9606a2ad1e5c40db647f50b8",
}

func TestNewHash(t *testing.T) {
	var names []string
	for n := range pythonDigests {
		names = append(names, n)
	}
	if diff := cmp.Diff(HashAlgorithms(), sortedCopy(names)); diff != "" {
		t.Errorf("HashAlgorithms differs from the algorithms checked against Python (-hoard +python):\n%s", diff)
	}
	for name, want := range pythonDigests {
		for _, spelling := range []string{name, strings.ToUpper(name)} {
			h, err := NewHash(spelling)
			if err != nil {
				t.Fatalf("NewHash(%q): %v", spelling, err)
			}
			h.Write([]byte("hoard"))
			if got := hex.EncodeToString(h.Sum(nil)); got != want {
				t.Errorf("%s(hoard) = %s, Python says %s", spelling, got, want)
			}
		}
	}
	for _, bad := range []string{"", "sha", "shake_128", "crc32", "sha-256x"} {
		if _, err := NewHash(bad); err == nil || !strings.Contains(err.Error(), "unsupported hash algorithm") {
			t.Errorf("NewHash(%q) = %v, want an unsupported-algorithm error", bad, err)
		}
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// Every hash_algorithm works for wal-push and wal-fetch, and is recorded
// and checked.
func TestArchive_PushWAL_EveryHashAlgorithm(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000003"
	data := waltest.Segment(t, name, testSegSize, 3)
	for _, alg := range HashAlgorithms() {
		t.Run(alg, func(t *testing.T) {
			a := walTestArchive(t, false)
			res, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, data), PushOptions{HashAlgorithm: alg})
			if err != nil {
				t.Fatalf("push with %s: %v", alg, err)
			}
			h, _ := NewHash(alg)
			h.Write(data)
			want := hex.EncodeToString(h.Sum(nil))
			_, md := storedPlain(t, a, res.Key)
			if md[MetaHashAlgorithm] != alg || md[MetaHash] != want {
				t.Fatalf("metadata %s=%q %s=%q, want %s and %s", MetaHashAlgorithm, md[MetaHashAlgorithm], MetaHash, md[MetaHash], alg, want)
			}
			// Pushed again: compared by that hash, not uploaded.
			again, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, data), PushOptions{HashAlgorithm: alg})
			if err != nil || again.Uploaded {
				t.Fatalf("second push: uploaded=%v err=%v, want an idempotent success", again.Uploaded, err)
			}
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); err != nil {
				t.Fatalf("fetch: %v", err)
			}
			checkFile(t, dest, data)
		})
	}
}

// A recorded hash wal-fetch cannot compute fails the fetch: it is never
// skipped.
func TestArchive_FetchWAL_ErrUnknownHashAlgorithm(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	name := "000000010000000000000003"
	data := waltest.Segment(t, name, testSegSize, 3)
	md := storage.Metadata{MetaHash: "00", MetaHashAlgorithm: "whirlpool"}
	if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(name), bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err := a.FetchWAL(ctx, name, filepath.Join(dir, "RECOVERYXLOG"), FetchOptions{})
	var de *DecodeError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), `unsupported hash algorithm "whirlpool"`) {
		t.Fatalf("err = %v, want a DecodeError naming the algorithm", err)
	}
	if got := testio.DirNames(t, dir); len(got) != 0 {
		t.Fatalf("destination directory holds %v after a refused fetch", got)
	}
}
