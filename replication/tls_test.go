package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// tlsCluster is a server speaking TLS with a certificate for localhost
// only, signed by ca; alice authenticates with a client certificate,
// bob with a password over TLS only.
type tlsCluster struct {
	*pgtest.Cluster
	ca *pgtest.CA
}

func startTLS(t *testing.T) *tlsCluster {
	t.Helper()
	// Nothing from the machine's ~/.postgresql or PG* variables.
	t.Setenv("HOME", t.TempDir())
	for _, v := range []string{"PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGPASSWORD", "PGPASSFILE", "PGHOST", "PGUSER"} {
		t.Setenv(v, "")
	}
	ca := pgtest.NewCA(t, "test")
	conf := ca.SSLConf(ca.Server(t, "localhost"))
	conf["password_encryption"] = "scram-sha-256" // 13's default is md5
	// In TLS 1.3 the server checks the client's certificate after the
	// client's handshake ends: its alert races the startup message,
	// whose write may fail first with a reset (as it does for libpq).
	// TLS 1.2 checks it in the handshake, so that the error is always
	// the alert (TestConnect_TLS13ClientCertRefused covers the reset).
	conf["ssl_max_protocol_version"] = "TLSv1.2"
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], Conf: conf, HBA: []string{
		"local all all trust",
		"host all postgres 127.0.0.1/32 trust",
		"hostssl replication alice 127.0.0.1/32 cert",
		"hostssl all alice 127.0.0.1/32 cert",
		"hostssl replication bob 127.0.0.1/32 scram-sha-256",
		"hostssl all bob 127.0.0.1/32 scram-sha-256",
	}})
	c.Exec(t, "create role alice login replication")
	c.Exec(t, "create role bob login replication password 'secret'")
	return &tlsCluster{Cluster: c, ca: ca}
}

// conn returns a connection string for user at host with the extra
// keywords.
func (c *tlsCluster) conn(host, user, extra string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres connect_timeout=10 %s", host, c.Port, user, extra)
}

// TestConnect_TLS: every connection hoard makes (replication, and the
// ordinary ones of QueryServer, QuerySetup and ReadSlot's fallback)
// takes the node's TLS settings: verification refuses a certificate
// for another name or from an unknown CA, client certificates
// authenticate, and require never goes without TLS.
func TestConnect_TLS(t *testing.T) {
	c := startTLS(t)
	alice := c.ca.Client(t, "alice")
	cert := fmt.Sprintf("sslcert=%s sslkey=%s", alice.Cert, alice.Key)
	root := "sslrootcert=" + c.ca.File

	// both opens a replication and an ordinary connection.
	both := func(t *testing.T, connString string) error {
		t.Helper()
		conn, err := Connect(testContext(t), connString)
		if err != nil {
			return fmt.Errorf("replication: %w", err)
		}
		conn.Close(context.Background())
		if _, err := QueryServer(testContext(t), connString); err != nil {
			return fmt.Errorf("sql: %w", err)
		}
		return nil
	}

	t.Run("OK", func(t *testing.T) {
		for _, s := range []string{
			c.conn("localhost", "alice", "sslmode=verify-full "+root+" "+cert),
			c.conn("127.0.0.1", "alice", "sslmode=verify-ca "+root+" "+cert),
			c.conn("127.0.0.1", "alice", "sslmode=require "+cert),
			c.conn("127.0.0.1", "bob", "sslmode=require password=secret"),
			c.conn("127.0.0.1", "bob", "password=secret"), // prefer
		} {
			if err := both(t, s); err != nil {
				t.Errorf("%s: %v", RedactConnString(s), err)
			}
		}
	})
	t.Run("ErrTLS", func(t *testing.T) {
		other := pgtest.NewCA(t, "other")
		expired := c.ca.ExpiredClient(t, "alice")
		for _, s := range []string{
			c.conn("127.0.0.1", "alice", "sslmode=verify-full "+root+" "+cert),                   // certificate for localhost
			c.conn("localhost", "alice", "sslmode=verify-full sslrootcert="+other.File+" "+cert), // unknown CA
			c.conn("localhost", "alice", "sslmode=verify-ca sslrootcert="+other.File+" "+cert),
			c.conn("localhost", "alice", "sslmode=require sslrootcert="+other.File+" "+cert), // require with a CA verifies
			c.conn("localhost", "bob", "sslmode=verify-full password=secret"),                // system roots only
			// A client certificate the server refuses in the handshake.
			c.conn("localhost", "alice", fmt.Sprintf("sslmode=require sslcert=%s sslkey=%s", expired.Cert, expired.Key)),
		} {
			for _, sql := range []bool{false, true} {
				err := tryConnect(t, s, sql)
				if err == nil {
					t.Errorf("%s (sql %v): connected, want a refusal", RedactConnString(s), sql)
					continue
				}
				t.Logf("%s (sql %v): %v", RedactConnString(s), sql, err)
				if !errors.Is(err, ErrTLS) || errors.Is(err, ErrUnreachable) {
					t.Errorf("%s (sql %v): %v, want ErrTLS alone", RedactConnString(s), sql, err)
				}
				if want := "sslrootcert"; !strings.Contains(err.Error(), want) {
					t.Errorf("%s (sql %v): %v, want the hint naming %s", RedactConnString(s), sql, err, want)
				}
			}
		}
	})
	t.Run("ErrClientCert", func(t *testing.T) {
		// No certificate, and one from a CA the server does not list,
		// which Go's client does not send.
		stranger := pgtest.NewCA(t, "stranger").Client(t, "alice")
		for _, s := range []string{
			c.conn("127.0.0.1", "alice", "sslmode=require"),
			c.conn("127.0.0.1", "alice", fmt.Sprintf("sslmode=require sslcert=%s sslkey=%s", stranger.Cert, stranger.Key)),
		} {
			_, err := Connect(testContext(t), s)
			t.Logf("%v", err)
			if !errors.Is(err, ErrNotPermitted) || !strings.Contains(fmt.Sprint(err), "give the node sslcert and sslkey") {
				t.Errorf("%s: %v, want ErrNotPermitted with the hint", RedactConnString(s), err)
			}
		}
	})
	t.Run("WrongPassword", func(t *testing.T) {
		_, err := Connect(testContext(t), c.conn("127.0.0.1", "bob", "sslmode=require password=hunter2wrong"))
		t.Logf("%v", err)
		if !errors.Is(err, ErrAuthentication) || strings.Contains(err.Error(), "hunter2wrong") {
			t.Errorf("%v: want ErrAuthentication without the password", err)
		}
	})
}

// TestConnect_TLSMITM: a man in the middle with a certificate of its own
// sees no startup message (so no user name, no WAL) when the node asks
// for verification, and a server that refuses TLS gets nothing in
// plaintext under require.
func TestConnect_TLSMITM(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	ca := pgtest.NewCA(t, "test")
	evil := pgtest.NewCA(t, "evil")
	evilTLS := evil.Server(t, "localhost").TLSConfig(t)
	for _, tt := range []struct {
		name, mode string
		refuseTLS  bool
	}{
		{"VerifyFull", "sslmode=verify-full sslrootcert=" + ca.File, false},
		{"VerifyCA", "sslmode=verify-ca sslrootcert=" + ca.File, false},
		{"RequireNoTLS", "sslmode=require", true},
		{"VerifyFullNoTLS", "sslmode=verify-full sslrootcert=" + ca.File, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var (
				wg   sync.WaitGroup
				seen []byte
			)
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc, err := l.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				req := make([]byte, 8)
				if _, err := io.ReadFull(nc, req); err != nil {
					return
				}
				var rw io.ReadWriter = nc
				if tt.refuseTLS {
					nc.Write([]byte{'N'})
				} else {
					nc.Write([]byte{'S'})
					tc := tls.Server(nc, evilTLS)
					if tc.Handshake() != nil {
						return
					}
					rw = tc
				}
				seen, _ = io.ReadAll(io.LimitReader(rw, 1024))
			}()
			s := fmt.Sprintf("host=localhost port=%d user=alice password=secret connect_timeout=5 %s", l.Addr().(*net.TCPAddr).Port, tt.mode)
			if conn, err := Connect(testContext(t), s); err == nil {
				conn.Close(context.Background())
				t.Error("connected through the man in the middle")
			} else if t.Logf("%v", err); !errors.Is(err, ErrTLS) {
				t.Errorf("%v, want ErrTLS", err)
			}
			l.Close()
			wg.Wait()
			if len(seen) > 0 {
				t.Errorf("the man in the middle read %q", seen)
			}
		})
	}
}

// tryConnect opens an ordinary connection to s (QueryServer) when sql,
// else a replication connection, closes it, and returns the error.
func tryConnect(t *testing.T, s string, sql bool) error {
	if sql {
		_, err := QueryServer(testContext(t), s)
		return err
	}
	conn, err := Connect(testContext(t), s)
	if err == nil {
		conn.Close(context.Background())
	}
	return err
}
