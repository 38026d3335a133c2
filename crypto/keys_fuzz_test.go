package crypto

import (
	"crypto/rsa"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseKeyPEM feeds arbitrary text to the PEM key parsers: they must
// never panic, and a key they accept must be an RSA key of a usable size
// that encodes and parses back to the same key.
func FuzzParseKeyPEM(f *testing.F) {
	k := pghoardKey(f)
	priv, err := EncodePrivateKeyPEM(k)
	if err != nil {
		f.Fatal(err)
	}
	pub, err := EncodePublicKeyPEM(&k.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(priv)
	f.Add(pub)
	f.Add(priv[:len(priv)/2])
	f.Add("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
	f.Add("-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----\n")
	f.Add("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
	if b, err := os.ReadFile(filepath.Join(pghoardDir, "config.json")); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkRoundTrip(t, "private", s, ParsePrivateKeyPEM, EncodePrivateKeyPEM, func(a, b *rsa.PrivateKey) bool { return a.Equal(b) })
		checkRoundTrip(t, "public", s, ParsePublicKeyPEM, EncodePublicKeyPEM, func(a, b *rsa.PublicKey) bool { return a.Equal(b) })
	})
}

// checkRoundTrip fails t when parse accepts s as a key of an unusable size,
// or as one that does not come back equal from encode and parse.
func checkRoundTrip[K interface{ Size() int }](t *testing.T, what, s string, parse func(string) (K, error), encode func(K) (string, error), equal func(a, b K) bool) {
	k, err := parse(s)
	if err != nil {
		return
	}
	if checkKeySize(k.Size()) != nil {
		t.Fatalf("accepted a %d-byte %s key", k.Size(), what)
	}
	enc, err := encode(k)
	if err != nil {
		t.Fatalf("encode accepted %s key: %v", what, err)
	}
	again, err := parse(enc)
	if err != nil || !equal(again, k) {
		t.Fatalf("%s key does not survive encoding: %v", what, err)
	}
}
