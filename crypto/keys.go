package crypto

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
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
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("parse private key: no PEM block")
	}
	var k *rsa.PrivateKey
	switch b.Type {
	case "PRIVATE KEY":
		parsed, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		rk, ok := parsed.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("parse private key: %T is not an rsa key", parsed)
		}
		k = rk
	case "RSA PRIVATE KEY":
		rk, err := x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		k = rk
	default:
		return nil, fmt.Errorf("parse private key: PEM block %q is not PRIVATE KEY or RSA PRIVATE KEY", b.Type)
	}
	if err := checkKeySize(k.Size()); err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	return k, nil
}

// ParsePublicKeyPEM parses an RSA public key in SubjectPublicKeyInfo
// ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") PEM form.
func ParsePublicKeyPEM(s string) (*rsa.PublicKey, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("parse public key: no PEM block")
	}
	var k *rsa.PublicKey
	switch b.Type {
	case "PUBLIC KEY":
		parsed, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		rk, ok := parsed.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("parse public key: %T is not an rsa key", parsed)
		}
		k = rk
	case "RSA PUBLIC KEY":
		rk, err := x509.ParsePKCS1PublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		k = rk
	default:
		return nil, fmt.Errorf("parse public key: PEM block %q is not PUBLIC KEY or RSA PUBLIC KEY", b.Type)
	}
	if err := checkKeySize(k.Size()); err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	return k, nil
}
