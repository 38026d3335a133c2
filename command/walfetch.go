package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// Exit codes of wal-fetch, read by PostgreSQL: a restore_command exit
// status above 125 makes PostgreSQL stop recovery with an error (see
// RestoreArchivedFile in src/backend/access/transam/xlogarchive.c), while
// any other failure means "not archived" and ends recovery there.
const (
	exitWALMissing = 1   // the file is not in the archive
	exitWALFatal   = 255 // the archive could not be read: stop recovery
)

// prefetchWorkerLog is the worker's log file in the spool.
const prefetchWorkerLog = "worker.log"

func walFetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "wal-fetch",
		Usage:     "restore one WAL file (PostgreSQL's restore_command)",
		ArgsUsage: "NAME DEST",
		Description: `Downloads, decrypts and decompresses the WAL file NAME (PostgreSQL's %f) to DEST (%p),
checks it (a segment's page header must match its name; the recorded hash must match)
and renames it into place, so DEST never exists half-written. Older sites named in the
site's moved_from are searched too; then an error about a copy that fails these checks or
cannot be read ends "(object KEY of site S)", naming the site that holds it, since the
sites' keys can be the same in different storages.

A segment that is not archived is answered with its .partial copy (stored by the daemon
with wal_partial_upload_interval, or at a timeline switch), padded with zeros to the
segment size, when that copy is the end of the archive: no segment or .partial after it
on its timeline, and no later timeline (but one whose history file is another database
system's that wal-fetch treats as absent to the data directory's cluster: after pg_upgrade
into the same site, the old cluster's later timeline). Recovery then replays up to its
last record.
So is one whose .partial ends the WAL of the data directory's database system, where the
next segment or .partial stored after it on its timeline is another system's (both read
whole, their checks passed), no segment or .partial stored after it (on its timeline or a
later one) is of that system, and no later timeline exists: after pg_upgrade into the same
prefix, the old cluster's last segment, which the upgraded cluster's WAL follows.

After delivering a segment, wal-fetch starts a background worker (unless one runs) that
downloads the next restore_prefetch segments into the hoard-prefetch/ directory beside
DEST (pg_wal/hoard-prefetch); later calls move them into place without a download, each
once read whole and found to hold the bytes its download checked (their CRC-32C and size,
recorded beside it as hoard-prefetch/SEGMENT.crc32c). One the disk changed since (a flipped
bit, a lost write, a file cut short: PostgreSQL would take its first damaged record for the
end of the WAL and end recovery there) is removed and downloaded again, with a warning
naming the segment, the spooled file and the size and CRC-32C read and recorded: check
that disk. (One spooled by a hoard older than the checksums, without SEGMENT.crc32c, is
downloaded again with an info line.)
restore_prefetch = 0 turns this off. The spool takes at most half of what pg_wal's file
system has free without it (it keeps at least as much free as it holds), and nothing where
that is less than a segment: filled to the last byte, that file system (often the data
directory's too) would fail what recovery writes there. A wal-fetch of another site,
storage, prefix or keys takes nothing from the spool (hoard-prefetch/identity says which
archive its segments came from): it removes them and downloads its own. The worker stops before a segment named by
--accept-truncated, which wal-fetch downloads itself with its warning, rather than logging
its refusal. The worker logs to hoard-prefetch/worker.log. It
runs in its own session, in /, and stops (removing what it was downloading) when it is
ahead, when the archive ends, and within a second once the server it fetches for stops
(the data directory's postmaster.pid goes, or names another process) or its spool is
no longer at its path (the data directory removed, or restored anew there).
When pg_wal's file system is full, wal-fetch removes the spooled segments and tries once more.

A segment whose first page names another database system than the data directory above
DEST (its global/pg_control) is refused: another cluster's WAL stored under this name,
which PostgreSQL would take as the end of the WAL. A pg_control that cannot be read (a
failing disk) stops the fetch; where there is none (run by hand), nothing is checked.
pg_control is read once per call, whole, as PostgreSQL's own tools read it: again, 10 ms
later, while its CRC fails (a read while the server rewrites it), until the same bad CRC
comes twice or up to 10 times. The system identifier, its latest checkpoint's timeline and
REDO location (below) and its WAL segment size (for --archived-through) all come from that
one read, so from one version of the file. One that still fails its CRC, or is cut short of
it, is damaged and stops the fetch too. A
history file that hoard did not store under its name is refused too (docs/security.md),
and so is one bound to another database system (in a site without keys: whose metadata
claims another, the system its writer recorded), unless its timeline is at most the one
pg_control's latest checkpoint is on: that one (left by the site's old cluster, where one of
a new system identifier was put on its timeline) is answered as not archived (exit 1) with a
warning naming it and both systems; PostgreSQL then assumes the timeline has no parents.
One above that timeline is answered so too, with a warning, where the archive holds no WAL
of the data directory's system on its timeline or a later one (a segment or .partial whose
first page names it, from the segment of pg_control's REDO location or backup_label's
start on: the WAL before it is not read): after pg_upgrade (a new system identifier, timeline 1) of a cluster
whose timeline was above 1, the old cluster's history files, which PostgreSQL then passes
over (set a new backup_sites.<site>.prefix for the upgraded cluster: hoard check fails on
them). Where the archive holds such WAL, the file stands where the system's own history
file was: it exits 255 naming that WAL and the likely cause.

A complete segment whose WAL stops before its end at a record that is not valid, with only
zeros after it and no WAL switch, is refused as truncated: an earlier copy (a .partial) put
under the complete segment's name, which PostgreSQL would take as the end of the WAL
(docs/security.md). Not where a later timeline's history file in the archive (checked as
for recovery: in a site with keys, stored by hoard for the segment's system) records the
segment's timeline ending exactly where its WAL ends: the last segment of a timeline that
ended, which a standby with archive_mode = always archives under its complete name.
Other legitimate archives hold such segments too (that standby's segment without the
history file; PGHoard's experimental walreceiver mode, which stores an unfinished segment
padded with zeros under its complete name). --accept-truncated SEGMENT
(repeatable) is the operator's choice to deliver SEGMENT all the same: recovery then ends
where its WAL does, and transactions committed after that point are not restored. It is
logged as a warning naming the segment and that point (wal_end). It accepts that refusal
alone: a segment whose hash, envelope, page header, timeline or system is refused stays
refused. The refusal names the point and the flag. SEGMENT@LSN (as the refusal writes it,
and hoard restore too) accepts only a copy whose WAL ends at LSN: another copy of the
segment, cut earlier and put in its place by someone who can write the storage, is refused
(exit 255) rather than end recovery before LSN. SEGMENT alone accepts any end.

hoard restore adds --archived-through SEGMENT (and --wal-segment-size) to the
restore_command it writes: the last segment of the unbroken run of WAL it found archived
before it wrote anything. A segment recovery asks for that lies on the path of timelines
leading to SEGMENT, at or before it, and of which no copy recovery could read is stored
any more (deleted, lost, or withheld by someone who can write the storage) then exits
255 instead of 1, naming the segment: PostgreSQL stops recovery with an error instead of
promoting early without the WAL after it. Other files (history files, segments after
SEGMENT, other timelines, a newer timeline's copy missing while an older one's is
stored) are answered as without the flag, and only while the data directory above DEST
holds recovery.signal and no standby.signal: a standby, or the server once it has
promoted, gets 1 as before. hoard restore --standby and --restore-command leave it out.
SEGMENT is read at --wal-segment-size, else at the segment size the data directory's
global/pg_control above DEST records (run by hand): where neither says it, or the two
differ, wal-fetch refuses (exit 255) rather than read SEGMENT at a guessed size
(pg_control's size comes from the one read above). With --wal-segment-size, a pg_control that
cannot be read (an I/O error, cut short) or still fails its CRC is not compared, with a
warning, and the flag's size stands; one read whole, its CRC matching, that records
another size is refused. Without the flag, wal-fetch refuses (exit 255) rather than read
the size from such a pg_control. (The checks above still stop the fetch where pg_control
cannot be read, is cut short or fails its CRC: its timeline is needed.)

In postgresql.conf (or recovery.conf before PostgreSQL 12):

   restore_command = 'hoard wal-fetch --config /etc/hoard.json %f %p'

SIGNALS:
   At a shutdown PostgreSQL's postmaster signals the startup process's process group,
   wal-fetch included: SIGTERM (fast shutdown), SIGQUIT (immediate shutdown, or after a
   crash), SIGINT, and SIGABRT (send_abort_for_crash, send_abort_for_kill). On each of
   them wal-fetch stops its download, removes its temporary file (DEST is never left
   half-written), starts no prefetch worker and exits 128 + the signal's number, as if
   the signal had killed it, even when the file was already in place: 143 for SIGTERM,
   which PostgreSQL takes as its shutdown; 131 for SIGQUIT, 130 for SIGINT and 134 for
   SIGABRT, with which it stops recovery. Never 1 or 2 ("not archived"), which would end
   recovery early: Go's own answer to SIGQUIT and SIGABRT is exit 2. If the download has
   not stopped 10 s after the signal, wal-fetch exits at once; SIGKILL too leaves only a
   temporary file beside DEST (.hoard-fetch-NAME-*), which the next wal-fetch removes
   before its own download: each download holds a lock (flock) on its temporary file,
   which the kernel drops when the process dies, and a wal-fetch removes only those
   whose lock it can take, never a running download's (the prefetch worker's, or a call
   by hand). Where pg_wal's file system has no locks, it removes those an hour old. The
   prefetch worker runs in a session of its own: these signals do not reach it.
   A wal-fetch told to stop, or whose server is gone during its download, never puts its
   file in place: it removes its temporary file and exits (255 for an orphan). Gone means
   that a process between wal-fetch and the postmaster that DEST's data directory's
   postmaster.pid names as wal-fetch starts (its parent, sh, a wrapper, the startup
   process) exited or changed parent; without postmaster.pid, that its parent exited. A
   server started again runs a new wal-fetch into the same DEST: the orphan's file, put
   over the new one's before PostgreSQL read it, would be read as the segment asked for,
   and its wrong page address taken for the end of the archive.

EXIT STATUS:
   0    the file is in place, fsynced, and the rename that put it there too (its directory
        fsynced)
   1    the file is not in the archive; nothing is printed (PostgreSQL asks for files
        that may not exist: the next timeline's history, the segment after the last)
   255  anything else: storage unreachable, a damaged or tampered object (in local storage
        also a FIFO, a socket or a directory under the file's name: never 1, which would
        have PostgreSQL take a damaged timeline history file for an absent one), a missing key,
        a bad page header, an object that decodes to more than its segment size (or a
        history file to more than 16 MiB), another system's segment, a moved history file, a segment
        --archived-through says was archived and that is
        gone now, a full or read-only pg_wal (nothing is left there; on a full one the
        error says how many bytes its file system has free), a pg_wal whose
        file or directory fsync fails (the file may be in place), bad arguments or
        configuration: any mistake in how it was called (a bad flag or value wherever it
        is written, a bad HOARD_* variable, a configuration that is missing, unreadable
        or invalid, an unknown site, -h, --help or --version given with NAME and DEST,
        which shows the help and fetches nothing). PostgreSQL then stops
        recovery with an error instead of ending it early with WAL missing.
   130, 131, 134, 143  stopped by SIGINT, SIGQUIT, SIGABRT or SIGTERM (see SIGNALS)
   killed by SIGABRT  a bug in hoard (a panic, printed with every goroutine's stack):
        PostgreSQL stops recovery; Go's own exit 2 would read "not archived"`,
		Flags: append(siteFlags(),
			&cli.StringFlag{Name: "archived-through", Usage: "the restore found every segment up to `SEGMENT` archived: one of them missing now stops recovery (exit 255)"},
			&cli.Uint64Flag{Name: "wal-segment-size", Usage: "the cluster's WAL segment size in `BYTES`, for --archived-through",
				DefaultText: "the one global/pg_control above DEST records"},
			&cli.StringSliceFlag{Name: "accept-truncated", Usage: "deliver segment `SEGMENT` although it is refused as truncated (its WAL stops before its end, zeros after, no WAL switch): recovery ends where its WAL does (repeatable)"},
			&cli.StringFlag{Name: "prefetch-worker", Usage: "run as the prefetch worker of spool `DIR` (started by wal-fetch itself)", Hidden: true},
		),
		Before: inheritSiteFlags,
		Action: runWALFetch,
	}
}

func runWALFetch(c *cli.Context) error {
	if dir := c.String("prefetch-worker"); dir != "" {
		return runPrefetchWorker(c, dir)
	}
	if c.NArg() != 2 {
		return &exitError{code: exitWALFatal, err: usagef("restore_command = 'hoard wal-fetch --config FILE %f %p'",
			"want NAME and DEST, got %d arguments", c.NArg())}
	}
	name, dest := c.Args().Get(0), c.Args().Get(1)
	// %p is pg_wal/RECOVERYXLOG, relative to the data directory, whose
	// global/pg_control names the cluster. It is read once: the startup
	// process rewrites it between reads, and every answer below (segment
	// size, system identifier, timeline, REDO location) must come from
	// the same version of it. Its error is handled where each answer is
	// needed, as each needs it.
	pgdata := filepath.Dir(filepath.Dir(dest))
	// The process that runs restore_command: once it is gone, the file
	// is not put in place (archive.FetchOptions.Asker).
	asker := archive.NewAsker(pgdata)
	ctl, ctlErr := archive.ReadClusterControl(pgdata)
	checked, err := archivedThrough(c, pgdata, ctl, ctlErr)
	if err != nil {
		return &exitError{code: exitWALFatal, err: err}
	}
	accept, err := truncatedSegments(c, "accept-truncated")
	if err != nil {
		return &exitError{code: exitWALFatal, err: err}
	}
	env, closeAll, err := openSiteAll(c)
	if err != nil {
		return &exitError{code: exitWALFatal, err: err}
	}
	defer closeAll()
	o := archive.FetchOptions{Asker: asker, AcceptTruncated: accept, Truncated: func(e *archive.TruncatedSegmentError) {
		env.log.Warn().Str(logSegment, name).Str("wal_end", e.End.String()).
			Msg("accepted a segment refused as truncated, as --accept-truncated asks: recovery ends where its wal ends, and transactions committed after that are not restored")
	}, StandIn: func(key string) {
		env.log.Info().Str(logSegment, name).Str("key", key).Msg("segment not archived: delivered its .partial copy, the end of the archive")
	}, SystemEnd: func(e *archive.SystemEnd) {
		env.log.Warn().Str(logSegment, name).Str("key", e.Partial.Key).Str("why", e.String()).
			Msg("segment not archived: delivered its .partial copy, the end of this cluster's wal; another system's wal follows it")
	}}
	// pg_control names the cluster. Run by hand elsewhere (no
	// pg_control): not checked. One that cannot be read (a failing disk)
	// does not turn the check off: recovery stops, as for a segment that
	// cannot be checked. Its timeline says which history files of another
	// system are treated as absent, not refused
	// (archive.IgnoreUpgradedHistory): a pg_control whose CRC fails read
	// after read (damaged) or is cut short stops the fetch too, rather
	// than give a wrong one.
	switch {
	case ctlErr == nil:
		o.SystemID, o.Timeline = ctl.SystemID, ctl.Timeline
		// Only where it replays from bounds the search for its own WAL
		// there; not known (a backup_label without its start), the
		// search has no bound.
		if o.ReplayStart, err = ctl.ReplayStart(pgdata); err != nil {
			env.log.Debug().Str(logSegment, name).Err(err).Msg("where recovery starts is not known: the search for the cluster's own WAL has no bound")
		}
	case !errors.Is(ctlErr, fs.ErrNotExist):
		return &exitError{code: exitWALFatal, err: fmt.Errorf("fetch %s: the system identifier, which the WAL must name, and the timeline of the data directory: %w", name, ctlErr)}
	}
	// The spool is passed for a history file too: where pg_wal is full,
	// FetchWAL removes the segments spooled ahead for any file.
	prefetch := env.cfg.RestorePrefetch > 0
	if prefetch {
		// Absolute, for the worker's log and arguments.
		if abs, err := filepath.Abs(archive.SpoolDir(dest)); err == nil {
			o.Spool = abs
		} else {
			prefetch = false
		}
	}
	prefetch = prefetch && wal.IsSegmentName(name)
	err = env.archive.FetchWAL(c.Context, name, dest, o)
	if errors.Is(err, storage.ErrNotFound) && checked != nil {
		if lerr := env.archive.CheckLost(c.Context, name, pgdata, ctl, *checked); lerr != nil {
			return &exitError{code: exitWALFatal, err: lerr}
		}
	}
	if ig, ok := errors.AsType[*archive.IgnoredHistoryError](err); ok {
		env.log.Warn().Str(logSegment, name).Msg(ig.Error())
	}
	if errors.Is(err, storage.ErrNotFound) {
		env.log.Debug().Str(logSegment, name).Msg("not in the archive")
		return &exitError{code: exitWALMissing}
	}
	if t, ok := errors.AsType[*archive.TruncatedSegmentError](err); ok {
		return &exitError{code: exitWALFatal, err: usagef(t.AcceptHint(name), "%v", err)}
	}
	if err != nil {
		return &exitError{code: exitWALFatal, err: err}
	}
	env.log.Info().Str(logSegment, name).Msg("wal file restored")
	// Told to stop (PostgreSQL shuts down), it starts no worker.
	if prefetch && c.Context.Err() == nil && !archive.PrefetchRunning(o.Spool) {
		if err := startPrefetchWorker(c, o.Spool); err != nil {
			// The file is delivered; without a worker the next ones are
			// simply downloaded on demand.
			env.log.Warn().Err(err).Str("spool", o.Spool).Msg("prefetch worker not started")
		}
	}
	return nil
}

// truncatedSegments returns the segment names of the repeatable flag
// name, each checked to be a complete segment's name.
func truncatedSegments(c *cli.Context, name string) ([]string, error) {
	segs := c.StringSlice(name)
	for _, seg := range segs {
		if _, _, err := archive.ParseAcceptTruncated(seg); err != nil {
			return nil, usagef("give the 24-hex-digit name of the segment wal-fetch refused as truncated, "+
				"or NAME@LSN as its refusal writes it", "--%s %v", name, err)
		}
	}
	return segs, nil
}

// archivedThrough reads --archived-through and the segment size its name
// is read at; nil without it. The size is --wal-segment-size (hoard
// restore writes it), else the one global/pg_control of the data
// directory pgdata records: ctl, or ctlErr where it could not be read
// (archive.ReadClusterControl). Neither known (run by hand, no pg_control
// above DEST), or the two at odds, is refused rather than guessed: read
// at another size than the cluster's, the name is another segment, and
// the check would stop recovery for a segment never lost, or let it end
// early.
//
// With --wal-segment-size, pg_control only checks the flag: one that
// cannot be read, is cut short or fails its CRC read after read is not
// compared, with a warning, and the flag's size stands: this check alone
// does not stop recovery (exit 255) for what the flag already answers.
// The checks of the system identifier and timeline in runWALFetch take
// the same read and do stop it for one that cannot be read, is cut short
// or still fails its CRC (damaged: a torn read is read again). One read
// whole whose CRC matches and that records another size is refused.
func archivedThrough(c *cli.Context, pgdata string, ctl archive.ClusterControl, ctlErr error) (*archive.ArchivedThrough, error) {
	name := c.String("archived-through")
	if name == "" {
		return nil, nil
	}
	control := filepath.Join(pgdata, "global", "pg_control")
	recorded, err := ctl.SegmentSize, ctlErr
	size := recorded
	switch {
	case c.IsSet("wal-segment-size"):
		size = c.Uint64("wal-segment-size")
		if !wal.ValidSegmentSize(size) {
			return nil, usagef("give the cluster's WAL segment size in bytes (PostgreSQL's wal_segment_size)",
				"--wal-segment-size %d is not a power of two from 1 MiB to 1 GiB", size)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			log := logger(c)
			log.Warn().Err(err).Uint64("wal_segment_size", size).
				Msg("--wal-segment-size not checked against the data directory's pg_control, which could not be read or fails its CRC: the flag's size stands")
		}
		if err == nil && recorded != 0 && recorded != size {
			return nil, usagef("give the data directory's WAL segment size, or leave --wal-segment-size out",
				"--wal-segment-size %d, but %s records %d", size, control, recorded)
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("--archived-through: the WAL segment size of the data directory: %w", err)
	}
	if size == 0 {
		return nil, usagef("give --wal-segment-size BYTES, the cluster's wal_segment_size (hoard restore writes it into restore_command)",
			"--archived-through needs the cluster's WAL segment size, and no pg_control above DEST (%s) records it", control)
	}
	if !wal.ValidSegmentSize(size) {
		return nil, fmt.Errorf("--archived-through: %s records a WAL segment size of %d bytes, not a power of two from 1 MiB to 1 GiB", control, size)
	}
	seg, err := wal.ParseSegmentName(name, size)
	if err != nil {
		return nil, usagef("give a 24-hex-digit WAL segment name, as hoard restore writes it", "--archived-through: %v", err)
	}
	return &archive.ArchivedThrough{Last: seg, SegmentSize: size}, nil
}

// startPrefetchWorker starts `hoard <global flags> wal-fetch
// --prefetch-worker SPOOL` in its own session and in /, with its output in
// the spool's worker.log, and does not wait for it: restore_command must
// return as soon as its file is in place. It stops on its own when the
// server stops or the spool goes (archive.PrefetchWAL).
func startPrefetchWorker(c *cli.Context, spool string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	args := []string{}
	for _, name := range []string{"config", "site", "log-level", "log-format"} {
		v := c.String(name)
		if name == "config" && v != "" {
			// The worker runs in /, not in the data directory.
			if v, err = filepath.Abs(v); err != nil {
				return fmt.Errorf("find the configuration: %w", err)
			}
		}
		if v != "" {
			args = append(args, "--"+name+"="+v)
		}
	}
	if c.Bool("short-log") {
		args = append(args, "--short-log")
	}
	args = append(args, "wal-fetch", "--prefetch-worker="+spool)
	for _, seg := range c.StringSlice("accept-truncated") {
		args = append(args, "--accept-truncated="+seg)
	}
	logf, err := archive.CreateSpoolFile(spool, prefetchWorkerLog)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Not in the data directory (restore_command's): a worker must not
	// keep it as its working directory.
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", exe, err)
	}
	return cmd.Process.Release()
}

// runPrefetchWorker is the detached worker: it fills the spool and exits.
func runPrefetchWorker(c *cli.Context, spool string) error {
	env, closeAll, err := openSiteAll(c)
	if err != nil {
		return err
	}
	defer closeAll()
	log := env.log.With().Str("component", "prefetch").Str("spool", spool).Logger()
	// The spool is pg_wal/hoard-prefetch of the data directory.
	res, err := env.archive.PrefetchWAL(c.Context, spool, archive.PrefetchOptions{
		Count:           env.cfg.RestorePrefetch,
		DataDir:         filepath.Dir(filepath.Dir(spool)),
		AcceptTruncated: c.StringSlice("accept-truncated"),
	})
	if errors.Is(err, archive.ErrPrefetchBusy) {
		log.Debug().Msg("another prefetch worker is running")
		return nil
	}
	if errors.Is(err, archive.ErrPrefetchStopped) {
		log.Info().Int("fetched", len(res.Fetched)).Str("reason", err.Error()).Msg("prefetch stopped")
		return nil
	}
	log.Info().Int("fetched", len(res.Fetched)).Str("missing", res.Missing).Bool("no_room", res.NoRoom).Msg("prefetch done")
	return err
}
