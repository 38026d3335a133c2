package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pghoardtest"
	"github.com/hoardbackup/hoard/storage"
)

// pghoardDir holds real PGHoard objects (testdata/pghoard/README.md).
const pghoardDir = "../testdata/pghoard"

// pghoardObjects lists the objects of a test data folder.
func pghoardObjects(tb testing.TB, dir string) []string {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "chunks", "*"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		if !strings.HasSuffix(p, ".metadata") {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no objects in %s", dir)
	}
	return out
}

func decodeAll(c *Codec, key string, data []byte, md storage.Metadata) ([]byte, error) {
	r, err := c.Decode(key, bytes.NewReader(data), md)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

type tarMember struct {
	Name string
	Dir  bool
	Size int64
}

func tarMembers(tb testing.TB, data []byte) []tarMember {
	tb.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []tarMember
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		n, err := io.Copy(io.Discard, tr)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, tarMember{Name: strings.TrimSuffix(h.Name, "/"), Dir: h.Typeflag == tar.TypeDir, Size: n})
	}
}

func TestCodec_DecodePGHoardChunks(t *testing.T) {
	for _, set := range []string{"basebackup", "basebackup_one_chunk", "basebackup_with_ts"} {
		dir := filepath.Join(pghoardDir, set)
		c := &Codec{PrivateKeys: pghoardtest.Keys(t, dir)}
		for _, path := range pghoardObjects(t, dir) {
			name := set + "/" + filepath.Base(path)
			t.Run(name, func(t *testing.T) {
				data, md := pghoardtest.Object(t, path)
				if md[MetaEncryptionKeyID] == "" || md[MetaCompressionAlgorithm] != compress.Snappy {
					t.Fatalf("unexpected test object metadata %v", md)
				}
				plain, err := decodeAll(c, name, data, md)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := fmt.Sprint(len(plain)), md[MetaOriginalFileSize]; got != want {
					t.Fatalf("decoded %s bytes, original-file-size %s", got, want)
				}
				if len(plain)%10240 != 0 {
					t.Errorf("tar of %d bytes is not a multiple of the 10240-byte record", len(plain))
				}
				members := tarMembers(t, plain)
				if len(members) == 0 {
					t.Fatal("empty tar")
				}
				prefix := "pgdata/"
				if set == "basebackup_with_ts" {
					prefix = "tablespaces/nstest"
				}
				for _, m := range members {
					if !strings.HasPrefix(m.Name, prefix) && !strings.HasPrefix(m.Name, "pgdata/") {
						t.Errorf("member %s outside %s", m.Name, prefix)
					}
				}
				t.Logf("%d members, first %v", len(members), members[0])
			})
		}
	}
}

func TestCodec_DecodePGHoardFirstChunk(t *testing.T) {
	dir := filepath.Join(pghoardDir, "basebackup")
	c := &Codec{PrivateKeys: pghoardtest.Keys(t, dir)}
	data, md := pghoardtest.Object(t, filepath.Join(dir, "chunks", "00000001.pghoard"))
	if len(data) != 1745 {
		t.Fatalf("object is %d bytes, pghoard-format.md e says 1745", len(data))
	}
	plain, err := decodeAll(c, "00000001.pghoard", data, md)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != 20480 {
		t.Fatalf("plaintext %d bytes, want 20480", len(plain))
	}
	want := []tarMember{
		{Name: "pgdata/pg_notify", Dir: true},
		{Name: "pgdata/pg_notify/0000", Size: 8192},
		{Name: "pgdata/pg_subtrans", Dir: true},
	}
	got := tarMembers(t, plain)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("members %v, want %v", got, want)
	}
}

func TestCodec_DecodePGHoardTablespaces(t *testing.T) {
	dir := filepath.Join(pghoardDir, "basebackup_with_ts")
	c := &Codec{PrivateKeys: pghoardtest.Keys(t, dir)}
	seen := map[string]bool{}
	for _, path := range pghoardObjects(t, dir) {
		data, md := pghoardtest.Object(t, path)
		plain, err := decodeAll(c, path, data, md)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tarMembers(t, plain) {
			if parts := strings.SplitN(m.Name, "/", 3); len(parts) >= 2 && parts[0] == "tablespaces" {
				seen[parts[1]] = true
			}
		}
	}
	if !seen["nstest1"] || !seen["nstest2"] {
		t.Fatalf("tablespaces seen: %v, want nstest1 and nstest2", seen)
	}
}

func TestCodec_DecodePGHoardDelta(t *testing.T) {
	dir := filepath.Join(pghoardDir, "basebackup_delta")
	c := &Codec{}
	for _, path := range pghoardObjects(t, dir) {
		data, md := pghoardtest.Object(t, path)
		plain, err := decodeAll(c, path, data, md)
		if err != nil {
			t.Fatal(err)
		}
		sum := blake2s.Sum256(plain)
		if got, want := hex.EncodeToString(sum[:]), filepath.Base(path); got != want {
			t.Errorf("BLAKE2s-256 of %s's plaintext is %s", want, got)
		}
		if got, want := fmt.Sprint(len(plain)), md[MetaOriginalFileSize]; got != want {
			t.Errorf("%s: %s bytes, original-file-size %s", path, got, want)
		}
	}
}

// TestCodec_PGHoardErrTruncated cuts real objects: every cut must fail.
func TestCodec_PGHoardErrTruncated(t *testing.T) {
	for _, set := range []string{"basebackup", "basebackup_delta"} {
		dir := filepath.Join(pghoardDir, set)
		c := &Codec{PrivateKeys: pghoardtest.Keys(t, dir)}
		for _, path := range pghoardObjects(t, dir)[:1] {
			data, md := pghoardtest.Object(t, path)
			for n := 0; n < len(data); n += max(1, len(data)/97) {
				_, err := decodeAll(c, path, data[:n], md)
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("%s cut at %d: err = %v, want *DecodeError", path, n, err)
				}
			}
		}
	}
}

func TestCodec_ErrMissingKey(t *testing.T) {
	dir := filepath.Join(pghoardDir, "basebackup")
	data, md := pghoardtest.Object(t, filepath.Join(dir, "chunks", "00000001.pghoard"))
	for name, c := range map[string]*Codec{
		"no keys":         {},
		"other key":       {PrivateKeys: map[string]*rsa.PrivateKey{"other": testKey(t)}},
		"public key only": {KeyID: md[MetaEncryptionKeyID], PublicKey: &testKey(t).PublicKey},
	} {
		_, err := decodeAll(c, "obj1", data, md)
		var de *DecodeError
		if !errors.As(err, &de) || de.Key != "obj1" {
			t.Fatalf("%s: err = %v, want *DecodeError", name, err)
		}
		kid := md[MetaEncryptionKeyID]
		// A configuration from the environment alone (a sidecar) has no
		// file to add the key to: the variables are named too.
		for _, want := range []string{
			"object obj1 is encrypted with key " + kid + ", whose private key is not in the configuration: " +
				"add it to the site as encryption_keys." + kid + ".private",
			"HOARD_ENCRYPTION_PRIVATE_KEY_FILE",
			// An old key after a rotation: not the variable, which holds
			// encryption_key_id's, but a file in the keys directory.
			"as the file " + kid + ".private.pem in the directory HOARD_ENCRYPTION_KEYS_DIR names",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: err = %q, want it to say %q", name, err, want)
			}
		}
	}
}

func TestCodec_ErrWrongKey(t *testing.T) {
	dir := filepath.Join(pghoardDir, "basebackup")
	data, md := pghoardtest.Object(t, filepath.Join(dir, "chunks", "00000001.pghoard"))
	c := &Codec{PrivateKeys: map[string]*rsa.PrivateKey{md[MetaEncryptionKeyID]: testKey3072(t)}}
	_, err := decodeAll(c, "obj1", data, md)
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, crypto.ErrTampered) {
		t.Fatalf("err = %v, want *DecodeError wrapping ErrTampered", err)
	}
}

var (
	keysOnce sync.Once
	key2048  *rsa.PrivateKey
	key3072  *rsa.PrivateKey
)

func genKeys() {
	var err error
	if key2048, err = crypto.GenerateKey(2048); err != nil {
		panic(err)
	}
	if key3072, err = crypto.GenerateKey(3072); err != nil {
		panic(err)
	}
}

func testKey(tb testing.TB) *rsa.PrivateKey     { keysOnce.Do(genKeys); return key2048 }
func testKey3072(tb testing.TB) *rsa.PrivateKey { keysOnce.Do(genKeys); return key3072 }

// memStore is a map-based Store for unit tests.
type memStore struct {
	mu   sync.Mutex
	objs map[string]memObject
}

type memObject struct {
	data []byte
	md   storage.Metadata
}

func newMemStore() *memStore { return &memStore{objs: map[string]memObject{}} }

func (m *memStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := storage.Metadata{}
	for k, v := range md {
		cp[k] = v
	}
	m.objs[key] = memObject{data: data, md: cp}
	return nil
}

func (m *memStore) Create(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	m.mu.Lock()
	_, ok := m.objs[key]
	m.mu.Unlock()
	if ok {
		return fmt.Errorf("create %s: %w", key, storage.ErrExist)
	}
	return m.Put(ctx, key, r, md)
}

func (m *memStore) get(key string) (memObject, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return o, fmt.Errorf("%s: %w", key, storage.ErrNotFound)
	}
	return o, nil
}

func (m *memStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	o, err := m.get(key)
	if err != nil {
		return nil, storage.Object{}, err
	}
	return io.NopCloser(bytes.NewReader(o.data)), storage.Object{Key: key, Size: int64(len(o.data)), Metadata: o.md}, nil
}

func (m *memStore) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	o, err := m.get(key)
	if err != nil {
		return nil, err
	}
	d := o.data[min(offset, int64(len(o.data))):]
	if length >= 0 {
		d = d[:min(length, int64(len(d)))]
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

func (m *memStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	o, err := m.get(key)
	if err != nil {
		return storage.Object{}, err
	}
	return storage.Object{Key: key, Size: int64(len(o.data)), Modified: time.Now(), Metadata: o.md}, nil
}

func (m *memStore) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	m.mu.Lock()
	var keys []string
	for k := range m.objs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		o, err := m.get(k)
		if err != nil {
			continue
		}
		if err := fn(storage.Object{Key: k, Size: int64(len(o.data))}); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

func (m *memStore) Close() error { return nil }

// walData returns n bytes that compress like WAL.
func walData(n int) []byte {
	rng := rand.New(rand.NewSource(int64(n)))
	b := make([]byte, n)
	for i := 0; i < n; {
		run := rng.Intn(512) + 1
		switch rng.Intn(3) {
		case 0:
		case 1:
			for j := i; j < i+run && j < n; j++ {
				b[j] = byte(j % 61)
			}
		default:
			rng.Read(b[i:min(i+run, n)])
		}
		i += run
	}
	return b
}

func codecs(tb testing.TB) map[string]*Codec {
	k := testKey(tb)
	out := map[string]*Codec{}
	for _, alg := range append([]string{compress.None}, compress.Algorithms...) {
		name := alg
		if name == "" {
			name = "none"
		}
		out[name] = &Codec{Compression: alg, Host: "db1"}
		out[name+"+enc"] = &Codec{Compression: alg, KeyID: "k1", PublicKey: &k.PublicKey,
			PrivateKeys: map[string]*rsa.PrivateKey{"k1": k}, Host: "db1"}
	}
	return out
}

func TestCodec_RoundTrip(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	sizes := []int{0, 1, 64<<10 + 1, 3<<20 + 5}
	for name, c := range codecs(t) {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				plain := walData(n)
				key := fmt.Sprintf("site/xlog/%s-%d", name, n)
				got, err := c.Put(ctx, st, key, bytes.NewReader(plain), int64(n), storage.Metadata{"pg-version": "150004", MetaEncryptionKeyID: "bogus"})
				if err != nil {
					t.Fatal(err)
				}
				o, err := st.get(key)
				if err != nil {
					t.Fatal(err)
				}
				if got.PlainSize != int64(n) || got.StoredSize != int64(len(o.data)) {
					t.Errorf("Stored sizes %d/%d, want %d/%d", got.PlainSize, got.StoredSize, n, len(o.data))
				}
				md := o.md
				if md["pg-version"] != "150004" || md[MetaHost] != "db1" || md[MetaOriginalFileSize] != fmt.Sprint(n) {
					t.Errorf("metadata %v", md)
				}
				if c.KeyID == "" && md[MetaEncryptionKeyID] != "" {
					t.Errorf("unencrypted object with encryption-key-id %q", md[MetaEncryptionKeyID])
				}
				if c.KeyID != "" && md[MetaEncryptionKeyID] != c.KeyID {
					t.Errorf("encryption-key-id %q", md[MetaEncryptionKeyID])
				}
				if _, ok := md[MetaCompressionAlgorithm]; ok != (c.Compression != "") {
					t.Errorf("compression-algorithm in %v", md)
				}
				r, md2, err := c.Open(ctx, st, key)
				if err != nil {
					t.Fatal(err)
				}
				back, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(back, plain) {
					t.Fatal("round trip differs")
				}
				if md2[MetaHost] != "db1" {
					t.Errorf("Open metadata %v", md2)
				}
			})
		}
	}
}

func TestCodec_ErrTruncated(t *testing.T) {
	plain := walData(300 << 10)
	for name, c := range codecs(t) {
		for _, sized := range []bool{true, false} {
			if name == "none" || (name == "snappy" && !sized) {
				// Without a size or a container nothing can tell a
				// short plain stream or a snappy stream cut at a chunk
				// boundary from a shorter original.
				continue
			}
			data, md := encodeBytes(t, c, plain, sized)
			for _, n := range []int{0, 1, 6, 9, 100, len(data) / 2, len(data) - 33, len(data) - 32, len(data) - 1} {
				if n == 0 && !sized && strings.HasSuffix(name, "+enc") {
					continue // a 0-byte envelope is the empty plaintext (a.1)
				}
				out, err := decodeAll(c, "obj", data[:n], md)
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Errorf("%s sized=%v cut at %d of %d: %d bytes, err = %v, want *DecodeError", name, sized, n, len(data), len(out), err)
				}
			}
		}
	}
}

func TestCodec_ErrTampered(t *testing.T) {
	k := testKey(t)
	plain := walData(200 << 10)
	for _, alg := range compress.Algorithms {
		c := codecs(t)[alg+"+enc"]
		data, md := encodeBytes(t, c, plain, true)
		for name, off := range map[string]int{
			"magic": 2, "length": 7, "wrapped key": 8 + k.Size()/3, "ciphertext": 8 + k.Size() + 10,
			"ciphertext end": len(data) - 33, "tag": len(data) - 5,
		} {
			bad := bytes.Clone(data)
			bad[off] ^= 1
			_, err := decodeAll(c, "obj", bad, md)
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, crypto.ErrTampered) {
				t.Errorf("%s, flipped %s: err = %v, want DecodeError wrapping ErrTampered", alg, name, err)
			}
		}
	}
}

func TestCodec_ErrCorrupt(t *testing.T) {
	plain := walData(200 << 10)
	for _, alg := range compress.Algorithms {
		c := codecs(t)[alg]
		data, md := encodeBytes(t, c, plain, false)
		bad := bytes.Clone(data)
		for i := len(bad) / 3; i < len(bad)/3+16; i++ {
			bad[i] ^= 0x5a
		}
		out, err := decodeAll(c, "obj", bad, md)
		if err == nil && bytes.Equal(out, plain) {
			t.Errorf("%s: corruption unnoticed", alg)
		}
		if err == nil {
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("%s: err = %v, want *DecodeError", alg, err)
		}
	}
}

// encodeBytes encodes plain with c through a store and returns the stored
// bytes and metadata.
func encodeBytes(tb testing.TB, c *Codec, plain []byte, sized bool) ([]byte, storage.Metadata) {
	tb.Helper()
	st := newMemStore()
	size := int64(len(plain))
	if !sized {
		size = -1
	}
	if _, err := c.Put(context.Background(), st, "obj", bytes.NewReader(plain), size, nil); err != nil {
		tb.Fatal(err)
	}
	o, err := st.get("obj")
	if err != nil {
		tb.Fatal(err)
	}
	return o.data, o.md
}

func TestCodec_PutErrSize(t *testing.T) {
	for name, c := range codecs(t) {
		st := newMemStore()
		for _, size := range []int64{99, 101} {
			_, err := c.Put(context.Background(), st, "obj", bytes.NewReader(walData(100)), size, nil)
			if err == nil {
				t.Errorf("%s: Put of 100 bytes with size %d succeeded", name, size)
			}
			if _, err := st.get("obj"); err == nil {
				t.Errorf("%s: Put left an object after an error", name)
			}
		}
	}
}

func TestCodec_PutErrSource(t *testing.T) {
	boom := errors.New("disk on fire")
	for name, c := range codecs(t) {
		st := newMemStore()
		src := io.MultiReader(bytes.NewReader(walData(100000)), errSource{boom})
		_, err := c.Put(context.Background(), st, "obj", src, -1, nil)
		if !errors.Is(err, boom) {
			t.Errorf("%s: err = %v, want the source's", name, err)
		}
		if _, err := st.get("obj"); err == nil {
			t.Errorf("%s: Put left an object after a source error", name)
		}
	}
}

func TestCodec_PutErrConfig(t *testing.T) {
	k := testKey(t)
	for name, c := range map[string]*Codec{
		"key id without key": {KeyID: "k1"},
		"key without id":     {PublicKey: &k.PublicKey},
		"unknown algorithm":  {Compression: "gzip"},
	} {
		if _, err := c.Put(context.Background(), newMemStore(), "obj", bytes.NewReader(nil), 0, nil); err == nil {
			t.Errorf("%s: Put succeeded", name)
		}
	}
}

func TestCodec_DecodeEmptyMetadataValues(t *testing.T) {
	// rohmu drops empty values; "" must read as absent.
	c := &Codec{}
	out, err := decodeAll(c, "obj", []byte("plain"), storage.Metadata{MetaCompressionAlgorithm: "", MetaEncryptionKeyID: "", MetaOriginalFileSize: ""})
	if err != nil || string(out) != "plain" {
		t.Fatalf("got %q, %v", out, err)
	}
}

func TestCodec_DecodeErrStore(t *testing.T) {
	// A failing store is not a DecodeError: the caller may retry.
	boom := errors.New("connection reset")
	for name, c := range codecs(t) {
		data, md := encodeBytes(t, c, walData(100000), true)
		r, err := c.Decode("obj", io.MultiReader(bytes.NewReader(data[:len(data)/2]), errSource{boom}), md)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		var de *DecodeError
		if !errors.Is(err, boom) || errors.As(err, &de) {
			t.Errorf("%s: err = %v, want the store's error, not a DecodeError", name, err)
		}
		if _, err2 := r.Read(make([]byte, 1)); !errors.Is(err2, boom) {
			t.Errorf("%s: second Read: %v", name, err2)
		}
	}
}

type errSource struct{ err error }

func (e errSource) Read([]byte) (int, error) { return 0, e.err }

// discardStore drops what Put stores, to time the codec alone.
type discardStore struct{ *memStore }

func (discardStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func benchCodecs(b *testing.B, fn func(b *testing.B, c *Codec, plain []byte)) {
	plain := walData(16 << 20)
	cs := codecs(b)
	for _, name := range []string{"none", "snappy", "zstd", "lzma", "lz4"} {
		for _, suffix := range []string{"", "+enc"} {
			c := cs[name+suffix]
			b.Run(name+suffix, func(b *testing.B) {
				b.SetBytes(int64(len(plain)))
				fn(b, c, plain)
			})
		}
	}
}

// BenchmarkCodec_Encode measures Put throughput (plaintext MB/s) on one
// 16 MiB WAL-like segment per operation.
func BenchmarkCodec_Encode(b *testing.B) {
	st := discardStore{newMemStore()}
	benchCodecs(b, func(b *testing.B, c *Codec, plain []byte) {
		for b.Loop() {
			if _, err := c.Put(context.Background(), st, "obj", bytes.NewReader(plain), int64(len(plain)), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCodec_Decode measures Decode throughput (plaintext MB/s).
func BenchmarkCodec_Decode(b *testing.B) {
	benchCodecs(b, func(b *testing.B, c *Codec, plain []byte) {
		data, md := encodeBytes(b, c, plain, true)
		b.ReportMetric(float64(len(data))/float64(len(plain)), "ratio")
		for b.Loop() {
			r, err := c.Decode("obj", bytes.NewReader(data), md)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
			r.Close()
		}
	})
}

// TestCodec_NewEncoder: what NewEncoder writes, stored with the metadata
// its Close returns, decodes to the plaintext, for every codec; a source
// of the wrong size fails Close.
func TestCodec_NewEncoder(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	plain := walData(3<<20 + 5)
	for name, c := range codecs(t) {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			enc, err := c.NewEncoder(ctx, &buf, "staged", storage.Metadata{MetaFormat: FormatDeltaV2}, UploadOptions{Size: int64(len(plain))})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := enc.Write(plain); err != nil {
				t.Fatal(err)
			}
			got, err := enc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got.PlainSize != int64(len(plain)) || got.StoredSize != int64(buf.Len()) || got.Metadata[MetaFormat] != FormatDeltaV2 {
				t.Errorf("Stored %d/%d %v, want %d/%d", got.PlainSize, got.StoredSize, got.Metadata, len(plain), buf.Len())
			}
			key := "site/basebackup_delta/" + name
			if err := st.Put(ctx, key, &buf, got.Metadata); err != nil {
				t.Fatal(err)
			}
			r, _, err := c.Open(ctx, st, key)
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(back, plain) {
				t.Fatalf("decoded %d bytes, %v", len(back), err)
			}

			enc, err = c.NewEncoder(ctx, io.Discard, "short", nil, UploadOptions{Size: int64(len(plain))})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := enc.Write(plain[:10]); err != nil {
				t.Fatal(err)
			}
			if _, err := enc.Close(); err == nil {
				t.Error("a short source did not fail Close")
			}
		})
	}
}

// readsStore counts the reads its Put makes, each into a buffer far larger
// than any piece an Upload hands over, and keeps the bytes.
type readsStore struct {
	*memStore
	reads int
}

func (s *readsStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	var data []byte
	buf := make([]byte, 4<<20)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.reads++
			data = append(data, buf[:n]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return s.memStore.Put(ctx, key, bytes.NewReader(data), md)
}

// TestUpload_WriteSize: an Upload hands its stored bytes to the store in
// pieces of UploadWriteSize, not in the compressor's blocks (lz4's 64 KiB)
// or the envelope's 32 KiB: a store's reads, and a local store's writes,
// are that large. The object reads back whole.
func TestUpload_WriteSize(t *testing.T) {
	ctx := context.Background()
	plain := make([]byte, 4<<20)
	rand.New(rand.NewSource(1)).Read(plain) // incompressible: stored as large as plain
	for _, name := range []string{"lz4", "lz4+enc", "none+enc"} {
		t.Run(name, func(t *testing.T) {
			c := codecs(t)[name]
			st := &readsStore{memStore: newMemStore()}
			u, err := c.NewUpload(ctx, st, "obj", nil, UploadOptions{Size: int64(len(plain))})
			if err != nil {
				t.Fatal(err)
			}
			for p := plain; len(p) > 0; p = p[min(len(p), 8192):] {
				if _, err := u.Write(p[:min(len(p), 8192)]); err != nil {
					t.Fatal(err)
				}
			}
			s, err := u.Close()
			if err != nil {
				t.Fatal(err)
			}
			if most := int(s.StoredSize/UploadWriteSize) + 1; st.reads > most {
				t.Errorf("%d stored bytes came in %d reads, want at most %d", s.StoredSize, st.reads, most)
			}
			if got, err := readAll(c, st, "obj"); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("read back %d bytes, %v; want the %d written", len(got), err, len(plain))
			}
		})
	}
}

// fullWriter fails every Write after limit bytes with ENOSPC, as a file
// on a full disk does.
type fullWriter struct{ limit int }

func (w *fullWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, &os.PathError{Op: "write", Path: "/staging/.hoard-delta.tmp", Err: syscall.ENOSPC}
	}
	w.limit -= len(p)
	return len(p), nil
}

// TestUpload_Write_ErrStore: when the store (here an encoder's file)
// fails while the Upload is written, Write reports the store's error,
// naming the file and the full disk, not the closed pipe between them.
func TestUpload_Write_ErrStore(t *testing.T) {
	plain := make([]byte, 8<<20)
	rand.New(rand.NewSource(1)).Read(plain) // incompressible
	for name, c := range codecs(t) {
		t.Run(name, func(t *testing.T) {
			enc, err := c.NewEncoder(context.Background(), &fullWriter{limit: 1 << 20}, "staged", nil, UploadOptions{Size: int64(len(plain))})
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off < len(plain) && err == nil; off += 256 << 10 {
				_, err = enc.Write(plain[off : off+256<<10])
			}
			if err == nil {
				_, err = enc.Close()
			} else {
				_ = enc.Abort(err)
			}
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "/staging/.hoard-delta.tmp") {
				t.Errorf("got %v, want the store's ENOSPC naming its file", err)
			}
		})
	}
}
