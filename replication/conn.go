package replication

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// closeTimeout bounds the goodbye when a failed stream closes the
// connection.
const closeTimeout = 5 * time.Second

// Conn is a physical replication connection (replication=true): it accepts
// replication commands only, never SQL. A Conn is not safe for concurrent
// use, except that a BaseBackup's Progress may be read from any goroutine.
type Conn struct {
	pg     *pgconn.PgConn
	config *pgconn.Config // a copy without the replication parameter, for SQL fallbacks
	// framer is the reader under pgx's Frontend (nil if pgx built none
	// through it): a BASE_BACKUP's archive bytes are read through it.
	framer *framer

	// streaming is set between StartReplication and the end of the COPY
	// BOTH mode.
	streaming bool
	// englishRefused is the server's refusal of lc_messages=C, which
	// ConnectEnglish asked for first (nil when not asked or granted).
	englishRefused error
}

// Connect opens a physical replication connection. connString is a libpq
// keyword/value string or URI; libpq's PG* environment variables fill in
// what it leaves out, as pgconn.ParseConfig does. Errors wrap
// ErrAuthentication, ErrNotPermitted or ErrUnreachable when they apply.
func Connect(ctx context.Context, connString string) (*Conn, error) {
	return ConnectAs(ctx, connString, "")
}

// ConnectAs is Connect with application_name set to appName when neither
// connString nor PGAPPNAME sets one: the name a server's
// synchronous_standby_names and pg_stat_replication know the connection
// by. An empty appName sets nothing.
func ConnectAs(ctx context.Context, connString, appName string) (*Conn, error) {
	return connectWith(ctx, connString, appName, false)
}

// ConnectEnglish is Connect asking the server for its messages in English
// (the startup parameter lc_messages=C), so that the warnings of a
// BASE_BACKUP can be read (ChecksumError.Files): a server's lc_messages
// is its locale's language by default (initdb). lc_messages is a
// superuser setting (PGC_SUSET): a role that is no superuser and has not
// been granted SET on it (PostgreSQL 15+) is refused with a FATAL
// (SQLSTATE 42501, process_startup_options in postinit.c, after the role
// is authenticated and allowed a WAL sender); ConnectEnglish then
// connects once more without it, the messages in the server's language,
// and EnglishRefused returns the refusal. That refusal is a FATAL line
// in the server's log: callers ask only for a role that may set the
// parameter (basebackup asks the server first). Nothing is asked when
// connString or PGOPTIONS sets lc_messages.
func ConnectEnglish(ctx context.Context, connString string) (*Conn, error) {
	return connectWith(ctx, connString, "", true)
}

// EnglishRefused returns the server's refusal of the English messages
// ConnectEnglish asked for, or nil: then they were granted, or not
// asked for.
func (c *Conn) EnglishRefused() error { return c.englishRefused }

// connectWith opens the replication connection for Connect, ConnectAs and
// ConnectEnglish (english).
func connectWith(ctx context.Context, connString, appName string, english bool) (*Conn, error) {
	connString, note := SecurePassfile(connString)
	config, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", RedactParseError(err))
	}
	if _, ok := config.RuntimeParams["application_name"]; !ok && appName != "" {
		config.RuntimeParams["application_name"] = appName
	}
	sqlConfig := config.Copy()
	delete(sqlConfig.RuntimeParams, "replication")
	config.RuntimeParams["replication"] = "true"
	if pw := replicationPassword(connString); pw != "" {
		config.Password = pw
	}
	english = english && !setsMessages(config.RuntimeParams)
	if english {
		config.RuntimeParams["lc_messages"] = "C"
	}
	c, err := dial(ctx, config, sqlConfig)
	if english && isCode(err, codeInsufficientPriv) {
		// lc_messages refused; or a role without REPLICATION, which
		// the second attempt is refused too, and that error returned.
		delete(config.RuntimeParams, "lc_messages")
		refused := oneLine(err)
		if c, err = dial(ctx, config, sqlConfig); err == nil {
			c.englishRefused = refused
		}
	}
	if err != nil {
		return nil, PassfileNote(connectError(certReset(err, config), true), note)
	}
	return c, nil
}

// replicationPassword returns the password for a physical replication
// connection to connString's server when a passfile gives one under the
// database "replication", as libpq's replication clients look it up:
// pg_receivewal and pg_basebackup (GetConnection in streamutil.c) and a
// standby's walreceiver (libpqrcv_connect: "specify replication for
// .pgpass lookup") connect with dbname=replication, and PostgreSQL's
// documentation tells a standby's ~/.pgpass to say so. pgconn looked the
// password up under the connection's dbname, which an ordinary
// connection uses (and the replication connection still does when no
// line for "replication" matches). A password the connection string or
// PGPASSWORD gives comes back as it is: the passfile is consulted only
// without one. "" when nothing matches.
func replicationPassword(connString string) string {
	s, ok := withParam(connString, "dbname", "replication")
	if !ok {
		return ""
	}
	c, err := pgconn.ParseConfig(s)
	if err != nil || c.Database != "replication" {
		return ""
	}
	return c.Password
}

// setsMessages reports whether the connection's startup parameters set
// lc_messages themselves, directly or in options (-c lc_messages=...).
func setsMessages(params map[string]string) bool {
	_, ok := params["lc_messages"]
	return ok || strings.Contains(params["options"], "lc_messages")
}

// dial makes one connection attempt with config.
func dial(ctx context.Context, config, sqlConfig *pgconn.Config) (*Conn, error) {
	// Each connection attempt builds a Frontend: remember the framer
	// under each, and keep the one of the connection made.
	type built struct {
		fe *pgproto3.Frontend
		fr *framer
	}
	var frontends []built
	config.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		fr := newFramer(r)
		fe := pgproto3.NewFrontend(fr, w)
		frontends = append(frontends, built{fe, fr})
		return fe
	}
	pg, err := pgconn.ConnectConfig(ctx, config)
	if err != nil {
		return nil, err
	}
	c := &Conn{pg: pg, config: sqlConfig}
	for _, b := range frontends {
		if b.fe == pg.Frontend() {
			c.framer = b.fr
		}
	}
	return c, nil
}

// PgConn returns the underlying pgconn connection, for what this package
// does not cover.
func (c *Conn) PgConn() *pgconn.PgConn { return c.pg }

// Close ends the connection. ctx bounds the polite goodbye; the socket is
// closed regardless.
func (c *Conn) Close(ctx context.Context) error {
	return c.pg.Close(ctx)
}

// ServerVersion returns the server's version as server_version_num does
// (150004 for 15.4), from the server_version the server reported at
// startup. It returns 0 when that cannot be parsed.
func (c *Conn) ServerVersion() int {
	return parseServerVersion(c.pg.ParameterStatus("server_version"))
}

// parseServerVersion turns "15.4", "16beta1" or "13.23 (Debian 13.23-1)"
// into the server_version_num form. Only versions 10 and later are
// understood: two parts, major and minor.
func parseServerVersion(s string) int {
	s, _, _ = strings.Cut(s, " ")
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	major, err := strconv.Atoi(s[:end])
	if err != nil || major < 10 {
		return 0
	}
	minor := 0
	if rest, ok := strings.CutPrefix(s[end:], "."); ok {
		e := 0
		for e < len(rest) && rest[e] >= '0' && rest[e] <= '9' {
			e++
		}
		minor, _ = strconv.Atoi(rest[:e])
	}
	return major*10000 + minor
}

// exec runs one replication command that returns ordinary result sets.
func (c *Conn) exec(ctx context.Context, cmd string) ([]*pgconn.Result, error) {
	results, err := c.pg.Exec(ctx, cmd).ReadAll()
	if err != nil {
		return nil, err
	}
	return results, nil
}

// quoteIdent quotes a name for a replication command, as SQL quotes an
// identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteLiteral quotes a string for a replication command. The replication
// grammar treats backslashes literally, like standard_conforming_strings.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
