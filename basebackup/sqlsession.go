package basebackup

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// sqlServer is who the server of a SQL session is: enough to tell the
// server a BASE_BACKUP streams from apart from another cluster (the
// system identifier) and from its own standbys, a promoted one included,
// which share its system identifier but not its postmaster.
type sqlServer struct {
	systemID   string    // pg_control's system identifier, decimal
	started    time.Time // pg_postmaster_start_time()
	inRecovery bool
}

// querySQLServer asks the server of sql who it is. pg_control_system()
// and pg_postmaster_start_time() need no privilege.
func querySQLServer(ctx context.Context, sql *pgx.Conn) (sqlServer, error) {
	var s sqlServer
	err := sql.QueryRow(ctx, "SELECT system_identifier::text, pg_postmaster_start_time(), pg_is_in_recovery() FROM pg_control_system()").
		Scan(&s.systemID, &s.started, &s.inRecovery)
	return s, err
}

// same reports whether s and o are one running server.
func (s sqlServer) same(o sqlServer) bool {
	return s.systemID == o.systemID && s.started.Equal(o.started) && s.inRecovery == o.inRecovery
}

func (s sqlServer) String() string {
	role := "a primary"
	if s.inRecovery {
		role = "a standby"
	}
	return fmt.Sprintf("system identifier %s, %s started %s", s.systemID, role, s.started.UTC().Format(time.RFC3339Nano))
}

// checkNewSession checks that sql, a session onSQL opened in place of the
// one the server ended, reached the server the backup streams from. The
// connection string may name several hosts (libpq's host=a,b with
// target_session_attrs) or a name that a failover moved to another
// server: the backup would record that server's end snapshot and clock
// as its own, and a --target-xid would be judged against another
// server's transactions. The replication connection is still open, so
// the backup's server has not restarted: a postmaster started at another
// time is another server. A timeline is not compared: the same
// postmaster changes timeline only when it is promoted, which its
// recovery state tells, or as a standby that follows its primary's,
// which is still the backup's server.
func (r *run) checkNewSession(ctx context.Context, sql *pgx.Conn) error {
	got, err := querySQLServer(ctx, sql)
	if err != nil {
		return fmt.Errorf("basebackup: query the server of the new SQL session: %w", err)
	}
	if !got.same(r.srv.sql) {
		return fmt.Errorf("basebackup: the new SQL session reached another server (%s) than the one the backup streams from (%s): "+
			"the connection string names several hosts or a name that moved to another server; "+
			"the backup is not stored with that server's snapshot and clock", got, r.srv.sql)
	}
	return nil
}
