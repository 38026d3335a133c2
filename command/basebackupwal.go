package command

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/daemon"
)

// unarchivedWAL returns why nothing may archive the WAL that info, a
// backup of a primary taken here, needs to be consistent, or "" when
// something does. With active_backup_mode archive_command the server's
// archive_command archives it (pg_backup_stop waits for it unless
// --no-wait). Otherwise only a hoard daemon streaming the site's WAL
// stores it: pg_backup_stop switched to a new segment, so the backup's end
// segment is complete in the primary's pg_wal, but with archive_mode off
// PostgreSQL only notes that "you must ensure that all required WAL
// segments are copied through other means" (do_pg_backup_stop in
// xlog.c), and the backup does not restore until the segment is stored.
// When a daemon of this configuration answers on this host's http_port it
// is told of the backup (it streams the WAL); another configuration's
// daemon there refuses the note (421: its site of that name is stored
// elsewhere) and counts as none. When none takes it and the archive does
// not hold the backup's WAL through its end yet, the reason names the
// segment and what to do. Whatever goes wrong while finding out is itself the reason: the
// command never claims the WAL archived without having seen it.
func unarchivedWAL(ctx context.Context, env *siteEnv, info *archive.BackupInfo) string {
	if env.site.ActiveBackupMode == config.ModeArchiveCommand {
		return ""
	}
	err := daemon.NoteBackupStored(ctx, *httpConfig(env.cfg), env.name, siteDestination(env.name, env.site))
	if err == nil {
		return ""
	}
	daemonNote := "no hoard daemon answers on this host's http_port"
	if !errors.Is(err, daemon.ErrNoDaemon) {
		// A refusal, another configuration's daemon (421) among them.
		daemonNote = "the hoard daemon on this host's http_port did not take the backup (" + err.Error() + ")"
	}
	stored, _, err := env.archive.BackupWALStored(ctx, info)
	if err == nil && stored {
		return ""
	}
	listed := ""
	if err != nil {
		listed = " (the archive's WAL could not be listed: " + err.Error() + ")"
	}
	return fmt.Sprintf("its WAL is not archived: the backup restores only once the archive holds its WAL through LSN %s "+
		"(segment %s)%s, and with active_backup_mode %s only a hoard daemon streaming this site's WAL stores it; %s. "+
		"Start the hoard daemon, which streams it (from the site's replication slot, which keeps that WAL on the primary "+
		"once it exists), or run hoard archive-sync on the primary to copy it from its pg_wal, before the primary recycles it",
		info.EndLSN, info.EndWALSegment, listed, env.site.ActiveBackupMode, daemonNote)
}

// printUnarchivedWAL adds unarchivedWAL's reason to a backup's summary.
func printUnarchivedWAL(w io.Writer, reason string) {
	if reason != "" {
		printf(w, "  WARNING   %s\n", reason)
	}
}
