package replication

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Connection errors. Connect wraps one of them around the driver's error,
// so callers can tell a wrong password from a closed port with errors.Is.
var (
	// ErrAuthentication means the server rejected the credentials
	// (SQLSTATE 28P01).
	ErrAuthentication = errors.New("authentication failed")
	// ErrNotPermitted means the server refused the connection for this
	// user or host: no pg_hba.conf entry (for "replication", or for the
	// dbname of an ordinary connection), a failed peer or certificate
	// authentication, or a role without the REPLICATION attribute
	// (SQLSTATE 28000, 42501). Its text names no kind of connection:
	// ConnError wraps it for ordinary ones too.
	ErrNotPermitted = errors.New("connection not permitted")
	// ErrUnreachable means no server answered: connection refused, timed
	// out, unknown host.
	ErrUnreachable = errors.New("server unreachable")
	// ErrNoWALSender means the server had no WAL sender left for a
	// replication connection: as many as max_wal_senders are in use
	// (SQLSTATE 53300, InitWalSenderSlot in walsender.c).
	ErrNoWALSender = errors.New("no WAL sender free")
	// ErrTooManyConnections means the server had no connection slot
	// left for this connection (SQLSTATE 53300): as many sessions as
	// max_connections are open ("sorry, too many clients already"), or
	// only the slots superuser_reserved_connections or (from
	// PostgreSQL 16) reserved_connections keep for other roles are left
	// ("remaining connection slots are reserved ..."). It lasts until a
	// session ends or the setting changes.
	ErrTooManyConnections = errors.New("too many connections")
	// ErrTLS means the TLS connection the node's sslmode asks for was
	// not made: the server's certificate did not verify against
	// sslrootcert (verify-ca, verify-full, or require with an
	// sslrootcert, which libpq verifies too), did not name the host
	// (verify-full), the server refused TLS (any sslmode but disable,
	// allow and prefer), or it refused the client certificate (with
	// TLS 1.3 that refusal may arrive as a reset just after the
	// handshake, which is read as one when a client certificate was
	// offered: certReset). Someone
	// in the middle looks the same. A certificate that fails
	// verification ends the connection before hoard sends anything.
	ErrTLS = errors.New("TLS connection refused")
)

// Slot errors.
var (
	// ErrSlotExists is returned by CreatePhysicalSlot when a slot of that
	// name already exists (SQLSTATE 42710).
	ErrSlotExists = errors.New("replication slot already exists")
	// ErrSlotNotFound is returned by DropSlot and ReadSlot when no slot of
	// that name exists (SQLSTATE 42704).
	ErrSlotNotFound = errors.New("replication slot does not exist")
	// ErrSlotInUse is returned by StartReplication when another
	// process streams from the slot (SQLSTATE 55006, "replication slot
	// ... is active for PID N", ReplicationSlotAcquire in
	// src/backend/replication/slot.c). It lasts until that process lets
	// the slot go.
	ErrSlotInUse = errors.New("replication slot in use")
)

// ErrProtocol is wrapped around every error caused by a message the
// protocol does not allow at that point: a server bug, a proxy in the way,
// or a PostgreSQL version this package does not understand.
var ErrProtocol = errors.New("replication protocol violation")

// ErrStreamEnded is returned by ReceiveMessage when the server ended
// streaming without switching timeline (it is shutting down).
var ErrStreamEnded = errors.New("server ended replication stream")

// ChecksumError is a BASE_BACKUP that the server failed because data page
// checksums did not verify (SQLSTATE XX001, data_corrupted). The server
// verifies each page it sends, reports each failure in a WARNING (at most
// five a file, then one line with the file's total) and, only after it has
// sent every file and the end position, ends the command with an ERROR
// (perform_base_backup, src/backend/backup/basebackup.c). The warnings,
// not the error, name the files and blocks, so Error includes them.
type ChecksumError struct {
	// Warnings are the server's WARNING messages during the backup, in
	// order, up to maxWarnings; Omitted counts those left out.
	Warnings []string
	Omitted  int
	// Files are the files whose pages failed, as the warnings name them
	// (basebackup.c's English messages), in order, up to
	// maxFailedFiles. Blocks is the number of failing blocks: the
	// server's total, else the files' counts, at least 1; when Ended,
	// the server's count in any language (pageFailures.end).
	Files  []PageFailures
	Blocks int64
	// FilesUnknown is set when the warnings named no file: the server
	// sent them in another language than English (see
	// ConnectEnglish), and its log names the files.
	FilesUnknown bool
	// Ended is set when the error came after the end position: the
	// caller had read every archive (NextArchive returned io.EOF before
	// Finish), the server had sent one for each tablespace of its list
	// and the manifest when asked for, then the end position, End on Timeline,
	// and failed the command only after it, as perform_base_backup does
	// for damaged pages. Such a backup is complete, restorable with the
	// WAL up to End; pg_basebackup keeps it too.
	Ended    bool
	End      pglogrepl.LSN
	Timeline int32
	Err      *pgconn.PgError
}

// maxWarnings caps ChecksumError.Warnings: a cluster with many damaged
// files would otherwise fill the error (and each log line of a retrying
// daemon) with thousands of lines; the server's log has them all.
const maxWarnings = 10

// Error returns the server's error and its warnings, on one line.
func (e *ChecksumError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if len(e.Warnings) > 0 {
		b.WriteString("; the server's warnings: ")
		b.WriteString(strings.Join(e.Warnings, "; "))
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "; and %d more warnings", e.Omitted)
	}
	return b.String()
}

// Unwrap returns the server's error.
func (e *ChecksumError) Unwrap() error { return e.Err }

// SQLSTATE codes this package looks for.
const (
	codeDataCorrupted        = "XX001"
	codeInvalidPassword      = "28P01"
	codeInvalidAuthorization = "28000"
	codeInsufficientPriv     = "42501"
	codeTooManyConnections   = "53300"
	codeDuplicateObject      = "42710"
	codeUndefinedObject      = "42704"
	codeInvalidCatalogName   = "3D000"
	codeObjectInUse          = "55006"
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
		case codeTooManyConnections:
			if strings.Contains(pgErr.Message, "max_wal_senders") {
				return ErrNoWALSender
			}
			return ErrTooManyConnections
		}
		return nil
	}
	var reset *certResetError
	if isTLSError(err) || errors.As(err, &reset) {
		return ErrTLS
	}
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &netErr) {
		return ErrUnreachable
	}
	return nil
}

// isTLSError reports whether err is a failure of the TLS connection the
// sslmode asked for: a server certificate that failed verification
// (crypto/x509's errors: pgconn's verify-ca check returns them bare,
// crypto/tls wraps them for verify-full), an alert the server sent
// (crypto/tls reports it as a *net.OpError "remote error", which would
// otherwise read as an unreachable server), or a server that answered
// the SSLRequest with N (pgconn's text, it has no sentinel for it).
func isTLSError(err error) bool {
	var (
		verifyErr   *tls.CertificateVerificationError
		authErr     x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidErr  x509.CertificateInvalidError
		opErr       *net.OpError
		alertErr    tls.AlertError
		recordError tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &verifyErr), errors.As(err, &authErr), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &alertErr), errors.As(err, &recordError):
		return true
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		return true
	}
	return strings.Contains(err.Error(), "server refused TLS connection")
}

// connectError wraps the error of a failed connection attempt: with the
// sentinel classifyConnectError picks, and with what to change when the
// cause is a setting a first configuration often gets wrong. replication
// says whether it was a replication connection, which pg_hba.conf matches
// only by a "replication" line and which takes a WAL sender.
func connectError(err error, replication bool) error {
	kind := classifyConnectError(err)
	hint := connectHint(err, kind, replication)
	if hint != "" {
		hint = "; " + hint
	}
	err = oneLine(err)
	if kind != nil {
		return fmt.Errorf("connect: %w: %w%s", kind, err, hint)
	}
	return fmt.Errorf("connect: %w%s", err, hint)
}

// ConnError wraps the error of a failed ordinary (not replication)
// connection to a node, opened with pgx or pgconn outside this package,
// as Connect wraps its own: on one line, with ErrAuthentication,
// ErrNotPermitted, ErrTooManyConnections, ErrTLS or ErrUnreachable when
// they apply, and what to change.
func ConnError(err error) error { return connectError(err, false) }

// ConnErrorFor is ConnError for a connection made with cfg, which tells
// a reset that may be a refused client certificate (certReset).
func ConnErrorFor(err error, cfg *pgconn.Config) error {
	return connectError(certReset(err, cfg), false)
}

// certResetError is a connection reset by the server just after a TLS
// handshake in which the client offered a certificate: in TLS 1.3 the
// server checks the certificate after the client's side of the
// handshake has ended, and its refusal (an alert, then a close) can
// reach the client as a reset of the startup message it writes or of
// the reply it reads, where TLS 1.2 fails the handshake itself. It
// wraps the error, so errors.Is still sees ECONNRESET.
type certResetError struct{ err error }

func (e *certResetError) Error() string { return e.err.Error() }

func (e *certResetError) Unwrap() error { return e.err }

// certReset returns err as a *certResetError when it is a reset of the
// startup message or of its reply and cfg (or a fallback of it, as
// sslmode=prefer adds) offers a client certificate over TLS; err as it
// is otherwise. A reset before TLS, or without a certificate, stays an
// unreachable server.
func certReset(err error, cfg *pgconn.Config) error {
	if err == nil || cfg == nil || !errors.Is(err, syscall.ECONNRESET) {
		return err
	}
	msg := err.Error()
	if !strings.Contains(msg, "failed to write startup message") && !strings.Contains(msg, "failed to receive message") {
		return err
	}
	offers := func(t *tls.Config) bool {
		return t != nil && (len(t.Certificates) > 0 || t.GetClientCertificate != nil)
	}
	cert := offers(cfg.TLSConfig)
	for _, f := range cfg.Fallbacks {
		cert = cert || offers(f.TLSConfig)
	}
	if !cert {
		return err
	}
	return &certResetError{err: err}
}

// lineError is an error whose text is put on one line; it wraps the
// original, so errors.Is and errors.As see through it.
type lineError struct {
	err error
	msg string
}

func (e *lineError) Error() string { return e.msg }

func (e *lineError) Unwrap() error { return e.err }

// oneLine returns err with its text on one line. pgconn's ConnectError
// puts each attempt on a line of its own after "\n\t" (one per address
// of the host, and a second attempt without TLS under sslmode=prefer,
// the default), which hoard's output escapes into a literal `\n\t`
// (command/printable.go); and a refused port refuses both of prefer's
// attempts alike, so the same line came twice. The attempts are joined
// with " | ", each distinct one once.
func oneLine(err error) error {
	head, rest, ok := strings.Cut(err.Error(), "\n")
	if !ok {
		return err
	}
	var attempts []string
	for _, l := range strings.Split(rest, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !slices.Contains(attempts, l) {
			attempts = append(attempts, l)
		}
	}
	return &lineError{err: err, msg: head + " " + strings.Join(attempts, " | ")}
}

// connectHint says what to change for a connection error, or "". The
// server's own message names the setting (max_wal_senders, pg_hba.conf)
// but not the remedy, and a newcomer meets these before anything else.
func connectHint(err, kind error, replication bool) string {
	var pgErr *pgconn.PgError
	isPg := errors.As(err, &pgErr)
	switch {
	case kind == ErrUnreachable:
		return "check the node's host and port (nodes in the configuration, or PGHOST and PGPORT) and that PostgreSQL is running"
	case kind == ErrTooManyConnections:
		return tooManyHint(pgErr.Message, replication)
	case kind == ErrTLS && errors.As(err, new(*certResetError)):
		return "the server reset the connection just after the TLS handshake, with a client certificate configured: " +
			"with TLS 1.3 that is how a server's refusal of the certificate can arrive (expired, not signed by a CA in its ssl_ca_file, " +
			"or a common name that is not the node's user): check sslcert and sslkey and the server's log; a server restarting at that moment looks the same"
	case kind == ErrTLS:
		return "the TLS connection the node's sslmode asks for failed: check sslrootcert (the CA that signed the server's certificate), " +
			"that the node's host is a name in that certificate (sslmode=verify-full), sslcert and sslkey (a client certificate the server's ssl_ca_file trusts), " +
			"and that the server has ssl = on; if all are right, something between hoard and the server presents another certificate"
	case isPg && pgErr.Code == codeInvalidAuthorization && strings.Contains(pgErr.Message, "certificate"):
		return "give the node sslcert and sslkey: a client certificate signed by a CA in the server's ssl_ca_file, whose common name is the node's user (or maps to it in pg_ident.conf)"
	case kind == ErrAuthentication && replication:
		return "check the node's password (nodes in the configuration, PGPASSWORD, or a ~/.pgpass line for database replication or *)"
	case kind == ErrAuthentication:
		return "check the node's password (nodes in the configuration, PGPASSWORD, or a ~/.pgpass line for the node's dbname or *)"
	case !replication && isPg && pgErr.Code == codeInvalidCatalogName:
		// Only an ordinary connection opens a database; libpq's default
		// dbname is the user's name, which a replication role seldom has.
		return "hoard also opens an ordinary connection: set dbname in the node's connection string (or PGDATABASE) to a database that exists, such as postgres"
	case isPg && pgErr.Code == codeInvalidAuthorization && strings.Contains(pgErr.Message, "Peer authentication failed"):
		// A Unix-socket host meets pg_hba.conf's "local ... peer" lines.
		return "pg_hba.conf's line for this Unix socket connection uses peer: run hoard as the operating-system user of the node's user, " +
			"map it in pg_ident.conf, or connect over TCP (host=127.0.0.1) to a line with scram-sha-256 or cert"
	case !replication && isPg && pgErr.Code == codeInvalidAuthorization && strings.Contains(pgErr.Message, "pg_hba.conf"):
		return `hoard also opens an ordinary connection: add a line for the node's dbname (which a "replication" line does not cover) for this user and host to pg_hba.conf, then reload PostgreSQL`
	case !replication || !isPg:
		return ""
	case pgErr.Code == codeInvalidAuthorization && strings.Contains(pgErr.Message, "pg_hba.conf"):
		return `add a line for database "replication" (which "all" does not match) for this user and host to pg_hba.conf, then reload PostgreSQL`
	case pgErr.Code == codeInsufficientPriv:
		return "give the node's user the REPLICATION attribute (ALTER ROLE name REPLICATION) or connect as a superuser"
	case kind == ErrNoWALSender:
		return "raise max_wal_senders in postgresql.conf (above 0, which needs wal_level = replica or logical; hoard's WAL stream and each running basebackup take one) and restart PostgreSQL, " +
			"or end a replication connection that holds one (pg_stat_replication lists them)"
	}
	return ""
}

// tooManyHint says what to change for a connection refused for want of
// a slot (SQLSTATE 53300), by the server's message (InitProcess and
// InitPostgres in PostgreSQL's postinit.c and proc.c): every slot taken,
// or only slots reserved for other roles left. A message in another
// language than English names none of them: the hint lists all three,
// and for a replication connection max_wal_senders too.
func tooManyHint(msg string, replication bool) string {
	const end = "end idle sessions (pg_stat_activity lists them) or raise max_connections in postgresql.conf and restart PostgreSQL"
	switch {
	case strings.Contains(msg, "too many clients"):
		return "every connection slot is taken (max_connections): " + end
	case strings.Contains(msg, "pg_use_reserved_connections"):
		return "only the slots reserved_connections keeps for roles with pg_use_reserved_connections are left: " +
			"GRANT pg_use_reserved_connections to the node's user, lower reserved_connections, or " + end
	case strings.Contains(msg, "SUPERUSER"), strings.Contains(msg, "superuser"):
		return "only the slots superuser_reserved_connections keeps for superusers are left: " +
			"lower superuser_reserved_connections, or " + end
	}
	hint := "no connection slot is left for the node's user (max_connections, less superuser_reserved_connections and reserved_connections for roles without them): " + end
	if replication {
		hint += "; for a replication connection, max_wal_senders may be the limit"
	}
	return hint
}

// isCode reports whether err is a server error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
