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
