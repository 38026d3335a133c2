package crypto

import (
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
		if k, err := ParsePrivateKeyPEM(s); err == nil {
			if checkKeySize(k.Size()) != nil {
				t.Fatalf("accepted a %d-byte private key", k.Size())
			}
			enc, err := EncodePrivateKeyPEM(k)
			if err != nil {
				t.Fatalf("encode accepted private key: %v", err)
			}
			again, err := ParsePrivateKeyPEM(enc)
			if err != nil || !again.Equal(k) {
				t.Fatalf("private key does not survive encoding: %v", err)
			}
		}
		if k, err := ParsePublicKeyPEM(s); err == nil {
			if checkKeySize(k.Size()) != nil {
				t.Fatalf("accepted a %d-byte public key", k.Size())
			}
			enc, err := EncodePublicKeyPEM(k)
			if err != nil {
				t.Fatalf("encode accepted public key: %v", err)
			}
			again, err := ParsePublicKeyPEM(enc)
			if err != nil || !again.Equal(k) {
				t.Fatalf("public key does not survive encoding: %v", err)
			}
		}
	})
}
