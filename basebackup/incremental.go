package basebackup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/storage"
)

// ErrIncrementalUnavailable is returned (wrapped) when an incremental
// backup cannot be taken: the server is older than PostgreSQL 17, does
// not summarize WAL (summarize_wal off), or is a standby that has
// replayed no checkpoint of its primary since the parent backup
// (incrementalStartError). A full backup still can.
var ErrIncrementalUnavailable = errors.New("incremental backup not possible")

// ErrNoParent is returned (wrapped) when an incremental backup has no
// parent: no stored backup of the same system and timeline with
// PostgreSQL's backup_manifest, or the newest one's chain cannot be
// restored (checkChain). A full backup is needed first.
var ErrNoParent = archive.ErrNoParent

// ErrBrokenParent is wrapped, beside ErrNoParent, when a parent exists but
// its chain cannot be restored (a backup of it not stored or damaged, a
// chunk missing, a control object not its own: checkChain): damage to
// look into, where ErrNoParent alone (none stored on the timeline: a
// first backup, a new timeline after a promotion) is none. Only damage
// found (archive.IsDamage) wraps it: a check of the chain that the
// storage failed (unreachable, refusing, timing out) wraps neither, and
// fails the backup with the storage's error.
var ErrBrokenParent = errors.New("parent backup's chain cannot be restored")

// ErrParentMovedFrom is wrapped, beside ErrNoParent and never beside
// ErrBrokenParent, when the site's newest backup of the system and
// timeline is an incremental backup whose chain continues into a
// moved_from site (a partial archive-copy into the site), and that chain
// is sound as restore takes it (archive.Archive.FirstCopies): nothing is
// damaged, but an incremental backup is not taken on it, so that every
// chain the daemon builds stays inside the site whose retention and
// incremental markers protect it; a full backup starts a new chain in
// the site.
var ErrParentMovedFrom = errors.New("parent backup's chain continues into a moved_from site")

// parentBackup is the backup an incremental one is taken against.
type parentBackup struct {
	info     *archive.BackupInfo
	manifest []byte // its PostgreSQL backup_manifest
	start    string // its start LSN, as its control manifest records it
	timeline uint32
	// chain is the backups a restore needs with the incremental one:
	// the parent's chain (archive.Chain), full backup first.
	chain []*archive.BackupInfo
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
// Only the site's own backups are candidates, and its chain is followed
// in the site's own listing: restore takes the site's copy of a name
// first (archive.Archive.FirstCopies), so none of them is shadowed by a
// moved_from site's copy; a chain that continues into a moved_from site
// is refused (a full backup is taken): as moved (ErrParentMovedFrom, not
// ErrBrokenParent) when it is sound there (movedChain), as broken
// otherwise; one through a name a damaged object shares (damagedName) is
// refused as broken, as restore refuses it.
// Its chain is checked (checkChain), and its backup_manifest kept from
// the read of its control object that check makes.
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
		// An incremental backup on a broken chain restores nothing.
		chain, err := archive.Chain(backups.Sound, b)
		if err != nil {
			if moved := movedChain(ctx, a, b); moved != nil {
				return nil, moved
			}
			return nil, fmt.Errorf("basebackup: newest backup of the system and timeline: %w; take a full backup: %w", err, ErrBrokenParent)
		}
		if err := damagedName(chain, backups.Damaged); err != nil {
			return nil, err
		}
		pgm := &archive.ControlMember{Name: archive.ControlPGManifest, Max: archive.MaxPGManifest}
		ctrl, err := checkChain(ctx, a, b, chain, pgm)
		if err != nil {
			return nil, err
		}
		data, err := pgm.Data()
		if err != nil {
			return nil, fmt.Errorf("basebackup: parent backup %s: control object %s: %w", b.Name, b.Key, err)
		}
		p := &parentBackup{info: b, manifest: data, timeline: b.StartTimeline, start: b.StartLSN.String(), chain: chain}
		if m := ctrl.Manifest; m.Hoard != nil && m.Hoard.StartLSN != "" {
			p.start = m.Hoard.StartLSN
		}
		return p, nil
	}
	return nil, fmt.Errorf("basebackup: no stored backup of system %s on timeline %d (PostgreSQL %d, with its backup_manifest) to take an incremental backup against; take a full backup first: %w",
		r.srv.system.SystemID, tli, r.srv.version/10000, ErrNoParent)
}

// movedChain is called when b's chain, followed in the site's own
// listing, is broken. When the site has moved_from sites and b's chain
// follows there as restore takes it (archive.Archive.FirstCopies over
// every site, the site's own copy of a name first, damaged copies
// included), each backup checked in the site that holds it as checkChain
// checks one (archive.CheckBackup), it returns the refusal that says so:
// the chain is sound, it continues into a moved_from site (after a
// partial archive-copy into the site), and a full backup starts a new
// chain in the site; it wraps ErrParentMovedFrom and ErrNoParent, never
// ErrBrokenParent, so that the daemon counts no broken parent for a chain
// restore and verify call restorable. A chain found damaged there (a
// backup of it missing or damaged in every site, a chunk missing)
// returns that refusal, wrapping ErrBrokenParent, naming the backup and
// its site; one that could not be checked (the storage failed) returns
// an error wrapping neither, as checkChain does. nil when there is no
// moved_from site or the moved_from sites could not be listed: the chain
// is then refused as broken in the site's own listing, as before.
func movedChain(ctx context.Context, a *archive.Archive, b *archive.BackupInfo) error {
	if len(a.MovedFrom) == 0 {
		return nil
	}
	all, err := a.ScanAllBackups(ctx)
	if err != nil {
		return nil
	}
	first := a.FirstCopies(all)
	var own *archive.BackupInfo
	for _, x := range first.Sound {
		if x.Name == b.Name && a.SiteRank(a.ArchiveOf(x)) == 0 {
			own = x
		}
	}
	if own == nil {
		return nil
	}
	chain, err := archive.Chain(first.Sound, own)
	if err != nil {
		// Broken in every site: the site's own listing says why.
		return nil
	}
	if err := damagedName(chain, first.Damaged); err != nil {
		return err
	}
	var moved []string
	for _, x := range chain {
		src := a.ArchiveOf(x)
		err := src.CheckBackup(ctx, x, false)
		if err == nil {
			if a.SiteRank(src) != 0 {
				moved = append(moved, x.Name+" (moved_from site "+src.Site+")")
			}
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("basebackup: check parent backup %s: %w", b.Name, ctx.Err())
		}
		if !archive.IsDamage(err) {
			return fmt.Errorf("basebackup: parent backup %s: backup %s of its chain%s could not be checked: %w; "+
				"the incremental backup is not taken, and is tried again", b.Name, x.Name, a.InSite(src), err)
		}
		return fmt.Errorf("basebackup: parent backup %s cannot be restored, backup %s of its chain%s is broken: %w; "+
			"incremental backups on it would restore nothing: take a full backup (hoard verify names what else is broken): %w: %w",
			b.Name, x.Name, a.InSite(src), err, ErrBrokenParent, ErrNoParent)
	}
	if len(moved) == 0 {
		return nil
	}
	return fmt.Errorf("basebackup: newest backup of the system and timeline, %s, is an incremental backup whose chain continues into a moved_from site: %s; "+
		"the chain is sound and restore takes it, but an incremental backup is taken only on a chain the site itself holds "+
		"(its retention and incremental markers protect it): a new chain starts with a full backup in site %s: %w: %w",
		b.Name, strings.Join(moved, ", "), a.Site, ErrParentMovedFrom, ErrNoParent)
}

// damagedName refuses chain, a parent's chain in the site's own listing,
// when a backup of it shares its name with a damaged object of the site
// (metadata that does not parse, under the other key of the name:
// basebackup/NAME beside basebackup/NAME.00000000.pghoard). Restore
// resolves a parent by name among the copies it takes
// (archive.Archive.FirstCopies: the site's own first, sound or damaged)
// and refuses a chain through a damaged one; so do verify and list. The
// sound object alone would have the incremental backup taken on a chain
// that restores nothing. Someone who can write the bucket but holds no
// key can plant such an object; the error wraps ErrBrokenParent and
// ErrNoParent, and the daemon takes a full backup instead.
func damagedName(chain []*archive.BackupInfo, damaged []*archive.DamagedBackup) error {
	for _, b := range chain {
		for _, d := range damaged {
			if d.Name != b.Name {
				continue
			}
			return fmt.Errorf("basebackup: newest backup of the system and timeline: backup %s of its chain shares its name with the damaged object %s (%v), "+
				"and restore refuses a chain through it: remove the object that is not the backup's (hoard list names it DAMAGED), "+
				"or take a full backup: %w: %w", b.Name, d.Key, d.Err, ErrBrokenParent, ErrNoParent)
		}
	}
	return nil
}

// checkChain checks, before p is taken as the parent, that every backup
// of its chain can be read back as retention checks a backup it counts
// on (archive.CheckBackup, without decoding the chunks): its control
// object decodes and is its own (archive.CheckControl, as restore checks
// it), and every chunk its manifest lists is stored at the size it
// records. The listing's metadata says none of that: a storage that lost
// a chunk, or someone who can write the bucket but holds no key (who
// deletes a chunk, or copies another backup's control object under p's
// name, p's metadata kept), would otherwise have every incremental
// backup until the next full one taken on a chain that restores nothing,
// found out only at a restore. A chain found damaged (archive.IsDamage:
// an object missing, of another size, that does not decode, not its
// backup's) wraps ErrBrokenParent and ErrNoParent, naming p and the
// backup at fault: the daemon takes a full backup instead. Any other
// error (the storage unreachable or refusing past its retries, a
// timeout) is not evidence of damage: it is returned naming p, wrapping
// neither, and the backup fails, to be tried again, rather than raise an
// alarm about damage nobody found and take a full backup from a storage
// that is failing. Someone who can write the bucket but holds no key
// cannot make damage read as such a failure: the store's answers that
// count as damage (not found, the bytes returned in full not decoding)
// are what such a writer can cause, and an object they make unreadable
// otherwise (an ACL, say) fails every incremental backup, loudly, until
// someone looks. It does not decode the chunks (hoard verify --full does).
//
// p's control object is read once (archive.ReadBackupControl, then
// archive.CheckChunks on the manifest that read gave), with pgm keeping
// its backup_manifest in the same pass, and returned: the incremental
// backup is taken against what was checked. A second read could find
// another backup's control object, copied under p's name since the
// check, and the backup would be taken against that backup's
// backup_manifest while recording p as its parent, a chain restore
// refuses. p's control object encrypted with a key whose private half
// is not configured is checked sealed (archive.CheckBackupSealed), as
// CheckBackup does; when that passes, the error says that the
// backup_manifest cannot be read, and wraps no ErrNoParent.
func checkChain(ctx context.Context, a *archive.Archive, p *archive.BackupInfo, chain []*archive.BackupInfo, pgm *archive.ControlMember) (*archive.Control, error) {
	var ctrl *archive.Control
	for _, b := range chain {
		var err error
		if b == p {
			ctrl, err = a.ReadBackupControl(ctx, p, pgm.Check)
			switch {
			case errors.Is(err, archive.ErrNoPrivateKey):
				// Checked sealed, as CheckBackup does; its
				// backup_manifest cannot be read here.
				noKey := err
				if err = a.CheckBackupSealed(ctx, p); err == nil {
					return nil, fmt.Errorf("basebackup: parent backup %s: %w", p.Name, noKey)
				}
			case err == nil:
				err = a.CheckChunks(ctx, p, ctrl.Manifest, false)
			}
		} else {
			err = a.CheckBackup(ctx, b, false)
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("basebackup: check parent backup %s: %w", p.Name, ctx.Err())
		}
		what := "it"
		if b != p {
			what = "backup " + b.Name + " of its chain"
		}
		if !archive.IsDamage(err) {
			// The check could not be made: nothing says the chain is
			// broken, and a full backup would need the same storage.
			return nil, fmt.Errorf("basebackup: parent backup %s: %s could not be checked: %w; "+
				"the incremental backup is not taken, and is tried again", p.Name, what, err)
		}
		return nil, fmt.Errorf("basebackup: parent backup %s cannot be restored, %s is broken: %w; "+
			"incremental backups on it would restore nothing: take a full backup (hoard verify names what else is broken): %w: %w",
			p.Name, what, err, ErrBrokenParent, ErrNoParent)
	}
	return ctrl, nil
}

// parentAttempts is how many times prepareIncremental chooses a parent
// when the one it chose is deleted before its marker is stored.
const parentAttempts = 3

// prepareIncremental checks the server, chooses the parent, records it in
// the store (archive.MarkIncrementalParent: retention keeps its chain
// from then on) and sends its manifest over repl: the next BASE_BACKUP
// there may be INCREMENTAL. A parent deleted between the listing it was
// chosen from and the marker (by a retention run that did not see the
// marker yet) is found gone after the marker is stored, and the parent
// is chosen again.
func (r *run) prepareIncremental(ctx context.Context, repl *replication.Conn) (*parentBackup, error) {
	if err := r.checkIncremental(ctx); err != nil {
		return nil, err
	}
	var p *parentBackup
	for attempt := 1; ; attempt++ {
		var err error
		if p, err = r.findParent(ctx); err != nil {
			return nil, err
		}
		if r.marker, err = r.o.Archive.MarkIncrementalParent(ctx, p.info.Name); err != nil {
			return nil, fmt.Errorf("basebackup: %w", err)
		}
		err = r.checkParent(ctx, p)
		if err == nil {
			break
		}
		if derr := r.unmark(ctx); derr != nil {
			return nil, errors.Join(err, derr)
		}
		if !errors.Is(err, ErrNoParent) || attempt == parentAttempts {
			return nil, err
		}
		r.log.Info().Err(err).Msg("parent backup deleted while it was chosen: choosing again")
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

// checkParent checks that every backup of p's chain is still stored: its
// control object exists. A retention run that did not see the backup's
// marker (it listed the markers before it was stored, or it does not know
// them: PGHoard's, an older hoard's), or someone by hand, may have
// deleted one; the backup would then be an incremental of a backup that
// is gone, found out only at restore. A backup gone is an error wrapping
// ErrNoParent.
func (r *run) checkParent(ctx context.Context, p *parentBackup) error {
	for _, b := range p.chain {
		_, err := r.o.Archive.Store.Stat(ctx, b.Key)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("basebackup: backup %s, of the chain of parent backup %s, was deleted while this incremental backup was taken "+
				"(by retention that does not know hoard's markers of incremental backups, or by hand): this backup cannot be restored and is not stored; "+
				"take it again, or take a full backup: %w", b.Name, p.info.Name, ErrNoParent)
		}
		if err != nil {
			return fmt.Errorf("basebackup: check parent backup %s: %w", b.Name, err)
		}
	}
	return nil
}

// keepMarker keeps the backup's marker from going stale while the backup
// runs, however long (archive.KeepIncrementalMarker), until the returned
// stop is called; stop waits for it and records the marker stored last
// in r.marker, the one unmark deletes. stop may be called more than once.
func (r *run) keepMarker(ctx context.Context) (stop func()) {
	key := r.marker
	wait := keepMarker(ctx, archive.IncrementalMarkerRefresh, func(ctx context.Context, tick <-chan time.Time) {
		key = r.o.Archive.KeepIncrementalMarker(ctx, key, tick, r.log)
	})
	return sync.OnceFunc(func() {
		wait()
		r.marker = key
	})
}

// markAgain stores a new marker of p in place of the backup's last one
// (r.marker, once keepMarker stopped), before the backup's last check of
// p's chain (checkParent) and its control object. The last one may no
// longer count: deleted by someone who can write the storage, or stale
// (no new one stored for a day: KeepIncrementalMarker only logs a
// failure), after a newer backup started. A retention run that then
// listed the markers may delete a backup of the chain at any moment,
// also after that check and before the backup is listed (or after,
// applying a plan made before), and the backup would be listed with its
// parent gone. The check catches a deletion before it; once the new
// marker is stored, a run that lists the markers afterwards keeps the
// chain, and the marker stays with the completed backup for a day; that
// it was not deleted meanwhile is checked once the control object is
// stored (checkStored). A new marker that fails to store fails the
// backup (the control object would be stored right after it).
func (r *run) markAgain(ctx context.Context, p *parentBackup) error {
	next, err := r.o.Archive.MarkIncrementalParent(ctx, p.info.Name)
	if err != nil {
		return fmt.Errorf("basebackup: %w", err)
	}
	prev := r.marker
	r.marker = next
	// A failed delete leaves both markers: the older one goes once it
	// is stale.
	if err := r.o.Archive.Store.Delete(ctx, prev); err != nil {
		r.log.Warn().Err(err).Str("key", prev).Msg("incremental backup's previous marker not deleted: retention deletes it once it is stale")
	}
	return nil
}

// checkStored is the incremental backup's last check, once its control
// object is stored and before it counts as stored: storeControl
// withdraws the backup (deletes the control object again) when it fails.
// It checks that the backup's marker (r.marker, from markAgain) is still
// stored, then p's chain (checkParent).
//
// Why after the control object: hoard's retention deletes a backup of
// the chain only when the plan it applies did not list this backup (a
// plan that lists it keeps its chain, keepParents), so was made before
// the control object was stored, and only right after it listed the
// markers (keepMarkedAgain, before each deletion) and found none that
// needs the chain. Such a listing
//
//   - after this check finds the marker: the completed backup leaves it
//     (someone who deletes it then could as well delete the parent);
//   - between the marker's write and this check found it too: only this
//     backup writes its key, so a marker still there now was there all
//     along;
//   - before the marker was written is followed by its deletion at once
//     (one request), which checkParent here finds, short of a request
//     in flight from before the marker to after this check.
//
// A marker gone (someone who can write the bucket deleted it) means a run
// may have listed the markers meanwhile, and may delete the chain later
// still, after this check: the backup fails rather than count on it.
// Before the control object is stored, the same check would miss a
// marker deleted between the two, which a run planned and applied in
// that time needs.
func (r *run) checkStored(ctx context.Context, p *parentBackup) error {
	if err := r.o.Archive.CheckIncrementalMarker(ctx, r.marker); err != nil {
		return fmt.Errorf("basebackup: %w: a retention run that did not see it may delete backups of the chain of parent backup %s, "+
			"so this incremental backup is not stored; take it again, or take a full backup", err, p.info.Name)
	}
	return r.checkParent(ctx, p)
}

// unmark deletes the backup's marker (a failed backup's), under a context
// that outlives ctx's cancellation.
func (r *run) unmark(ctx context.Context) error {
	if r.marker == "" {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := r.o.Archive.Store.Delete(cctx, r.marker); err != nil {
		return fmt.Errorf("delete marker %s of the failed backup: %w", r.marker, err)
	}
	r.marker = ""
	return nil
}
