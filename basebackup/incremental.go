package basebackup

import (
	"context"
	"errors"
	"fmt"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
)

// ErrIncrementalUnavailable is returned (wrapped) when an incremental
// backup cannot be taken: the server is older than PostgreSQL 17 or does
// not summarize WAL (summarize_wal off). A full backup still can.
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
