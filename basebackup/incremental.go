package basebackup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
)

// ErrIncrementalUnavailable is returned (wrapped) when an incremental
// backup cannot be taken: the server is older than PostgreSQL 17, does
// not summarize WAL (summarize_wal off), or is a standby that has
// replayed no checkpoint of its primary since the parent backup
// (incrementalStartError). A full backup still can.
var ErrIncrementalUnavailable = errors.New("incremental backup not possible")

// ErrNoParent is returned (wrapped) when an incremental backup has no
// parent: no stored backup of the same system and timeline with
// PostgreSQL's backup_manifest. A full backup is needed first.
var ErrNoParent = archive.ErrNoParent

// parentBackup is the backup an incremental one is taken against.
type parentBackup struct {
	info     *archive.BackupInfo
	manifest []byte // its PostgreSQL backup_manifest
	start    string // its start LSN, as its control manifest records it
	timeline uint32
}

// checkIncremental checks that the server can take an incremental backup.
func (r *run) checkIncremental(ctx context.Context) error {
	if r.srv.version < replication.MinIncrementalVersion {
		return fmt.Errorf("basebackup: server version %d: incremental backups need PostgreSQL 17 or later: %w", r.srv.version, ErrIncrementalUnavailable)
	}
	var summarize string
	if err := r.sql.QueryRow(ctx, "SELECT current_setting('summarize_wal')").Scan(&summarize); err != nil {
		return fmt.Errorf("basebackup: query summarize_wal: %w", err)
	}
	if summarize != "on" {
		return fmt.Errorf("basebackup: summarize_wal is %s: incremental backups need summarize_wal = on (ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf()), "+
			"and a full backup taken after it was turned on: %w", summarize, ErrIncrementalUnavailable)
	}
	return nil
}

// findParent chooses the parent of an incremental backup: the newest
// stored backup of the server's system identifier and current timeline
// that holds PostgreSQL's backup_manifest, of the same major version.
// Its backup_manifest is read from its control object.
func (r *run) findParent(ctx context.Context) (*parentBackup, error) {
	a := r.o.Archive
	backups, err := a.ScanBackups(ctx)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	tli := uint32(r.srv.system.Timeline)
	for i := len(backups.Sound) - 1; i >= 0; i-- {
		b := backups.Sound[i]
		if b.SystemID != r.srv.system.SystemID || b.EndTimeline != tli || b.StartTimeline != tli ||
			!b.PGManifest || b.PGVersion/10000 != r.srv.version/10000 || b.Format != archive.FormatBBv2 {
			continue
		}
		m, data, err := a.ReadControlMember(ctx, b.Key, archive.ControlPGManifest)
		if err != nil {
			return nil, fmt.Errorf("basebackup: parent backup %s: %w", b.Name, err)
		}
		p := &parentBackup{info: b, manifest: data, timeline: b.StartTimeline, start: b.StartLSN.String()}
		if m.Hoard != nil && m.Hoard.StartLSN != "" {
			p.start = m.Hoard.StartLSN
		}
		return p, nil
	}
	return nil, fmt.Errorf("basebackup: no stored backup of system %s on timeline %d (PostgreSQL %d, with its backup_manifest) to take an incremental backup against; take a full backup first: %w",
		r.srv.system.SystemID, tli, r.srv.version/10000, ErrNoParent)
}

// prepareIncremental checks the server, chooses the parent and sends its
// manifest over repl: the next BASE_BACKUP there may be INCREMENTAL.
func (r *run) prepareIncremental(ctx context.Context, repl *replication.Conn) (*parentBackup, error) {
	if err := r.checkIncremental(ctx); err != nil {
		return nil, err
	}
	p, err := r.findParent(ctx)
	if err != nil {
		return nil, err
	}
	if err := repl.UploadManifest(ctx, p.manifest); err != nil {
		return nil, fmt.Errorf("basebackup: parent backup %s: %w", p.info.Name, err)
	}
	r.log.Info().Str("parent", p.info.Name).Str("parent_lsn", p.start).Msg("incremental basebackup against its parent")
	return p, nil
}

// codeNotInPrerequisiteState is SQLSTATE 55000, with which BASE_BACKUP
// refuses an incremental backup that starts before its parent's end.
const codeNotInPrerequisiteState = "55000"

// incrementalStartError explains BASE_BACKUP's refusal, on a standby, of
// an incremental backup that would start before its parent ended
// (PrepareForIncrementalBackup in basebackup_incremental.c). A standby
// cannot checkpoint: a backup of it starts at its latest restartpoint,
// at the last checkpoint of its primary it replayed. Until the primary
// checkpoints again (CHECKPOINT, checkpoint_timeout, max_wal_size) and
// the standby replays it, each new backup starts where the parent did,
// before the parent's end. Such an error wraps ErrIncrementalUnavailable
// (a full backup still works); any other err is returned as it is.
func (r *run) incrementalStartError(err error, parent *parentBackup) error {
	var pgErr *pgconn.PgError
	if parent == nil || !r.srv.inRecovery || !errors.As(err, &pgErr) || pgErr.Code != codeNotInPrerequisiteState ||
		!strings.Contains(pgErr.Message, "but this backup starts at") {
		return err
	}
	return fmt.Errorf("incremental backup of a standby against %s, which ends at %s: the standby has replayed no checkpoint of its primary since then, "+
		"and a backup of a standby starts at the last one it replayed. Run CHECKPOINT on the primary (or wait for its next checkpoint, "+
		"checkpoint_timeout), let the standby replay it, and try again, or take a full backup: %w: %w",
		parent.info.Name, parent.info.EndLSN, ErrIncrementalUnavailable, err)
}
