package crypto

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

// key returns a 2048-bit key shared by the package's tests.
func key(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	keyOnce.Do(func() {
		k, err := GenerateKey(2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

func encrypt(tb testing.TB, pub *rsa.PublicKey, plain []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, pub)
	testio.WriteClose(tb, w, plain)
	return buf.Bytes()
}

func random(tb testing.TB, n int) []byte {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestEnvelope_RoundTrip(t *testing.T) {
	k := key(t)
	for _, n := range []int{0, 1, 31, 32, 33, chunkLen - 1, chunkLen, chunkLen + tagLen + 1, 3<<20 + 7} {
		plain := random(t, n)
		obj := encrypt(t, &k.PublicKey, plain)
		if n == 0 {
			if len(obj) != 0 {
				t.Fatalf("empty plaintext made a %d-byte object", len(obj))
			}
		} else if got, want := len(obj), headerLen+k.Size()+n+tagLen; got != want {
			t.Fatalf("n=%d: object is %d bytes, want %d", n, got, want)
		}
		// A one-byte reader exercises the look-behind at every offset.
		var src io.Reader = bytes.NewReader(obj)
		if n < 70000 {
			src = &oneByteReader{src}
		}
		got, err := io.ReadAll(NewReader(src, k))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("n=%d: plaintext differs", n)
		}
	}
}

func TestWriter_Layout(t *testing.T) {
	k := key(t)
	obj := encrypt(t, &k.PublicKey, []byte("hello"))
	if got := string(obj[:6]); got != Magic {
		t.Errorf("magic %q", got)
	}
	if got, want := int(binary.BigEndian.Uint16(obj[6:8])), k.Size(); got != want {
		t.Errorf("wrapped key length %d, want %d", got, want)
	}
}

func TestReader_ErrTampered(t *testing.T) {
	k := key(t)
	plain := random(t, 100000)
	obj := encrypt(t, &k.PublicKey, plain)
	L := k.Size()
	flips := map[string]int{
		"magic":       0,
		"length":      6,
		"wrapped key": 8 + L/2,
		"ciphertext":  8 + L + 5000,
		"last byte":   8 + L + len(plain) - 1,
		"tag":         len(obj) - 1,
		"tag start":   len(obj) - tagLen,
	}
	for name, off := range flips {
		t.Run("flip "+name, func(t *testing.T) {
			bad := bytes.Clone(obj)
			bad[off] ^= 0x40
			expectTampered(t, k, bad)
		})
	}
	for _, n := range []int{1, 7, 8, 9, 8 + L - 1, 8 + L, 8 + L + 1, 8 + L + tagLen - 1, 8 + L + tagLen, len(obj) - tagLen, len(obj) - 1} {
		expectTampered(t, k, obj[:n])
	}
	t.Run("appended", func(t *testing.T) {
		expectTampered(t, k, append(bytes.Clone(obj), 0))
	})
	t.Run("wrong key", func(t *testing.T) {
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		expectTampered(t, other, obj)
	})
	t.Run("wrong key size", func(t *testing.T) {
		other, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			t.Fatal(err)
		}
		expectTampered(t, other, obj)
	})
	t.Run("short secret", func(t *testing.T) {
		wrapped, err := rsa.EncryptOAEP(sha1New(), rand.Reader, &k.PublicKey, make([]byte, 63), nil)
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]byte(Magic), byte(len(wrapped)>>8), byte(len(wrapped)))
		bad = append(bad, wrapped...)
		bad = append(bad, make([]byte, 40)...)
		expectTampered(t, k, bad)
	})
}

func expectTampered(t *testing.T, k *rsa.PrivateKey, obj []byte) {
	t.Helper()
	r := NewReader(bytes.NewReader(obj), k)
	_, err := io.ReadAll(r)
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("%d-byte object: err = %v, want ErrTampered", len(obj), err)
	}
	// The error sticks.
	if _, err2 := r.Read(make([]byte, 10)); !errors.Is(err2, ErrTampered) {
		t.Fatalf("second Read: %v", err2)
	}
}

func TestReader_ErrSource(t *testing.T) {
	k := key(t)
	obj := encrypt(t, &k.PublicKey, random(t, 5000))
	boom := errors.New("network down")
	r := NewReader(io.MultiReader(bytes.NewReader(obj[:1000]), errReader{boom}), k)
	_, err := io.ReadAll(r)
	if !errors.Is(err, boom) || errors.Is(err, ErrTampered) {
		t.Fatalf("err = %v, want the source's error", err)
	}
}

type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// pghoardDir holds real PGHoard objects and the key that encrypted them.
const pghoardDir = "../testdata/pghoard"

// pghoardKey returns the private key of the basebackup test objects.
func pghoardKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(pghoardDir, "basebackup", "config.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var cfg struct {
		BackupSites map[string]struct {
			EncryptionKeys map[string]struct{ Private string } `json:"encryption_keys"`
		} `json:"backup_sites"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		tb.Fatal(err)
	}
	for _, site := range cfg.BackupSites {
		for _, k := range site.EncryptionKeys {
			priv, err := ParsePrivateKeyPEM(k.Private)
			if err != nil {
				tb.Fatal(err)
			}
			return priv
		}
	}
	tb.Fatal("no key in config.json")
	return nil
}

// TestReader_PGHoard decrypts PGHoard's objects: the plaintext is a snappy
// stream (pghoard-format.md e).
func TestReader_PGHoard(t *testing.T) {
	k := pghoardKey(t)
	obj, err := os.ReadFile(filepath.Join(pghoardDir, "basebackup", "chunks", "00000001.pghoard"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(obj), 1745; got != want {
		t.Fatalf("object is %d bytes, want %d", got, want)
	}
	plain, err := io.ReadAll(NewReader(bytes.NewReader(obj), k))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(plain), 1745-8-384-32; got != want {
		t.Errorf("plaintext %d bytes, want %d", got, want)
	}
	if !bytes.HasPrefix(plain, []byte("\xff\x06\x00\x00sNaPpY")) {
		t.Errorf("plaintext starts %x, want the snappy stream identifier", plain[:10])
	}
}
