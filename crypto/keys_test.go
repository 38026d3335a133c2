package crypto

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"hash"
	"strings"
	"testing"
)

func sha1New() hash.Hash { return sha1.New() }

func pkcs1PrivatePEM(k *rsa.PrivateKey) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

func pkcs1PublicPEM(k *rsa.PublicKey) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k)}))
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

// A 768-bit key (openssl genrsa 768) parses as RSA but cannot wrap the
// 64-byte secret: loading it must fail with the reason, not later at the
// first upload or, worse, at restore.
const smallPrivPEM = `-----BEGIN PRIVATE KEY-----
MIIB4wIBADANBgkqhkiG9w0BAQEFAASCAc0wggHJAgEAAmEArG0guXMUAYBLea8A
gWtZoQ7+3Lb7AocQl4xbE3U1esAeJpHK1wsPdDXA0+z3RHiBmwjbmLehza+VuwzO
vzDFYLcR0ZMZ6YsysZow0KGAV1fSkhrFy1pX9Qmxhc0j1JQBAgMBAAECYF9fdUxe
pOA3sIe8DtGHKWp2uu4moCzDvJ+22OGoYU5mWccHuWS9D20+FkyitBrBdDZ2JevU
DpbRag4llscX/jAR7kbXVsuC8JyAnDg57glSlZ9SszQI+Ur+d64p3T664QIxANSr
EC9JJP72QGW4p3SCB4x6N3rJWDbASFjE2ksopB8t+vrnqXWmwk5rc8b5UpC+BQIx
AM+PA7X4b16JMS26JsdHwN2ENKER1a2VLBWttvSAOy5mN1a8HHFMf0rlza4X8Tzi
zQIwafWVScoK2dG9wjDfligXNMHMFKxu/FCPe1MRZHMqWrKhIxP7lbfxhfr5o4Cj
x6Q1AjA7Zd8W/WDJuhMz1djxIKyl+AajrZnr0gvKrGr2L5hAIApoLO8q0UyAX6Fr
1/g2h2UCMBWiYOHnPy5y1Wnkt2c0oCSinTz6rlgDz165COu5HAVf9SomJwb3TO+/
9OpoKiV6VQ==
-----END PRIVATE KEY-----
`

const smallPubPEM = `-----BEGIN PUBLIC KEY-----
MHwwDQYJKoZIhvcNAQEBBQADawAwaAJhAKxtILlzFAGAS3mvAIFrWaEO/ty2+wKH
EJeMWxN1NXrAHiaRytcLD3Q1wNPs90R4gZsI25i3oc2vlbsMzr8wxWC3EdGTGemL
MrGaMNChgFdX0pIaxctaV/UJsYXNI9SUAQIDAQAB
-----END PUBLIC KEY-----
`

func TestParseKeyPEM_ErrTooSmall(t *testing.T) {
	if _, err := ParsePrivateKeyPEM(smallPrivPEM); err == nil || !strings.Contains(err.Error(), "768 bits is too small") {
		t.Errorf("ParsePrivateKeyPEM(768-bit key) = %v", err)
	}
	if _, err := ParsePublicKeyPEM(smallPubPEM); err == nil || !strings.Contains(err.Error(), "768 bits is too small") {
		t.Errorf("ParsePublicKeyPEM(768-bit key) = %v", err)
	}
}
