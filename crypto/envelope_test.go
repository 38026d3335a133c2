package crypto

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
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
	if _, err := w.Write(plain); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
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

func TestKeys_PEM(t *testing.T) {
	k := key(t)
	privPEM, err := EncodePrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := EncodePublicKeyPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(privPEM, "-----BEGIN PRIVATE KEY-----\n") || !strings.HasPrefix(pubPEM, "-----BEGIN PUBLIC KEY-----\n") {
		t.Fatalf("PEM types: %q / %q", privPEM[:30], pubPEM[:30])
	}
	priv, err := ParsePrivateKeyPEM(privPEM)
	if err != nil || !priv.Equal(k) {
		t.Fatalf("ParsePrivateKeyPEM: %v", err)
	}
	pub, err := ParsePublicKeyPEM(pubPEM)
	if err != nil || !pub.Equal(&k.PublicKey) {
		t.Fatalf("ParsePublicKeyPEM: %v", err)
	}
	if _, err := ParsePrivateKeyPEM(pkcs1PrivatePEM(k)); err != nil {
		t.Errorf("PKCS#1 private key: %v", err)
	}
	if _, err := ParsePublicKeyPEM(pkcs1PublicPEM(&k.PublicKey)); err != nil {
		t.Errorf("PKCS#1 public key: %v", err)
	}
	for _, bad := range []string{"", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", pubPEM} {
		if _, err := ParsePrivateKeyPEM(bad); err == nil {
			t.Errorf("ParsePrivateKeyPEM(%.20q) succeeded", bad)
		}
	}
	if _, err := ParsePublicKeyPEM(privPEM); err == nil {
		t.Error("ParsePublicKeyPEM(private key) succeeded")
	}
}

func TestGenerateKey_ErrTooSmall(t *testing.T) {
	if _, err := GenerateKey(512); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("GenerateKey(512) = %v", err)
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
