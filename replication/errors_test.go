package replication

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestConnectError checks that the server refusals a first setup meets
// keep their sentinel and the server's words and gain what to change.
func TestConnectError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	tests := []struct {
		name        string
		err         error
		replication bool
		kind        error
		hint        string // "" = no hint
	}{
		{"NoSenders", &pgconn.PgError{Severity: "FATAL", Code: "53300",
			Message: "number of requested standby connections exceeds max_wal_senders (currently 0)"},
			true, ErrNoWALSender, "raise max_wal_senders in postgresql.conf"},
		{"TooManyClients", &pgconn.PgError{Severity: "FATAL", Code: "53300",
			Message: "sorry, too many clients already"}, false, ErrTooManyConnections, "raise max_connections"},
		// PostgreSQL 13 to 15.
		{"SuperuserReserved15", &pgconn.PgError{Severity: "FATAL", Code: "53300",
			Message: "remaining connection slots are reserved for non-replication superuser connections"},
			false, ErrTooManyConnections, "lower superuser_reserved_connections"},
		{"TooManyLocalized", &pgconn.PgError{Severity: "FATAL", Code: "53300",
			Message: "désolé, trop de clients sont déjà connectés"}, true, ErrTooManyConnections, "max_wal_senders may be the limit"},
		{"NoHBALine", &pgconn.PgError{Severity: "FATAL", Code: "28000",
			Message: `no pg_hba.conf entry for replication connection from host "[local]", user "postgres", no encryption`},
			true, ErrNotPermitted, `add a line for database "replication"`},
		{"NoHBALineSQL", &pgconn.PgError{Severity: "FATAL", Code: "28000",
			Message: `no pg_hba.conf entry for host "[local]", user "postgres", database "postgres", no encryption`},
			false, ErrNotPermitted, "hoard also opens an ordinary connection: add a line for the node's dbname"},
		{"Peer", &pgconn.PgError{Severity: "FATAL", Code: "28000",
			Message: `Peer authentication failed for user "postgres"`},
			true, ErrNotPermitted, "run hoard as the operating-system user"},
		{"NoReplicationRole", &pgconn.PgError{Severity: "FATAL", Code: "42501",
			Message: "must be superuser or replication role to start walsender"},
			true, ErrNotPermitted, "ALTER ROLE name REPLICATION"},
		{"WrongPassword", &pgconn.PgError{Severity: "FATAL", Code: "28P01",
			Message: `password authentication failed for user "alice"`},
			true, ErrAuthentication, "check the node's password"},
		{"Unreachable", refused, false, ErrUnreachable, "check the node's host and port"},
		// crypto/tls reports the server's alert as a *net.OpError.
		{"ClientCertRefused", &net.OpError{Op: "remote error", Err: errors.New("tls: expired certificate")},
			true, ErrTLS, "check sslrootcert"},
		{"ServerCertUnknown", fmt.Errorf("write failed: %w", x509.UnknownAuthorityError{}), false, ErrTLS, "check sslrootcert"},
		// A replication role with no database of its name: the ordinary
		// connection hoard also makes fails where libpq's default dbname
		// (the user's name) is not a database.
		{"NoDatabase", &pgconn.PgError{Severity: "FATAL", Code: "3D000",
			Message: `database "replicator" does not exist`},
			false, nil, "set dbname in the node's connection string (or PGDATABASE) to a database that exists, such as postgres"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := connectError(tt.err, tt.replication)
			msg := err.Error()
			if !errors.Is(err, tt.err) {
				t.Errorf("%q does not wrap the driver's error", msg)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("%q does not wrap %v", msg, tt.kind)
			}
			if !strings.HasPrefix(msg, "connect: ") || !strings.Contains(msg, tt.err.Error()) {
				t.Errorf("%q lacks the driver's message %q", msg, tt.err.Error())
			}
			_, hint, hinted := strings.Cut(msg, "; ")
			switch {
			case tt.hint == "" && hinted:
				t.Errorf("%q has a hint, want none", msg)
			case tt.hint != "" && !strings.Contains(hint, tt.hint):
				t.Errorf("%q: hint %q, want it to say %q", msg, hint, tt.hint)
			}
		})
	}
}
