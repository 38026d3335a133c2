package replication

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestConnect_TLS13ClientCertRefused: with TLS 1.3 the server checks the
// client's certificate after the client's side of the handshake, so its
// refusal of an expired certificate reaches the client either as its
// alert or, in a few attempts of a hundred here, as a reset of the
// startup message ("failed to write startup message: ... connection
// reset by peer"). Both are ErrTLS, never ErrUnreachable, and say to
// check sslcert and sslkey.
func TestConnect_TLS13ClientCertRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Setenv("HOME", t.TempDir())
	ca := pgtest.NewCA(t, "test")
	conf := ca.SSLConf(ca.Server(t, "localhost"))
	conf["ssl_min_protocol_version"] = "TLSv1.3"
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], Conf: conf, HBA: []string{
		"local all all trust",
		"host all postgres 127.0.0.1/32 trust",
		"hostssl replication alice 127.0.0.1/32 cert",
		"hostssl all alice 127.0.0.1/32 cert",
	}})
	c.Exec(t, "create role alice login replication")
	expired := ca.ExpiredClient(t, "alice")
	s := fmt.Sprintf("host=localhost port=%d user=alice dbname=postgres connect_timeout=10 sslmode=require sslcert=%s sslkey=%s",
		c.Port, expired.Cert, expired.Key)
	resets := 0
	for range 100 {
		for _, sql := range []bool{false, true} {
			err := tryConnect(t, s, sql)
			if errors.Is(err, syscall.ECONNRESET) {
				if resets++; resets == 1 {
					t.Logf("a reset: %v", err)
				}
			}
			if !errors.Is(err, ErrTLS) || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "sslcert") {
				t.Fatalf("sql %v: %v: want ErrTLS alone, saying to check sslcert", sql, err)
			}
		}
	}
	t.Logf("%d of 200 attempts refused by a reset", resets)
}

// TestCertReset: a reset is read as a refused certificate only after a
// TLS handshake in which hoard offered one.
func TestCertReset(t *testing.T) {
	reset := fmt.Errorf("failed to write startup message: %w", &net.OpError{Op: "write", Net: "tcp",
		Err: &os.SyscallError{Syscall: "write", Err: syscall.ECONNRESET}})
	withCert := &pgconn.Config{TLSConfig: &tls.Config{Certificates: []tls.Certificate{{}}}}
	for _, tt := range []struct {
		name string
		err  error
		cfg  *pgconn.Config
		want error
	}{
		{"cert", reset, withCert, ErrTLS},
		{"prefer", reset, &pgconn.Config{Fallbacks: []*pgconn.FallbackConfig{{TLSConfig: withCert.TLSConfig}}}, ErrTLS},
		{"TLSNoCert", reset, &pgconn.Config{TLSConfig: &tls.Config{}}, ErrUnreachable},
		{"NoTLS", reset, &pgconn.Config{}, ErrUnreachable},
		{"Refused", fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}), withCert, ErrUnreachable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := connectError(certReset(tt.err, tt.cfg), true)
			if !errors.Is(err, tt.want) || !errors.Is(err, tt.err) {
				t.Errorf("%v: want %v, wrapping the original", err, tt.want)
			}
		})
	}
}
