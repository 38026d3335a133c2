package replication

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Server is what an ordinary connection learns of a server: its full
// version, its cluster's system identifier and timeline.
type Server struct {
	Version  int    // server_version_num, e.g. 150018 for 15.18
	SystemID uint64 // the system identifier in pg_control
	// Timeline is the timeline of the latest checkpoint in pg_control (a
	// standby's latest restartpoint). Right after a promotion it may
	// still be the previous one, until the checkpoint PostgreSQL then
	// requests.
	Timeline uint32
	// InRecovery is pg_is_in_recovery(): the server is a standby.
	InRecovery bool
	// Flushed is how far the server's WAL is durable on its disk: a
	// primary's pg_current_wal_flush_lsn(), a standby's greater of
	// pg_last_wal_receive_lsn() (streamed and fsynced) and
	// pg_last_wal_replay_lsn() (replayed, so read from a file in pg_wal,
	// streamed and fsynced or restored from the archive), as PostgreSQL's
	// own GetStandbyFlushRecPtr counts it for a cascading standby. 0 when
	// a standby has neither.
	Flushed pglogrepl.LSN
}

// QueryServer connects to the server connString names with an ordinary
// (not a replication) connection, so that it takes no WAL sender, and asks
// for server_version_num, the system identifier, the timeline, whether
// it is a standby and how far its WAL is flushed. pg_control_system(),
// pg_control_checkpoint() and the WAL position functions are executable
// by any role.
func QueryServer(ctx context.Context, connString string) (Server, error) {
	pg, err := connectSQL(ctx, connString)
	if err != nil {
		return Server{}, err
	}
	defer pg.Close(context.WithoutCancel(ctx))
	// CASE evaluates only the branch it takes: pg_current_wal_flush_lsn()
	// fails on a standby ("recovery is in progress").
	results, err := pg.Exec(ctx, "SELECT current_setting('server_version_num'), s.system_identifier::text, c.timeline_id::text, "+
		"pg_is_in_recovery()::text, coalesce(CASE WHEN pg_is_in_recovery() "+
		"THEN greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) ELSE pg_current_wal_flush_lsn() END, '0/0')::text "+
		"FROM pg_control_system() s, pg_control_checkpoint() c").ReadAll()
	if err != nil {
		return Server{}, fmt.Errorf("query server version: %w", err)
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 5 {
		return Server{}, fmt.Errorf("query server version: %w: want one row of five columns", ErrProtocol)
	}
	row := results[0].Rows[0]
	var s Server
	if s.Version, err = strconv.Atoi(string(row[0])); err != nil {
		return Server{}, fmt.Errorf("query server version: server_version_num %q: %w", row[0], err)
	}
	if s.SystemID, err = strconv.ParseUint(string(row[1]), 10, 64); err != nil {
		return Server{}, fmt.Errorf("query server version: system_identifier %q: %w", row[1], err)
	}
	tli, err := strconv.ParseUint(string(row[2]), 10, 32)
	if err != nil {
		return Server{}, fmt.Errorf("query server version: timeline_id %q: %w", row[2], err)
	}
	s.Timeline = uint32(tli)
	if s.InRecovery, err = strconv.ParseBool(string(row[3])); err != nil {
		return Server{}, fmt.Errorf("query server version: pg_is_in_recovery %q: %w", row[3], err)
	}
	if s.Flushed, err = pglogrepl.ParseLSN(string(row[4])); err != nil {
		return Server{}, fmt.Errorf("query server version: flush position %q: %w", row[4], err)
	}
	return s, nil
}

// connectSQL opens an ordinary (not a replication) connection to the
// server connString names, whatever replication parameter it holds.
// Errors are Connect's, with the same hints.
func connectSQL(ctx context.Context, connString string) (*pgconn.PgConn, error) {
	connString, note := SecurePassfile(connString)
	config, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", RedactParseError(err))
	}
	delete(config.RuntimeParams, "replication")
	pg, err := pgconn.ConnectConfig(ctx, config)
	if err != nil {
		return nil, PassfileNote(connectError(certReset(err, config), false), note)
	}
	return pg, nil
}
