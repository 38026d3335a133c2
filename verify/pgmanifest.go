package verify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/restore"
)

// pgManifest starts the comparison of backup b's files with the
// backup_manifest it carries, as restore compares them
// (restore.PGManifestCheck), b's control object being ctrl and objects
// the number of its chunks, bundles and delta objects to check. Without
// full, it reports what readControl read of backup_manifest (pgmErr) as
// restore reads it before restoring b: a control object restore refuses
// for it (backup_manifest absent where b's authenticated metadata says
// it is there or b is an incremental backup, or one that does not
// parse) makes b broken. With full, it returns the check its objects go
// through, which reads backup_manifest when the first of them is checked
// and compares nothing where restore compares nothing (PGHoard's
// backups); nil when b has no object to check, whose
// files it compares at once. The error is ctx's only.
func (c *checker) pgManifest(ctx context.Context, b *archive.BackupInfo, r *BackupReport, ctrl *archive.Control, pgmErr error, objects int) (*pgmCheck, error) {
	p := &pgmCheck{c: c, b: b, r: r, ctrl: ctrl}
	switch {
	case !c.full:
		// Read with the control object, compared with nothing.
		if pgmErr != nil && ctx.Err() == nil {
			c.problem(r, true, "%v", altered(pgmErr))
		}
		return nil, ctx.Err()
	case objects == 0:
		// Nothing else gives it files: compared now.
		p.left.Store(1)
		if _, err := p.get(ctx); err != nil {
			return nil, err
		}
		p.done()
		return nil, ctx.Err()
	}
	p.left.Store(int64(objects))
	return p, nil
}

// pgmCheck is the backup_manifest check of one backup with full. It is
// read when the first of the backup's objects is checked (get), compares
// the control tar's members and the files embedded in a delta backup's
// manifest then, and once the last object is checked names the files
// none held (done), and is let go: verify holds the manifests (about 100
// bytes a file) of the backups whose objects it checks at the time, not
// of every backup. The backups' objects are checked in order, so those
// are at most as many as run in parallel.
type pgmCheck struct {
	c    *checker
	b    *archive.BackupInfo
	r    *BackupReport
	ctrl *archive.Control

	once sync.Once
	pgm  *restore.PGManifestCheck // nil: nothing is compared
	// err, set by load, is why the manifest was not read: the storage
	// failed to send the control object (storageFailed).
	err  error
	left atomic.Int64 // objects not yet checked
}

// get returns the check for one of the backup's objects, reading the
// manifest first if no object did yet. The error is the storage's, that
// failed to send the control object: nothing was checked.
func (p *pgmCheck) get(ctx context.Context) (*restore.PGManifestCheck, error) {
	p.once.Do(func() { p.pgm, p.err = p.load(ctx) })
	return p.pgm, p.err
}

// load reads the backup's backup_manifest, compares the control tar's
// members and a delta backup's embedded files, and returns the check;
// nil when restore compares nothing, or when the backup is broken, which
// load reports. The error is for a download the storage failed
// (storageFailed), which says nothing about the backup.
func (p *pgmCheck) load(ctx context.Context) (*restore.PGManifestCheck, error) {
	c, b, r := p.c, p.b, p.r
	src := marking(c.a.ArchiveOf(b))
	pgm, err := restore.NewPGManifestCheck(ctx, src, b, p.ctrl)
	if err == nil && pgm != nil && c.full {
		err = pgm.Control(ctx, src, b, p.ctrl)
		if err == nil && b.Format == archive.FormatDeltaV2 {
			if err = deltaEmbedded(p.ctrl.Manifest, pgm); err != nil {
				err = fmt.Errorf("control object %s: embedded file: %w", b.Key, err)
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return nil, nil
	case err != nil && storageFailed(err):
		return nil, unchecked("control object", b.Key, err)
	case err != nil:
		c.problem(r, true, "%v", altered(err))
		return nil, nil
	}
	return pgm, nil
}

// done counts one of the backup's objects checked. After the last, the
// files the manifest lists that none of them held are a problem
// (restore.PGManifestCheck.Missing), unless the backup is broken by its
// objects already: a file of a chunk that failed is not missing from
// the backup.
func (p *pgmCheck) done() {
	if p.left.Add(-1) > 0 {
		return
	}
	pgm := p.pgm
	p.pgm = nil
	p.c.mu.Lock()
	broken := p.r.objectsBroken
	p.c.mu.Unlock()
	if pgm == nil || broken {
		return
	}
	if err := pgm.Missing(); err != nil {
		p.c.problem(p.r, true, "control object %s: %v", p.b.Key, altered(err))
		return
	}
	p.c.log.Debug().Str("backup", p.b.Name).Int("files", pgm.Files()).Msg("files compared with backup_manifest")
}

// deltaEmbedded compares each file embedded in the delta manifest of m
// with its entry in the backup's backup_manifest, as restore writes it.
func deltaEmbedded(m *archive.Manifest, pgm *restore.PGManifestCheck) error {
	dm, err := archive.ParseDelta(m)
	if err != nil {
		return err
	}
	for _, f := range dm.SnapshotResult.State.Files {
		if f.Hexdigest != "" || f.ContentB64 == nil {
			continue
		}
		data, err := base64.StdEncoding.DecodeString(*f.ContentB64)
		if err != nil {
			return err // ParseDelta decoded it
		}
		crc := restore.NewCRC32C()
		crc.Write(data)
		if err := pgm.DeltaFile(f.RelativePath, int64(len(data)), crc.Sum32()); err != nil {
			return err
		}
	}
	return nil
}

// altered adds restore's explanation to an error wrapping
// restore.ErrPGManifest: the backup is damaged or was altered.
func altered(err error) error {
	if errors.Is(err, restore.ErrPGManifest) {
		return restore.Altered(err)
	}
	return err
}
