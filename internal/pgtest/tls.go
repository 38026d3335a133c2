package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority made for one test: it signs server and
// client certificates written as PEM files, with no openssl.
type CA struct {
	// File is the CA certificate's PEM file (sslrootcert, ssl_ca_file).
	File string
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// serial numbers the certificates of every CA of a test binary.
var serial atomic.Int64

// NewCA makes a CA whose files are in a directory of the server's user
// (TempDir), so that PostgreSQL can read them.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("pgtest: create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{dir: TempDir(t), cert: cert, key: key}
	ca.File = ca.write(t, name+"-ca.crt", "CERTIFICATE", der)
	return ca
}

// Pair is a certificate and its key, as PEM files.
type Pair struct {
	Cert, Key string
}

// Server signs a server certificate for the names (DNS names or IP
// addresses).
func (ca *CA) Server(t testing.TB, names ...string) Pair {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return ca.sign(t, "server-"+names[0], tmpl)
}

// Client signs a client certificate for the role user (its common name,
// which pg_hba.conf's cert method matches).
func (ca *CA) Client(t testing.TB, user string) Pair {
	t.Helper()
	return ca.sign(t, "client-"+user, &x509.Certificate{
		Subject:     pkix.Name{CommonName: user},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// ExpiredClient is Client with a certificate that expired an hour ago:
// the server refuses it in the handshake, with a TLS alert.
func (ca *CA) ExpiredClient(t testing.TB, user string) Pair {
	t.Helper()
	return ca.sign(t, "expired-"+user, &x509.Certificate{
		Subject:     pkix.Name{CommonName: user},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotAfter:    time.Now().Add(-time.Hour),
	})
}

// TLSConfig returns a server's tls.Config presenting p, for a test's own
// listener (a man in the middle).
func (p Pair) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}}
}

// SSLConf returns the postgresql.conf settings that make a server speak
// TLS with the certificate p and accept client certificates signed by ca.
func (ca *CA) SSLConf(p Pair) map[string]string {
	return map[string]string{"ssl": "on", "ssl_cert_file": p.Cert, "ssl_key_file": p.Key, "ssl_ca_file": ca.File}
}

func (ca *CA) sign(t testing.TB, name string, tmpl *x509.Certificate) Pair {
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore = time.Now().Add(-2 * time.Hour)
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("pgtest: sign %s: %v", name, err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{
		Cert: ca.write(t, name+".crt", "CERTIFICATE", der),
		Key:  ca.write(t, name+".key", "PRIVATE KEY", kb),
	}
}

// write writes a PEM file of mode 0600 (PostgreSQL and libpq refuse a key
// others can read) owned by the server's user.
func (ca *CA) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	Chown(t, p)
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
