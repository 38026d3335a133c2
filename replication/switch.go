package replication

import (
	"context"
	"fmt"
)

// SwitchWAL ends the server's current WAL segment and returns its file
// name: the segment archive_command is handed next. A restore point is
// written first, as pgBackRest's check does, since on an idle server
// pg_switch_wal does nothing. It runs over an ordinary connection to the
// server connString names; both functions need a superuser (or EXECUTE
// granted on them), and a standby refuses them.
func SwitchWAL(ctx context.Context, connString string) (string, error) {
	pg, err := connectSQL(ctx, connString)
	if err != nil {
		return "", err
	}
	defer pg.Close(context.WithoutCancel(ctx))
	if _, err := pg.Exec(ctx, "SELECT pg_create_restore_point('hoard check')").ReadAll(); err != nil {
		return "", fmt.Errorf("switch WAL: %w", err)
	}
	// pg_switch_wal returns the end of the switch record, which lies in
	// the segment it ended.
	results, err := pg.Exec(ctx, "SELECT pg_walfile_name(pg_switch_wal())").ReadAll()
	if err != nil {
		return "", fmt.Errorf("switch WAL: %w", err)
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 1 {
		return "", fmt.Errorf("switch WAL: %w: want one value", ErrProtocol)
	}
	return string(results[0].Rows[0][0]), nil
}
