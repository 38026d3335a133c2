package replication

import (
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// Connection errors. Connect wraps one of them around the driver's error,
// so callers can tell a wrong password from a closed port with errors.Is.
var (
	// ErrAuthentication means the server rejected the credentials
	// (SQLSTATE 28P01).
	ErrAuthentication = errors.New("authentication failed")
	// ErrNotPermitted means the server refused a replication connection
	// for this user or host: no pg_hba.conf entry for "replication", or a
	// role without the REPLICATION attribute (SQLSTATE 28000, 42501).
	ErrNotPermitted = errors.New("replication connection not permitted")
	// ErrUnreachable means no server answered: connection refused, timed
	// out, unknown host.
	ErrUnreachable = errors.New("server unreachable")
)

// Slot errors.
var (
	// ErrSlotExists is returned by CreatePhysicalSlot when a slot of that
	// name already exists (SQLSTATE 42710).
	ErrSlotExists = errors.New("replication slot already exists")
	// ErrSlotNotFound is returned by DropSlot and ReadSlot when no slot of
	// that name exists (SQLSTATE 42704).
	ErrSlotNotFound = errors.New("replication slot does not exist")
)

// ErrProtocol is wrapped around every error caused by a message the
// protocol does not allow at that point: a server bug, a proxy in the way,
// or a PostgreSQL version this package does not understand.
var ErrProtocol = errors.New("replication protocol violation")

// ErrStreamEnded is returned by ReceiveMessage when the server ended
// streaming without switching timeline (it is shutting down).
var ErrStreamEnded = errors.New("server ended replication stream")

// SQLSTATE codes this package looks for.
const (
	codeInvalidPassword      = "28P01"
	codeInvalidAuthorization = "28000"
	codeInsufficientPriv     = "42501"
	codeDuplicateObject      = "42710"
	codeUndefinedObject      = "42704"
)

// classifyConnectError picks the sentinel for a connection error, or nil.
func classifyConnectError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeInvalidPassword:
			return ErrAuthentication
		case codeInvalidAuthorization, codeInsufficientPriv:
			return ErrNotPermitted
		}
		return nil
	}
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &netErr) {
		return ErrUnreachable
	}
	return nil
}

// isCode reports whether err is a server error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
