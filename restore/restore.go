package restore

import (
	"archive/tar"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// ErrIncomplete is returned (wrapped) when a restore stopped after it began
// writing the target: the directory has no pg_control and no recovery
// configuration, so PostgreSQL will not start on it. Run again with
// Overwrite.
var ErrIncomplete = errors.New("restore incomplete")

// ErrNoBackupLabel is returned (wrapped) for a backup that holds no
// backup_label. Every backup hoard or PGHoard takes holds one (in the
// control tar, or in the one tar of a basic or pipe backup); without it
// PostgreSQL does crash recovery from pg_control's checkpoint, one from
// during the backup, with no backup end to reach, and can start a
// silently corrupt cluster.
var ErrNoBackupLabel = errors.New("no backup_label in the backup")

// ErrTablespaceInPlace is returned (wrapped, with ErrTargetNotEmpty) when
// Overwrite is set and a tablespace restored to the path it had when
// backed up holds files: Overwrite empties only the target and the
// tablespace directories the caller named (Options.TablespaceDirs,
// TablespaceBaseDir), never a tablespace's original path, which on the
// backed-up host is the running cluster's. After a failed restore there,
// the caller maps the tablespace elsewhere or empties the directory.
var ErrTablespaceInPlace = errors.New("a tablespace's own directory is not emptied by overwrite")

// ErrUnsupportedFormat is returned (wrapped) for a backup format Run cannot
// restore.
var ErrUnsupportedFormat = errors.New("unsupported backup format")

// ErrSizeMismatch is returned (wrapped) when a chunk decodes to a size other
// than the manifest's input_size.
var ErrSizeMismatch = errors.New("chunk size differs from manifest")

// Defaults of Options.
const (
	DefaultParallel     = 8
	DefaultRetries      = 3
	DefaultStallTimeout = 2 * time.Minute
)

// Options configure Run.
type Options struct {
	Archive   *archive.Archive
	TargetDir string // the data directory to create
	Backup    string // backup name; "" or "latest" chooses by Target
	Target    Target

	// SystemID, when the caller knows it, is the system identifier of
	// the cluster the site backs up (the daemon's and hoard verify
	// --restore's node says it): the automatic choice passes over backups
	// whose authenticated metadata names another system (Candidates).
	// "" chooses among the backups of every system, with a warning when
	// they are of more than one.
	SystemID string

	// TablespaceDirs maps tablespace names to the directories to restore
	// them into; TablespaceBaseDir/<oid> is used for the others, or else
	// the path they had when backed up.
	TablespaceDirs    map[string]string
	TablespaceBaseDir string

	// WALDir, when set, is where the restored cluster keeps its WAL, as
	// initdb --waldir and pg_basebackup --waldir place it: an absolute
	// path, absent or empty (or emptied by Overwrite), which the data
	// directory's pg_wal links to. The restore writes there only pg_wal's
	// directories (archive_status, summaries) and the prefetch spool; the
	// space check counts its file system. "": pg_wal is a directory in
	// the target, whatever the backed-up cluster's was.
	WALDir string

	// Overwrite allows non-empty target, tablespace and WAL directories
	// and removes their contents (not the directories themselves).
	Overwrite bool

	// StopAtGap accepts a gap in the archived WAL after the backup's end,
	// with stored WAL beyond it, for a restore to the end of the archive:
	// recovery then stops at the gap (Result.WALGap says where). Without
	// it Run refuses such a restore with ErrWALGap, naming the gap.
	StopAtGap bool

	// SkipSpaceCheck lets Run go on when a file system of the target or
	// a tablespace has less free space than the backup needs there
	// (checkSpace); without it Run refuses with ErrNoSpace.
	SkipSpaceCheck bool

	Standby            bool   // write standby.signal instead of recovery.signal
	ArchiveOff         bool   // write archive_mode = 'off' (see RecoveryConfig.ArchiveOff)
	PrimaryConnInfo    string // primary_conninfo
	RestoreCommand     string // restore_command, e.g. hoard wal-fetch ... %f %p
	RecoveryEndCommand string // recovery_end_command

	// WALFetch, when RestoreCommand is "", is the restore_command written:
	// hoard wal-fetch with --archived-through the last segment of the
	// unbroken run of WAL Run found archived (Result.WALArchivedThrough),
	// so that recovery stops with an error at one of them that is gone by
	// the time PostgreSQL asks for it instead of promoting early. Left out
	// for a Standby, which takes a missing segment as its cue to stream.
	WALFetch *WALFetch

	// TargetAction is recovery_target_action (pause, promote or shutdown),
	// written only with a target. "" means promote when restoring a
	// primary, so that starting PostgreSQL on the directory gives a
	// writable server at the target (PostgreSQL's own default, pause,
	// needs hot_standby and a manual pg_wal_replay_resume or promote), and
	// PostgreSQL's own pause for a standby, written out all the same.
	TargetAction string

	Parallel     int           // chunks downloaded at once (restore_process_count); 0: DefaultParallel
	Retries      int           // re-downloads of a chunk after a transient error; 0: DefaultRetries, <0: none
	StallTimeout time.Duration // abort a download that reads nothing this long; 0: DefaultStallTimeout

	// MaxScanSegments bounds the WAL scanned for a restore point name
	// when Run chooses the backup (findRestorePoint); 0: 64. For a
	// named backup the scan reads all the WAL from its start.
	MaxScanSegments int

	// Progress, when set, is called every ProgressInterval (0: one second)
	// during the chunk downloads and once when they are done, always from
	// the same goroutine.
	Progress         func(Progress)
	ProgressInterval time.Duration

	Logger zerolog.Logger
}

// Progress reports how far the chunk downloads are.
type Progress struct {
	Chunks, ChunksDone int
	Bytes, BytesDone   int64 // decoded (tar) bytes: the manifest's input sizes, and those read so far
}

// Result describes a finished restore.
type Result struct {
	Backup      *archive.BackupInfo
	Manifest    *archive.Manifest
	PGMajor     int
	Chunks      int
	Bytes       int64             // decoded bytes of chunks and control tar
	StoredBytes int64             // bytes read from storage for the chunks (result_size)
	Tablespaces map[string]string // tablespace name → directory restored into

	// WALArchivedThrough is the last segment of the unbroken run of
	// archived WAL that starts at the backup's start segment.
	WALArchivedThrough string
	// WALPartial is the .partial object that ends that run, when the
	// complete segment after the run is not stored and its .partial
	// copy stands in for it (WALArchivedThrough then names it, with its
	// suffix): recovery replays it up to WALPartial.End and ends there.
	WALPartial *PartialTail
	// WALSystemEnd, when not nil, says why WALPartial ends that run
	// although WAL is stored after it: it ends the WAL of the backup's
	// system, and another system's WAL follows (SystemEndTail).
	WALSystemEnd *archive.SystemEnd
	// Accepted are the segments the restore_command's wal-fetch delivers
	// although they are refused as truncated (WALFetch.AcceptTruncated),
	// each with where its WAL, and so recovery, ends.
	Accepted []AcceptedSegment
	// WALChecked is how many segments of the backup's consistency range
	// were downloaded and checked as wal-fetch checks them, and
	// WALSpooled those kept in the prefetch spool of the target's pg_wal,
	// where wal-fetch takes them without a download.
	WALChecked int
	WALSpooled []string
	// WALGap is the gap that ends that run when stored WAL lies beyond it
	// (a restore to the end of the archive needs StopAtGap then): recovery
	// stops at WALGap.ReachLSN. nil when there is none.
	WALGap *WALGap
	// Unlisted notes the backup history files that start after every
	// listed backup (archive.NewerBackupHistories), when Run chose the
	// backup itself: a newer backup may have been deleted.
	Unlisted []string

	// PassedOver are the backups the automatic choice chose, then
	// refused before writing anything, and passed over for an older one,
	// newest first.
	PassedOver []PassedOver

	// PGManifestFiles is how many files of PostgreSQL's backup_manifest
	// the restored files were compared with (size and CRC-32C), every
	// file it lists; for an incremental chain, of each backup's, added
	// up, but a parent's control tar files and files of tablespaces the
	// restored backup no longer has (see fitParent); 0 when the backup
	// carries none.
	PGManifestFiles int

	Download time.Duration // chunk downloads and extraction
	Elapsed  time.Duration // the whole Run
}

// Run restores a backup of o.Archive, or of a site it moved from, into
// o.TargetDir, configured to recover to o.Target. WAL and timeline
// histories count from all of those sites. It checks everything it can before writing anything:
// the target directories, the archived WAL from the backup's start to its
// end (and to an LSN target), and the backup's manifest. Chunks are
// streamed straight into place in parallel; only when all have decoded and
// verified is the control tar (pg_control, backup_label) written, then the
// recovery configuration, then everything is synced to disk.
func Run(ctx context.Context, o Options) (*Result, error) {
	began := time.Now()
	if err := o.validate(); err != nil {
		return nil, err
	}
	log := o.Logger.With().Str("component", "restore").Str("site", o.Archive.Site).Logger()
	a := o.Archive
	listed, err := a.ScanAllBackups(ctx)
	if err != nil {
		return nil, err
	}
	// The same backup in the site and a site it moved from (archive-copy,
	// both kept): the site's own copy is the one restored.
	listed = a.FirstCopies(listed)
	if err := checkDamaged(log, listed.Damaged, o.Backup); err != nil {
		return nil, err
	}
	backups := listed.Sound
	t := o.Target
	// The one listing of xlog/ of the run (hundreds of requests in a
	// site kept for years): made here when the restore point's scan
	// needs it, else for the check of the backup's WAL below.
	var stored *archive.WALListing
	// newestPoint is the newest restore point called t.Name in the
	// archived WAL. For the automatic choice it is found here, in the
	// newest segments (o.MaxScanSegments), and the choice takes the
	// newest backup that ended before it; a backup named with
	// --basebackup is taken as it is, and the point is looked for once
	// its recovery path is known (checkRestorePoints). The automatic
	// choice's point may be on a timeline off that path: checked then
	// too (pointOnPath).
	var newestPoint pglogrepl.LSN
	var newestSeg string // the segment copy it was found in
	named := o.Backup != "" && o.Backup != "latest"
	if t.Name != "" && len(backups) > 0 {
		if err := checkRestorePointName(t.Name); err != nil {
			return nil, err
		}
		if stored, err = a.ListStoredWAL(ctx); err != nil {
			return nil, err
		}
		if !named {
			scope := pointScope{max: o.MaxScanSegments}
			if newestPoint, newestSeg, err = findRestorePointIn(ctx, holders(stored.Segments), t.Name, backups[len(backups)-1].SegmentSize(), scope); err != nil {
				return nil, err
			}
			t.nameLSN = newestPoint
		}
	}
	if t.path, err = TargetPath(ctx, a, t.Timeline); err != nil {
		return nil, fmt.Errorf("target timeline %s: %w", t.Timeline, err)
	}
	if (t.Timeline == "" || t.Timeline == "latest") && (o.Backup == "" || o.Backup == "latest") {
		// For the system the automatic choice stays with, the newest
		// backup's (choose).
		var system uint64
		if c := Candidates(backups, o.Backup, o.SystemID); len(c) > 0 {
			system = BackupSystem(c[len(c)-1])
		}
		if t.latest, err = LatestPaths(ctx, a, backups, system); err != nil {
			return nil, fmt.Errorf("target timeline latest: %w", err)
		}
	}
	c, err := o.choose(ctx, log, a, backups, listed.Damaged, t)
	if err != nil {
		return nil, err
	}
	b, ctrl, chain, pgm := c.b, c.ctrl, c.chain, c.pgm
	log = log.With().Str("backup", b.Name).Logger()
	src := a.ArchiveOf(b)
	log.Info().Str("backup_site", src.Site).Time("end_time", b.EndTime).Str("end_lsn", b.EndLSN.String()).Msg("backup selected")
	if t.XID != 0 {
		if ok, why := endsBefore(b, t); !ok {
			// An explicit backup the end snapshot cannot settle, or the
			// oldest backup without a snapshot.
			log.Warn().Uint64("xid", t.XID).Str("why", why).
				Msg("the transaction may have committed before this backup ended; then recovery does not reach the xid and PostgreSQL stops with an error")
		}
	} else if endUnrecorded(b, t) {
		// An explicit backup that records no end (PGHoard's basic, pipe).
		log.Warn().Str("why", "its end is not recorded").
			Msg("the target may come before this backup's end; then PostgreSQL stops with requested recovery stop point is before consistent recovery point: restore an older backup")
	}
	if err := checkFormat(b); err != nil {
		return nil, err
	}
	if err := checkVersion(b); err != nil {
		return nil, err
	}
	if o.Overwrite {
		if err := checkNotRunning(o.TargetDir); err != nil {
			return nil, err
		}
	} else if err := checkEmptyTarget(o.TargetDir, o.WALDir); err != nil {
		return nil, err
	}
	path, err := RecoveryPath(ctx, a, b, t.Timeline)
	if err != nil {
		return nil, fmt.Errorf("check WAL for backup %s: %w", b.Name, err)
	}
	if err := o.checkPromotion(ctx, a, b, path.Timeline()); err != nil {
		return nil, err
	}
	if err := checkRecoveryHistories(ctx, a, b, path, t.Timeline, o.promotes(), o.RestoreCommand); err != nil {
		return nil, err
	}
	if t.Name != "" {
		// stored is set: the restore point's scan needed it.
		if newestPoint != 0 {
			// Found on any timeline's copy: the one recovery along
			// path replays may be another (pointOnPath).
			if newestPoint, err = pointOnPath(ctx, log, holders(stored.Segments), b, path, t.Name, newestPoint, newestSeg); err != nil {
				return nil, err
			}
			t.nameLSN = newestPoint
		}
		if err := checkRestorePoints(ctx, holders(stored.Segments), b, path, t.Name, newestPoint); err != nil {
			return nil, err
		}
	}
	if stored == nil {
		if stored, err = a.ListStoredWAL(ctx); err != nil {
			return nil, fmt.Errorf("check WAL for backup %s: %w", b.Name, err)
		}
	}
	// The segments of the same listing (listWAL's, the copy wal-fetch
	// reads of each): xlog/ is listed once, hundreds of requests in a
	// site kept for years.
	w := walIndex(holders(stored.Segments))
	tail, err := recoveryTail(ctx, a, stored, b)
	if err != nil {
		return nil, fmt.Errorf("check WAL for backup %s: %w", b.Name, err)
	}
	upTo := max(t.LSN, t.nameLSN)
	walEnd, gap, err := checkWALGap(w, tail, b, path, upTo)
	if err != nil {
		// A segment stored damaged (a local store's FIFO, socket or
		// directory under its name) is missing to recovery, but named.
		return nil, fmt.Errorf("check WAL for backup %s: %w%s", b.Name, err, damagedNote(a, missingDamaged(stored.Damaged, b, path, walEnd)))
	}
	var sysEnd *archive.SystemEnd
	if gap != nil {
		// Not a gap where the backup's system's WAL ends there, in a
		// .partial another system's WAL follows (pg_upgrade into the
		// same prefix): recovery ends at the .partial's end, as at the
		// end of the archive.
		var endTail *PartialTail
		if endTail, sysEnd, err = SystemEndTail(ctx, stored, b, BackupSystem(b), gap.First); err != nil {
			return nil, fmt.Errorf("check WAL for backup %s: %w", b.Name, err)
		}
		if endTail != nil {
			tail = endTail
			if walEnd, gap, err = checkWALGap(w, tail, b, path, upTo); err != nil {
				return nil, fmt.Errorf("check WAL for backup %s: %w (%s)%s", b.Name, err, sysEnd,
					damagedNote(a, missingDamaged(stored.Damaged, b, path, walEnd)))
			}
		}
	}
	if gap != nil {
		first, err := wal.ParseSegmentName(gap.First, b.SegmentSize())
		if err != nil {
			return nil, err
		}
		last, err := wal.ParseSegmentName(gap.Last, b.SegmentSize())
		if err != nil {
			return nil, err
		}
		gap.Damaged, gap.a = storedDamaged(stored.Damaged, path, first.No, last.No, b.SegmentSize()), a
	}
	log.Info().Str("segment", walEnd).Msg("archived WAL checked")
	if t.XID != 0 {
		// An xid not found is not refused for a standby, which waits for
		// more WAL, nor where the archive ends in a .partial, which the
		// scan does not read.
		if err := checkTargetXID(ctx, w, b, path, t.XID, o.Standby || tail != nil); err != nil {
			return nil, err
		}
	}
	var accepted []AcceptedSegment
	if o.WALFetch != nil {
		if accepted, err = checkAccepted(ctx, a, o.WALFetch.Accepted()); err != nil {
			return nil, err
		}
		o.WALFetch.pinAccepted(accepted)
	}
	walFiles, err := rangeFiles(w, b, path, accepted)
	if err != nil {
		return nil, err
	}
	rc, err := o.restoreCommand(b, walEnd)
	if err != nil {
		return nil, err
	}
	switch {
	case tail == nil || !strings.HasPrefix(walEnd, tail.Segment):
		tail, sysEnd = nil, nil
	case sysEnd != nil:
		log.Warn().Str("key", tail.Key).Str("lsn", tail.End.String()).Str("why", sysEnd.String()).
			Msg("the backup's system's wal ends in a .partial copy that another system's wal follows: recovery replays it to its end")
	default:
		log.Info().Str("key", tail.Key).Str("lsn", tail.End.String()).Msg("the archive ends in a .partial copy: recovery replays it to its end")
	}
	if gap != nil {
		other := ""
		if t.IsZero() && !o.StopAtGap {
			other = otherSystemGap(ctx, stored, b, gap)
		}
		switch {
		case other != "":
			// No WAL of the backup's system is stored after the gap:
			// archive-sync from the primary cannot fill it.
			return nil, fmt.Errorf("archived WAL after backup %s ends at a gap: %s; %s. "+
				"Restore this cluster up to the gap with --stop-at-gap (its WAL after it was never stored), "+
				"and set a new backup_sites.<site>.prefix for the upgraded cluster: %w", b.Name, gap, other, ErrWALGap)
		case t.IsZero() && !o.StopAtGap:
			// Recovery to the end of the archive would promote at the
			// gap, silently dropping the stored WAL beyond it.
			return nil, fmt.Errorf("archived WAL after backup %s has a gap: %s, losing every transaction after it; "+
				"store the missing segments (hoard archive-sync from the primary's pg_wal, or another copy), "+
				"or accept that end with --stop-at-gap: %w", b.Name, gap, ErrWALGap)
		case t.IsZero():
			gapDamaged(log.Warn(), gap).Str("gap_first", gap.First).Str("gap_last", gap.Last).Str("next_stored", gap.Next).
				Str("lsn", gap.ReachLSN.String()).Msg("WAL gap accepted: recovery stops at the gap")
		case !t.Immediate:
			gapDamaged(log.Warn(), gap).Str("gap_first", gap.First).Str("gap_last", gap.Last).Str("lsn", gap.ReachLSN.String()).
				Msg("archived WAL has a gap: a recovery target after it cannot be reached and PostgreSQL will stop with an error")
		}
	}

	m := &archive.Manifest{} // a backup held in one tar has none
	if ctrl != nil {
		m = ctrl.Manifest
	} else if b.Format == archive.FormatBBv1 {
		// Its tablespaces are in the object's metadata; the manifest at
		// the head of the tar must agree (see oneTar).
		if m.Tablespaces, err = archive.V1Tablespaces(b.Metadata); err != nil {
			return nil, fmt.Errorf("backup %s: object %s: %w", b.Name, b.Key, err)
		}
	}
	dp := c.dp
	if chain != nil {
		log.Info().Int("backups", len(chain)).Str("full", chain[0].info.Name).Msg("incremental backup: its files are rebuilt from its chain")
	}
	spcDirs, wipe, planted, err := o.tablespaceDirs(m)
	if err != nil {
		return nil, fmt.Errorf("backup %s (manifest in %s): %w", b.Name, b.Key, err)
	}
	if err := o.checkWALDirShared(spcDirs, planted); err != nil {
		return nil, fmt.Errorf("backup %s (manifest in %s): %w", b.Name, b.Key, err)
	}
	if o.WALDir != "" && !o.Overwrite {
		if err := checkEmptyWALDir(o.WALDir); err != nil {
			return nil, fmt.Errorf("WAL directory: %w", err)
		}
	}
	for _, name := range mapKeys(spcDirs) {
		if !wipe[name] {
			if err := checkEmptyDir(targetDir{spcDirs[name], planted[name]}); err != nil {
				if o.Overwrite && errors.Is(err, ErrTargetNotEmpty) {
					err = fmt.Errorf("%w (restored to the path it had when backed up, which overwrite never empties): %w", err, ErrTablespaceInPlace)
				}
				return nil, fmt.Errorf("backup %s (manifest in %s): tablespace %s: %w", b.Name, b.Key, archive.Quoted(name), err)
			}
		}
	}
	// Everything is checked: from here on the directories change.
	if err := prepareDir(targetDir{path: o.TargetDir}, o.Overwrite); err != nil {
		return nil, err
	}
	for _, name := range mapKeys(spcDirs) {
		if err := prepareDir(targetDir{spcDirs[name], planted[name]}, wipe[name]); err != nil {
			return nil, err
		}
	}
	if o.WALDir != "" {
		if err := prepareDir(targetDir{path: o.WALDir}, o.Overwrite); err != nil {
			return nil, err
		}
	}
	space, err := planSpace(b, m, chain, o.TargetDir, spcDirs, o.WALDir)
	if err != nil {
		return nil, err
	}
	err = space.check(b.Name, func(f *fsSpace) {
		log.Warn().Strs("dirs", f.dirs).Int64("free", f.free).Int64("backup_size", space.need).
			Msg("this file system has less free space than the backup's size, and the backup does not record its tablespaces' sizes (PGHoard's, or an older hoard's): the restore fails if its part does not fit")
	})
	if err != nil && !o.SkipSpaceCheck {
		return nil, err
	}
	// syncfs(2) reports a write-back error of the file system that
	// happened since the file it is given was opened, unless another
	// caller saw it first when it happened before: the handles are opened
	// before anything is written, so that every error of the restore's
	// writes is reported at the end, whoever else calls syncfs.
	syncDirs := append([]string{o.TargetDir}, mapValues(spcDirs)...)
	if o.WALDir != "" {
		syncDirs = append(syncDirs, o.WALDir)
	}
	syncs, err := openDirs(syncDirs)
	if err != nil {
		return nil, err
	}
	defer closeAll(syncs)
	if o.WALDir != "" {
		// Where today's restore makes pg_wal for the spool, before any
		// file of the backup: a restore that fails from here on leaves
		// the link, as it would leave that directory.
		if err := o.linkWAL(); err != nil {
			return nil, err
		}
	}
	res := &Result{Backup: b, Manifest: m, Chunks: len(m.Chunks), Tablespaces: spcDirs, WALArchivedThrough: walEnd, WALPartial: tail, WALSystemEnd: sysEnd, WALGap: gap, Accepted: accepted,
		PassedOver: c.passed, WALChecked: len(walFiles)}
	if o.Backup == "" || o.Backup == "latest" {
		res.Unlisted = archive.NewerBackupHistories(stored.BackupHistories, backups, b.SegmentSize())
	}
	incomplete := func(err error) error {
		err = explainFull(err, space)
		if errors.Is(err, ErrPGManifest) {
			err = Altered(err)
		}
		// pg_control is the last of the backup's files written, but the
		// recovery configuration and the final syncs come after it: a failure there must not leave a
		// directory PostgreSQL starts on as if it were complete.
		if rerr := os.Remove(filepath.Join(o.TargetDir, "global", "pg_control")); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("%w; %s is incomplete and its global/pg_control could not be removed (%v): remove it before anyone starts PostgreSQL there, "+
				"then run again with overwrite: %w", err, o.TargetDir, rerr, ErrIncomplete)
		}
		return fmt.Errorf("%w; %s is incomplete and PostgreSQL cannot start on it (run again with overwrite): %w", err, o.TargetDir, ErrIncomplete)
	}
	// The WAL of the backup's consistency range is downloaded and
	// checked while the data directory is written; a segment that fails
	// stops the writing (xctx) and the restore, before pg_control.
	xctx, stopX := context.WithCancelCause(ctx)
	wc := o.startWALCheck(xctx, log, walFiles, b, backups, space, stopX)
	defer func() {
		stopX(nil)
		// Its error is returned where the restore fails or goes on
		// (failed, and the waits below); this only waits for it.
		_ = wc.wait()
	}()
	// failed is incomplete for an error of the writing, which names the
	// WAL check's refusal instead when that is what stopped it.
	failed := func(err error) error {
		stopX(err)
		if werr := wc.wait(); errors.Is(werr, ErrDamagedWAL) {
			err = werr
		}
		return incomplete(err)
	}
	ex, err := newExtractor(o.TargetDir, spcDirs)
	if err != nil {
		return nil, failed(err)
	}
	if o.WALDir != "" {
		if ex.wal, err = os.OpenRoot(o.WALDir); err != nil {
			ex.close()
			return nil, failed(fmt.Errorf("open %s: %w", o.WALDir, err))
		}
	}
	ex.planted = planted
	ex.pgm = pgm
	defer ex.close()
	ex.syncs = syncs
	ex.log = log
	dl := time.Now()
	// A backup retention deletes meanwhile loses its chunks: say so
	// rather than leave a missing chunk to read as damage.
	if b.OneTar() {
		// pg_control is written at the tar's end, after the WAL check
		// when that comes first; incomplete removes it otherwise.
		if err := o.singleTar(xctx, log, src, b, ex, m, spcDirs, res); err != nil {
			return nil, failed(src.DeletedWhileRead(ctx, b, fmt.Errorf("backup %s: %w", b.Name, err)))
		}
		res.Download = time.Since(dl)
		if err := wc.wait(); err != nil {
			return nil, incomplete(err)
		}
	} else {
		if dp != nil {
			err = o.restoreDelta(xctx, log, src, ex, m, dp, res)
		} else if chain != nil {
			err = o.restoreChain(xctx, log, ex, chain, res)
		} else {
			err = o.downloadChunks(xctx, log, src, ex, m, res)
		}
		if err != nil {
			return nil, failed(src.DeletedWhileRead(ctx, b, fmt.Errorf("backup %s: %w", b.Name, err)))
		}
		res.Download = time.Since(dl)
		if err := wc.wait(); err != nil {
			return nil, incomplete(err)
		}
		if err := extractControl(ctx, src, b.Key, ctrl, ex, spcDirs); err != nil {
			return nil, incomplete(src.DeletedWhileRead(ctx, b, fmt.Errorf("backup %s: control object %s%s: %w", b.Name, b.Key, a.InSite(src), err)))
		}
		res.Bytes += ctrl.Size
		if pgm != nil {
			res.PGManifestFiles = len(pgm.files)
		}
	}
	if res.PGMajor, err = PGMajor(o.TargetDir); err != nil {
		return nil, incomplete(err)
	}
	recovery := RecoveryConfig{
		RestoreCommand: rc, RecoveryEndCommand: o.RecoveryEndCommand,
		PrimaryConnInfo: o.PrimaryConnInfo, Target: o.Target, TargetAction: o.TargetAction, Standby: o.Standby,
		ArchiveOff: o.ArchiveOff,
	}
	if err := WriteRecoveryConfig(o.TargetDir, recovery); err != nil {
		return nil, incomplete(err)
	}
	// A configuration ServerSettings cannot read is no failure of the
	// restore: PostgreSQL refuses it, and the command's summary says so.
	if settings, err := ServerSettings(o.TargetDir); err == nil {
		for _, s := range recovery.Carried(settings) {
			log.Warn().Str("setting", s.Name).Str("value", s.Value).Bool("standby", o.Standby).
				Msg("restored configuration keeps the backup's standby setting")
		}
	}
	for _, d := range syncs {
		if err := syncFS(d); err != nil {
			return nil, incomplete(err)
		}
	}
	res.WALSpooled = wc.kept
	res.Elapsed = time.Since(began)
	log.Info().Int64("bytes", res.Bytes).Int64("elapsed_ms", res.Elapsed.Round(time.Millisecond).Milliseconds()).Msg("restore done")
	return res, nil
}

// restoreCommand returns the restore_command to write for backup b, whose
// WAL Run found archived through walEnd (a segment, or the .partial that
// ends the archive, which stands for its segment): o.RestoreCommand, else
// o.WALFetch's command, with walEnd as --archived-through unless o.Standby.
func (o *Options) restoreCommand(b *archive.BackupInfo, walEnd string) (string, error) {
	if o.RestoreCommand != "" || o.WALFetch == nil {
		return o.RestoreCommand, nil
	}
	if o.Standby {
		return o.WALFetch.Command(nil), nil
	}
	last, err := wal.ParseSegmentName(strings.TrimSuffix(walEnd, wal.PartialSuffix), b.SegmentSize())
	if err != nil {
		return "", fmt.Errorf("backup %s: the last archived WAL segment: %w", b.Name, err)
	}
	return o.WALFetch.Command(&archive.ArchivedThrough{Last: last, SegmentSize: b.SegmentSize()}), nil
}

// choice is what choose chose, checked as far as it can be before
// anything is written.
type choice struct {
	b     *archive.BackupInfo
	ctrl  *archive.Control // nil for a backup held in one tar
	chain []*chainLevel    // an incremental backup's, full backup first
	pgm   *pgManifest      // its backup_manifest, when restore compares with it
	dp    *deltaPlan       // a delta backup's plan
	// passed are the backups passed over for b, newest first.
	passed []PassedOver
}

// choose selects the backup to restore among backups (SelectBackup) and
// checks it (check) before anything is written.
//
// When the choice is automatic, a backup refused by those checks because
// it is damaged (damaged: its control object does not decode, is
// malformed, fails its checks or is another backup's, its manifest lists
// fewer chunks than its metadata counts, its backup_manifest is missing,
// its delta manifest fails its checks)
// or because its incremental chain is broken (ErrBrokenChain: a parent
// missing, damaged, or not the backup it was taken against) is passed
// over with a warning naming it and why, as a backup with damaged
// metadata is, and the newest of the others that reaches the target is
// chosen instead; the choice's passed lists them. When none is left, the
// error names each one passed over and wraps their errors. An error that
// says nothing about the backup or a parent of its chain (the store, the
// network, a cancelled restore) is returned as it is: it never makes the restore take an
// older backup. A backup named in o.Backup is refused with its error.
// The automatic choice stays with the database system of the newest
// backup (checkSystemSwitch): after a pg_upgrade into the same site, the
// old cluster's history files would lead it to an old cluster's backup.
func (o *Options) choose(ctx context.Context, log zerolog.Logger, a *archive.Archive, backups []*archive.BackupInfo, damagedMD []*archive.DamagedBackup, t Target) (*choice, error) {
	auto := o.Backup == "" || o.Backup == "latest"
	candidates := Candidates(backups, o.Backup, o.SystemID)
	var skipped, unauthenticated, foreign []string
	var passed []PassedOver
	var refused []error // the errors of the damaged backups passed over
	if auto {
		for _, b := range archive.Foreign(backups, o.SystemID) {
			foreign = append(foreign, b.Name)
		}
		if len(foreign) > 0 {
			log.Warn().Strs("backups", foreign).Str("system_identifier", o.SystemID).Msg("passing over backups of another database system " +
				"(another cluster's, copied into this site from one sharing the key pair, or this cluster's from before a pg_upgrade)")
		}
		for _, b := range archive.Untrusted(backups) {
			unauthenticated = append(unauthenticated, b.Name)
		}
		if len(unauthenticated) > 0 {
			log.Warn().Strs("backups", unauthenticated).Msg("passing over backups whose metadata does not authenticate " +
				"(planted or altered, or written by PGHoard or a hoard that did not sign backups); name one with --basebackup to restore it")
		}
	}
	warnSystems := auto
	var newest *archive.BackupInfo // the newest backup: the system the automatic choice stays with
	if auto && len(candidates) > 0 {
		newest = candidates[len(candidates)-1]
	}
	for {
		b, err := SelectBackup(candidates, o.Backup, t)
		if err == nil && newest != nil {
			err = checkSystemSwitch(ctx, log, a, candidates, newest, b, t)
		}
		if err == nil && warnSystems {
			warnSystems = false
			if ids := archive.Systems(candidates); len(ids) > 1 {
				log.Warn().Strs("system_identifiers", ids).Str("backup", b.Name).Str("system_identifier", b.SystemID).
					Msg("the authenticated backups are of more than one database system (another cluster's copied into this site " +
						"from one sharing the key pair, or this cluster's from before a pg_upgrade): restoring the one chosen; " +
						"check its system identifier, or name a backup with --basebackup")
			}
		}
		if err != nil {
			// With damaged backups passed over, what stops the restore
			// is the damage: their errors, not ErrNoBackup's usage
			// error ("see the backups with hoard list").
			switch {
			case len(refused) > 0 && len(candidates) == 0:
				err = errors.New("no basebackup left that can be restored")
			case len(refused) > 0 && errors.Is(err, archive.ErrNoBackup):
				err = errors.New(err.Error())
			}
			if len(unauthenticated) > 0 {
				err = fmt.Errorf("%w (passed over, their metadata not authenticated: %s)", err, strings.Join(unauthenticated, ", "))
			}
			if len(foreign) > 0 {
				err = fmt.Errorf("%w (passed over, of another database system than %s: %s)", err, o.SystemID, strings.Join(foreign, ", "))
			}
			if len(skipped) > 0 {
				err = fmt.Errorf("%w (passed over, their incremental chains broken: %s)", err, strings.Join(skipped, ", "))
			}
			if len(refused) > 0 {
				format := "%w (passed over, damaged:" + strings.Repeat(" %w;", len(refused))
				err = fmt.Errorf(strings.TrimSuffix(format, ";")+")", append([]any{err}, anys(refused)...)...)
			}
			return nil, err
		}
		c, err := o.check(ctx, log, a, backups, damagedMD, b)
		if err == nil && auto && t.Immediate {
			err = unreadableNewer(b, archive.Untrusted(backups), damagedMD)
		}
		if err == nil {
			c.passed = passed
			return c, nil
		}
		if errors.Is(err, ErrUnreadableNewer) {
			return nil, err
		}
		switch {
		case !auto:
			return nil, err
		case t.Immediate && (errors.Is(err, ErrBrokenChain) || damaged(ctx, err)):
			return nil, immediateRefused(b, err)
		case errors.Is(err, ErrBrokenChain):
			log.Warn().Err(err).Str("backup", b.Name).Msg("skipping incremental backup: its chain is broken; choosing among the older backups")
			skipped = append(skipped, b.Name)
		case damaged(ctx, err):
			log.Warn().Err(err).Str("backup", b.Name).Msg("passing over a damaged backup: it cannot be restored; choosing among the older backups, " +
				"whose recovery replays more WAL")
			refused = append(refused, err)
		default:
			return nil, err
		}
		passed = append(passed, PassedOver{Backup: b, Err: err})
		candidates = slices.DeleteFunc(slices.Clone(candidates), func(x *archive.BackupInfo) bool { return x == b })
	}
}

// immediateRefused is the error of an automatic restore with
// --target-immediate whose chosen backup b is refused with err, damaged
// or its chain broken. Such a backup is not passed over: recovery stops
// as soon as the backup chosen is consistent, so an older backup would
// give an older state, without the commits between the two backups, and
// nothing would fail. The error says how to get either state on purpose.
func immediateRefused(b *archive.BackupInfo, err error) error {
	at := ""
	if b.EndLSN != 0 {
		at = fmt.Sprintf(" %s, where it ends,", b.EndLSN)
	}
	return fmt.Errorf("%w; with --target-immediate the newest backup is not passed over for an older one, whose end is an older state: "+
		"restore an older backup's state with --basebackup, or this backup's state from an older backup with --target-lsn%s "+
		"instead of --target-immediate", err, at)
}

// anys returns errs as arguments of fmt.Errorf.
func anys(errs []error) []any {
	out := make([]any, len(errs))
	for i, err := range errs {
		out[i] = err
	}
	return out
}

// check reads backup b's control object and, for an incremental backup,
// its chain (readChain), and checks them before anything is written: the
// control object's manifest (validated, at most archive.MaxManifestSize
// bytes, the only member held in memory) says what to download, its other
// members are checked as the extraction will check them, the chunks it
// lists against the count b's metadata records (checkChunkCount), its
// backup_manifest is read in the same pass when b has one (pgmPass), and a delta
// backup's delta manifest is planned (planDelta). A backup held
// in one tar has no control object (ctrl nil), nor one of a format or a
// version Run refuses, naming it.
func (o *Options) check(ctx context.Context, log zerolog.Logger, a *archive.Archive, backups []*archive.BackupInfo, damagedMD []*archive.DamagedBackup, b *archive.BackupInfo) (*choice, error) {
	c := &choice{b: b}
	if b.OneTar() || checkFormat(b) != nil || checkVersion(b) != nil {
		return c, nil
	}
	src := a.ArchiveOf(b)
	// backup_manifest is read in the pass that reads the control object:
	// every backup of an incremental chain holds one; hoard's delta
	// backups (pghoard-delta-v2 with hoard-pg-manifest) carry one written
	// from the bytes each file was stored with, delta objects, embedded
	// files and bundles alike; PGHoard's carry none.
	chain := func(m *archive.Manifest) bool {
		return b.Parent != "" || (m.Hoard != nil && m.Hoard.Incremental != nil)
	}
	pass := &pgmPass{want: func(m *archive.Manifest) bool {
		return chain(m) || (b.Format == archive.FormatBBv2 || b.Format == archive.FormatDeltaV2) && b.PGManifest
	}}
	var err error
	if c.ctrl, err = readControl(ctx, src, b, pass); err != nil {
		return nil, fmt.Errorf("backup %s%s: %w", b.Name, a.InSite(src), err)
	}
	if chain(c.ctrl.Manifest) {
		if c.chain, err = readChain(ctx, a, backups, damagedMD, b, c.ctrl, pass); err != nil {
			return nil, err
		}
	}
	if err := checkChunkCount(log, b, c.ctrl.Manifest); err != nil {
		return nil, err
	}
	for _, lv := range c.chain[:max(len(c.chain)-1, 0)] {
		if err := checkChunkCount(log, lv.info, lv.ctrl.Manifest); err != nil {
			return nil, fmt.Errorf("backup %s is an incremental of backup %s: %w", b.Name, lv.info.Name, err)
		}
	}
	// readChain took those of an incremental chain, one for each of its
	// backups.
	if c.chain == nil && (b.Format == archive.FormatBBv2 || b.Format == archive.FormatDeltaV2) && b.PGManifest {
		if c.pgm, err = pass.result(b, c.ctrl); err != nil {
			return nil, fmt.Errorf("backup %s: %w", b.Name, err)
		}
	}
	if isDelta(b.Format) {
		if c.dp, err = planDelta(src, c.ctrl.Manifest); err != nil {
			return nil, fmt.Errorf("backup %s (manifest in %s): %w", b.Name, b.Key, err)
		}
	}
	return c, nil
}

// ErrDamagedBackup is returned (wrapped) when the backup asked for by name
// is listed but its metadata cannot be read.
var ErrDamagedBackup = errors.New("damaged backup")

// checkDamaged refuses a damaged backup asked for by name; when the backup
// is chosen automatically it logs each damaged one, which selection never
// sees.
func checkDamaged(log zerolog.Logger, damaged []*archive.DamagedBackup, name string) error {
	for _, d := range damaged {
		if name != "" && name != "latest" && archive.BackupName(name) == d.Name {
			return fmt.Errorf("backup %s is damaged and cannot be restored (choose another with hoard list): %w: %w", d.Name, ErrDamagedBackup, d.Err)
		}
		log.Warn().Err(d.Err).Str("backup", d.Name).Str("key", d.Key).Msg("skipping damaged backup: its metadata cannot be read")
	}
	return nil
}

// checkFormat refuses the backup formats Run cannot restore, naming them.
func checkFormat(b *archive.BackupInfo) error {
	what := ""
	switch b.Format {
	case archive.FormatBBv1, archive.FormatBBv2, archive.FormatDeltaV1, archive.FormatDeltaV2, "": // "": one pg_basebackup tar, PGHoard's basic or pipe mode
		return nil
	default:
		what = fmt.Sprintf("format %q", b.Format)
	}
	return fmt.Errorf("backup %s is %s; hoard restores %s, %s, PGHoard's delta backups and single pg_basebackup tars only: %w",
		b.Name, what, archive.FormatBBv2, archive.FormatBBv1, ErrUnsupportedFormat)
}

// checkVersion refuses a backup of a PostgreSQL older than 13.
func checkVersion(b *archive.BackupInfo) error {
	if b.PGVersion != 0 && b.PGVersion < 130000 {
		return fmt.Errorf("backup %s is of PostgreSQL %d; hoard restores 13 and later: %w", b.Name, b.PGVersion/10000, ErrUnsupportedVersion)
	}
	return nil
}

func isDelta(format string) bool {
	return format == archive.FormatDeltaV1 || format == archive.FormatDeltaV2
}

func (o *Options) validate() error {
	if o.Archive == nil || o.Archive.Store == nil || o.Archive.Codec == nil {
		return errors.New("restore: no archive")
	}
	if o.TargetDir == "" {
		return errors.New("restore: no target directory")
	}
	abs, err := filepath.Abs(o.TargetDir)
	if err != nil {
		return fmt.Errorf("resolve target directory: %w", err)
	}
	o.TargetDir = abs
	if err := o.validateWALDir(); err != nil {
		return err
	}
	if err := o.Target.Validate(); err != nil {
		return err
	}
	if err := validateAction(o.TargetAction); err != nil {
		return err
	}
	if o.Target.IsZero() && (o.TargetAction == ActionPause || o.TargetAction == ActionShutdown) {
		// PostgreSQL ignores recovery_target_action without a target and
		// promotes at the end of the archived WAL.
		return fmt.Errorf("%w: target action %s needs a recovery target: without one PostgreSQL promotes at the end of the archived WAL; "+
			"to keep the cluster in recovery there, restore a standby (then promote it with pg_ctl promote)", ErrBadTarget, o.TargetAction)
	}
	rc := RecoveryConfig{RestoreCommand: o.RestoreCommand, RecoveryEndCommand: o.RecoveryEndCommand, PrimaryConnInfo: o.PrimaryConnInfo}
	if rc.RestoreCommand == "" && o.WALFetch != nil {
		rc.RestoreCommand = o.WALFetch.Command(nil)
	}
	if err := rc.checkValues(); err != nil {
		return err
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = time.Second
	}
	return nil
}

// tablespaceDirs decides where each of the backup's tablespaces goes, and
// which of those directories Overwrite may empty: the ones the caller named
// (mapped or under TablespaceBaseDir), never a tablespace's original path,
// which on the backed-up host belongs to the running cluster. planted are
// the tablespaces restored to that path, the manifest's (see targetDir).
func (o *Options) tablespaceDirs(m *archive.Manifest) (dirs map[string]string, wipe, planted map[string]bool, err error) {
	for name := range o.TablespaceDirs {
		if _, ok := m.Tablespaces[name]; !ok {
			return nil, nil, nil, fmt.Errorf("tablespace %q is not in the backup (it has %v)", name, mapKeys(m.Tablespaces))
		}
	}
	dirs, wipe, planted = map[string]string{}, map[string]bool{}, map[string]bool{}
	owner := map[string]string{}
	for _, name := range mapKeys(m.Tablespaces) {
		ts := m.Tablespaces[name]
		d, chosen := ts.Path, true
		switch {
		case o.TablespaceDirs[name] != "":
			d = o.TablespaceDirs[name]
		case o.TablespaceBaseDir != "":
			d = filepath.Join(o.TablespaceBaseDir, strconv.FormatUint(uint64(ts.OID), 10))
		default:
			chosen = false
		}
		if d == "" {
			return nil, nil, nil, fmt.Errorf("tablespace %s has no path in the backup; map it with a tablespace directory", archive.Quoted(name))
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("resolve tablespace directory %s: %w", targetDir{d, !chosen}, err)
		}
		if within(abs, o.TargetDir) || within(o.TargetDir, abs) {
			return nil, nil, nil, fmt.Errorf("tablespace %s directory %s overlaps the target directory %s", archive.Quoted(name), targetDir{abs, !chosen}, o.TargetDir)
		}
		for other, od := range owner {
			if within(abs, od) || within(od, abs) {
				return nil, nil, nil, fmt.Errorf("tablespaces %s and %s would share directory %s", archive.Quoted(other), archive.Quoted(name), targetDir{abs, !chosen})
			}
		}
		owner[name] = abs
		dirs[name] = abs
		wipe[name] = chosen && o.Overwrite
		planted[name] = !chosen
	}
	return dirs, wipe, planted, nil
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}

// extractControl reads the control object key again, once every chunk is
// in place, and writes its members (backup_label, backup_manifest, the
// excluded directories), then the pg_tblspc/<oid> links to the tablespace
// directories dirs, then pg_control (writePGControl). The object must decode to the very
// bytes ReadControl checked before the chunks (same size and SHA-256):
// pg_control is held in memory until that is known, so a control object
// changed in between leaves a directory PostgreSQL refuses to start on.
//
// A tablespace_map is kept as is when no tablespace moved; otherwise it is
// rewritten with the new paths, because at startup PostgreSQL replaces the
// pg_tblspc links with the map's paths (read_tablespace_map in
// xlogrecovery.c).
func extractControl(ctx context.Context, src *archive.Archive, key string, ctrl *archive.Control, ex *extractor, dirs map[string]string) error {
	m := ctrl.Manifest
	rc, _, err := src.Codec.Open(ctx, src.Store, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	sum := sha256.New()
	sized := &sizedReader{r: rc, max: ctrl.Size, what: "decoded bytes, more than when it was first read"}
	r := io.TeeReader(sized, sum)
	tr := tar.NewReader(r)
	buf := make([]byte, 64<<10)
	rewriteMap := moved(m, dirs)
	var pgControl []byte
	for h, err := range Members(tr) {
		if err != nil {
			return err
		}
		if err := checkControlMember(m, h); err != nil {
			return err
		}
		switch path.Clean(h.Name) {
		case archive.ControlPGControl:
			if pgControl != nil {
				return fmt.Errorf("member %s twice: %w", archive.Quoted(h.Name), ErrUnsafeMember)
			}
			if pgControl, err = io.ReadAll(io.LimitReader(tr, maxControlMember)); err != nil {
				return fmt.Errorf("member %s: %w", archive.Quoted(h.Name), err)
			}
		case archive.ControlBackupLabel:
			if !ex.chain {
				if err := ex.member(tr, h, true, buf, nil); err != nil {
					return err
				}
				break
			}
			label, err := io.ReadAll(io.LimitReader(tr, maxControlMember))
			if err != nil {
				return fmt.Errorf("member %s: %w", archive.Quoted(h.Name), err)
			}
			if pm := ex.pgm; pm != nil {
				// As backed up, before its INCREMENTAL FROM lines go.
				if err := pm.checkData("backup_label", label); err != nil {
					return err
				}
			}
			if err := ex.writeNew("backup_label", stripIncrementalLabel(label), 0o600); err != nil {
				return err
			}
		case archive.ControlPGManifest:
			if !ex.chain {
				if err := ex.member(tr, h, true, buf, nil); err != nil {
					return err
				}
			}
		case archive.ControlTablespaceMap:
			if !rewriteMap {
				if err := ex.member(tr, h, true, buf, nil); err != nil {
					return err
				}
			}
		default:
			if err := ex.member(tr, h, true, buf, nil); err != nil {
				return err
			}
		}
	}
	// The padding after the end-of-archive blocks, and the codec's checks.
	if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	var got [sha256.Size]byte
	sum.Sum(got[:0])
	if sized.n != ctrl.Size || got != ctrl.Sum {
		return fmt.Errorf("it changed since it was first read (%d bytes, then %d): %w", ctrl.Size, sized.n, ErrSizeMismatch)
	}
	if pgControl == nil {
		return fmt.Errorf("it holds no %s", archive.ControlPGControl)
	}
	if pm := ex.pgm; pm != nil {
		// pg_control as backed up, before writePGControl changes it;
		// tablespace_map is written anew when a tablespace moved.
		if err := pm.checkData("global/pg_control", pgControl); err != nil {
			return err
		}
		if rewriteMap {
			pm.skip("tablespace_map")
		}
		if err := pm.missing(); err != nil {
			return err
		}
	}
	if rewriteMap {
		if err := ex.writeNew("tablespace_map", tablespaceMap(m, dirs), 0o600); err != nil {
			return err
		}
	}
	if err := ex.linkTablespaces(m, dirs); err != nil {
		return err
	}
	return ex.writePGControl(pgControl)
}

// linkTablespaces makes the pg_tblspc/<oid> link of each tablespace of m to
// its directory in dirs.
func (e *extractor) linkTablespaces(m *archive.Manifest, dirs map[string]string) error {
	root := e.roots[""]
	if err := root.MkdirAll("pg_tblspc", 0o700); err != nil {
		return fmt.Errorf("create pg_tblspc: %w", err)
	}
	for _, name := range mapKeys(m.Tablespaces) {
		link := "pg_tblspc/" + strconv.FormatUint(uint64(m.Tablespaces[name].OID), 10)
		if err := root.Symlink(dirs[name], link); err != nil {
			return fmt.Errorf("link tablespace %s: %w", name, err)
		}
	}
	return nil
}

func moved(m *archive.Manifest, dirs map[string]string) bool {
	for name, ts := range m.Tablespaces {
		if filepath.Clean(ts.Path) != dirs[name] {
			return true
		}
	}
	return false
}

// tablespaceMap renders "<oid> <path>" lines, escaping \, CR and LF in
// paths with a backslash as PostgreSQL's do_pg_backup_start does.
func tablespaceMap(m *archive.Manifest, dirs map[string]string) []byte {
	var b strings.Builder
	for _, spc := range mapKeys(m.Tablespaces) {
		var esc strings.Builder
		for _, c := range dirs[spc] {
			if c == '\\' || c == '\n' || c == '\r' {
				esc.WriteByte('\\')
			}
			esc.WriteRune(c)
		}
		fmt.Fprintf(&b, "%d %s\n", m.Tablespaces[spc].OID, esc.String())
	}
	return []byte(b.String())
}

// openDirs opens each of dirs, for syncFS.
func openDirs(dirs []string) ([]*os.File, error) {
	var files []*os.File
	for _, d := range dirs {
		f, err := os.Open(d)
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("open %s: %w", d, err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// syncFS flushes the file system holding dir, an open directory
// (syncfs(2)): cheaper than an fsync per file after writing thousands of
// them.
var syncFS = func(dir *os.File) error {
	if err := unix.Syncfs(int(dir.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir.Name(), err)
	}
	return nil
}

// downloadChunks restores every chunk, read from src (the archive holding
// the backup), on a pool of o.Parallel workers. The
// first failure cancels the rest. o.Progress is called from one goroutine
// every o.ProgressInterval, and once more when all chunks are done.
func (o *Options) downloadChunks(ctx context.Context, log zerolog.Logger, src *archive.Archive, ex *extractor, m *archive.Manifest, res *Result) error {
	p := &progress{Progress: Progress{Chunks: len(m.Chunks)}}
	for _, c := range m.Chunks {
		p.Bytes += c.InputSize
	}
	order := largestFirst(m.Chunks)
	err := o.runJobs(ctx, len(order), p, func(ctx context.Context, i int, buf []byte) error {
		_, err := o.chunk(ctx, log, src, ex, m.Chunks[order[i]], buf, p)
		return err
	})
	if err != nil {
		return err
	}
	res.Bytes += p.bytesDone.Load()
	for _, c := range m.Chunks {
		res.StoredBytes += c.ResultSize
	}
	return nil
}

// largestFirst returns the indexes of chunks, the largest (input_size)
// first. Chunks differ in size (a file larger than the chunk size is a
// chunk of its own): begun last, a large one would be restored alone while
// the other workers have nothing left to do.
func largestFirst(chunks []archive.ManifestChunk) []int {
	order := make([]int, len(chunks))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(chunks[b].InputSize, chunks[a].InputSize) })
	return order
}

// runJobs runs do for each of the jobs 0 to n-1 on a pool of o.Parallel
// workers (fewer for fewer jobs), each with its own copy buffer, counts
// each job done in p and reports p's progress meanwhile (see
// reportProgress). The first failure cancels the rest and is returned.
func (o *Options) runJobs(ctx context.Context, n int, p *progress, do func(ctx context.Context, i int, buf []byte) error) error {
	jobs := make(chan int)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(jobs)
		for i := range n {
			select {
			case jobs <- i:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	for range min(o.Parallel, max(n, 1)) {
		g.Go(func() error {
			buf := make([]byte, copyBufferSize)
			for i := range jobs {
				if err := do(gctx, i, buf); err != nil {
					return err
				}
				p.chunksDone.Add(1)
			}
			return nil
		})
	}
	stop := o.reportProgress(p)
	err := g.Wait()
	stop(err == nil)
	return err
}

// progress is the running state behind Progress reports.
type progress struct {
	Progress
	chunksDone, bytesDone atomic.Int64
}

func (p *progress) snapshot() Progress {
	s := p.Progress
	s.ChunksDone = int(p.chunksDone.Load())
	s.BytesDone = p.bytesDone.Load()
	return s
}

// reportProgress calls o.Progress every o.ProgressInterval until the
// returned func is called; that call waits for the reporter and, when
// final is set, reports once more.
func (o *Options) reportProgress(p *progress) func(final bool) {
	if o.Progress == nil {
		return func(bool) {}
	}
	// Not the restore's ctx: progress is reported until the restore
	// returns, also while it ends after a cancel.
	stop := every(context.Background(), o.ProgressInterval, func(time.Time) bool {
		o.Progress(p.snapshot())
		return true
	})
	return func(final bool) {
		stop()
		if final {
			o.Progress(p.snapshot())
		}
	}
}

// ErrMissingChunks is returned (wrapped) for a backup whose control
// object's manifest lists fewer chunks than its metadata counts.
var ErrMissingChunks = errors.New("manifest lists fewer chunks than the backup's metadata counts")

// checkChunkCount compares the chunks b's manifest m lists with the count
// b's metadata records (hoard-chunk-count), by verify's rule (verify
// checker.chunkCount): hoard writes both from one list and signs the
// count in a site with keys. Restore reads only the chunks the manifest
// lists: listing fewer, it would restore a cluster without the others'
// files, which PostgreSQL may start on all the same, so b is refused
// (ErrMissingChunks). Listing more, every listed chunk is still checked
// and restored, and nothing is left out: only what the metadata says of
// b is wrong, which is logged. Not compared where the metadata records no
// count (PGHoard's backups, a backup held in one tar) or does not
// authenticate: anyone who can write the bucket could then set a count
// that refuses a sound backup.
func checkChunkCount(log zerolog.Logger, b *archive.BackupInfo, m *archive.Manifest) error {
	n := len(m.Chunks)
	switch {
	case b.ChunkCount <= 0 || b.Auth == archive.AuthInvalid || n == b.ChunkCount:
		return nil
	case n < b.ChunkCount:
		return fmt.Errorf("backup %s: its control object %s lists %d of the %d chunks its metadata counts: "+
			"restoring it would leave out the files of the others (restore another backup with --basebackup; hoard verify names the backups that restore): %w",
			b.Name, b.Key, n, b.ChunkCount, ErrMissingChunks)
	default:
		log.Warn().Str("backup", b.Name).Str("key", b.Key).Int("chunks", n).Int("chunk_count", b.ChunkCount).
			Msg("the control object lists more chunks than the backup's metadata counts: restoring every chunk listed")
		return nil
	}
}
