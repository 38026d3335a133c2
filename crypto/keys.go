package crypto

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// GenerateKey makes a new RSA key pair with public exponent 65537, as
// pghoard_create_keys does (its default is 3072 bits).
func GenerateKey(bits int) (*rsa.PrivateKey, error) {
	if err := checkKeySize(bits / 8); err != nil {
		return nil, err
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("generate %d-bit rsa key: %w", bits, err)
	}
	return k, nil
}

// EncodePrivateKeyPEM encodes k as an unencrypted PKCS#8 "PRIVATE KEY" PEM
// block, the form PGHoard's config holds (pghoard-format.md a.6).
func EncodePrivateKeyPEM(k *rsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("encode private key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// EncodePublicKeyPEM encodes k as a SubjectPublicKeyInfo "PUBLIC KEY" PEM
// block.
func EncodePublicKeyPEM(k *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// ParsePrivateKeyPEM parses an RSA private key in PKCS#8 ("PRIVATE KEY") or
// PKCS#1 ("RSA PRIVATE KEY") PEM form. Encrypted PEM is not supported, as
// in PGHoard.
func ParsePrivateKeyPEM(s string) (*rsa.PrivateKey, error) {
	return parseKeyPEM(s, "private", x509.ParsePKCS8PrivateKey, x509.ParsePKCS1PrivateKey)
}

// ParsePublicKeyPEM parses an RSA public key in SubjectPublicKeyInfo
// ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") PEM form.
func ParsePublicKeyPEM(s string) (*rsa.PublicKey, error) {
	return parseKeyPEM(s, "public", x509.ParsePKIXPublicKey, x509.ParsePKCS1PublicKey)
}

// rsaKey is an RSA private or public key.
type rsaKey interface {
	*rsa.PrivateKey | *rsa.PublicKey
	Size() int
}

// parseKeyPEM parses an RSA key of kind ("private", "public") in PEM
// form: a "<KIND> KEY" block holds any algorithm's key (generic parses it;
// it must be RSA), an "RSA <KIND> KEY" block a PKCS#1 one. The key's size
// must be one PGHoard accepts.
func parseKeyPEM[K rsaKey](s, kind string, generic func([]byte) (any, error), pkcs1 func([]byte) (K, error)) (K, error) {
	what := "parse " + kind + " key"
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New(what + ": no PEM block")
	}
	typ := strings.ToUpper(kind) + " KEY"
	var k K
	switch b.Type {
	case typ:
		parsed, err := generic(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		rk, ok := parsed.(K)
		if !ok {
			return nil, fmt.Errorf("%s: %T is not an rsa key", what, parsed)
		}
		k = rk
	case "RSA " + typ:
		rk, err := pkcs1(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		k = rk
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not %s or RSA %s", what, b.Type, typ, typ)
	}
	if err := checkKeySize(k.Size()); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return k, nil
}
