package command

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/wal"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "restore a basebackup into a data directory, for a recovery target",
		UsageText: `hoard restore --target-dir DIR [--basebackup NAME] [--target-time T | --target-xid X |
     --target-name N | --target-lsn L | --target-immediate] [--standby --primary-conninfo C] ...
   hoard restore list-basebackups [--json] [-v]`,
		Description: `Chooses a basebackup (by --basebackup, or the newest that ended before the recovery
target; an incremental backup whose chain of parents is broken is passed over with a
warning, and refused by name; the automatic choice stays with the database system of the
newest backup: see below), checks that the target directory is empty and that the
archive holds all WAL from the backup's start to its end, then downloads, decrypts,
decompresses and untars its chunks in parallel straight into the target directory.
Meanwhile it downloads the WAL segments from the backup's start to its end, which
PostgreSQL must replay before the cluster is consistent, and checks each as wal-fetch does:
one that fails (damaged, truncated, unencrypted in a site with keys) stops the restore
naming it, before pg_control and the recovery configuration are written; with
restore_prefetch above 0 they are kept in pg_wal/hoard-prefetch, where wal-fetch takes them
without a second download.
Before it writes, restore compares the backup's size with the free space of the target's
file system, and with tablespaces elsewhere each file system's with the part restored
there (two directories on one file system add up; for backups that do not record their
tablespaces' sizes, PGHoard's and older hoard's, all the file systems together), and
refuses when one cannot hold it, naming the directory and both sizes (--skip-space-check
goes on).
pg_control is written last, and removed again when a later step fails,
so a restore that fails part-way (a full disk: the error gives the backup's size and what
each directory had free) leaves a directory PostgreSQL refuses to start on.
Its latest checkpoint location is written as 0/DEAD (pg_controldata shows it), REDO and
the rest as backed up: PostgreSQL recovers from backup_label's checkpoint, and refuses to
start if backup_label is removed instead of starting a corrupt cluster. If recovery fails,
do not remove backup_label (whatever PostgreSQL's HINT says): fix the cause and start again.
A backup without backup_label is refused, naming it (PostgreSQL would start from
pg_control's checkpoint, one from during the backup, into a corrupt cluster), and so is
one whose control object lists fewer chunks than its metadata counts (the files of the
others would be missing; hoard verify calls it broken), before anything is written.
Chosen automatically, a backup refused before anything is written because it is damaged
(its control object does not decode or fails its checks, lists fewer chunks than its
metadata counts, lacks backup_label, pg_control or the backup_manifest its metadata says it
holds (every backup of an incremental chain holds one) or holds one that does not parse,
or a delta backup's manifest fails its checks) is passed over: a warning names it and why,
the newest of the older backups that reaches the target is restored instead (its recovery
replays more WAL), and the summary starts with a PASSED OVER line for each; when none is
left, the error names each one and why. Named with --basebackup, it is refused with its
error. With --target-immediate it is not passed over (an older backup's end is an older
state: the commits between the two would be missing, and nothing would fail): the
restore fails with its error, and says to name an older backup with --basebackup, or to
reach this backup's state from an older one with --target-lsn at its end. This applies to
an incremental backup whose chain is broken too, and to a backup left out because its
metadata cannot be read or does not authenticate (where backups do), unless what can be
read of it says it is older than the one chosen (its name's minute before the chosen
backup's, or the start time it claims): the restore fails naming it. An error that says nothing
about the backup or a parent of its incremental chain (the storage down or refusing access,
the network, an interrupt) fails the restore as before: it never makes restore take an older backup.
Every file of a backup that carries PostgreSQL's backup_manifest (hoard's) is compared
with it as it is written (size and CRC-32C), and every file it lists must be restored,
but those hoard's backups leave out (names ending in .old, .tmp or ~, pg_log's contents,
..., which BASE_BACKUP lists): a mismatch fails the restore naming the file (restore
another backup). In an incremental chain each backup's files are compared with its own
backup_manifest as they are read (INCREMENTAL files as stored); the files rebuilt from
them are in no manifest and are not compared.
Then it writes the recovery configuration into postgresql.auto.conf (restore_command
runs hoard wal-fetch with this configuration) and creates recovery.signal, or
standby.signal with --standby. With no --config, restore_command runs wal-fetch without
one: its summary names the HOARD_* variables PostgreSQL's environment must then hold
(their values stay out of postgresql.auto.conf), or add --config FILE to it. With a target, a primary promotes when it reaches it
(--target-action changes that). Every recovery target setting is written (the unused ones
empty), and with a target recovery_target_inclusive and recovery_target_action too, so
that recovery settings the backup's own configuration carries (an earlier restore's,
left in its postgresql.auto.conf) do not apply. Restoring a primary, it also writes
recovery_min_apply_delay = '0': a delayed standby's backup would otherwise replay each
commit only once it is that old (PostgreSQL honours the delay in any archive recovery),
and recovery_end_command = '' (unless --recovery-end-command) and archive_cleanup_command = '',
so that a standby's backup does not run the source's commands: the one at the end of
recovery, the other, often pg_archivecleanup on the source's archive, at each restartpoint.
A --standby keeps these (and primary_conninfo, unless --primary-conninfo, and
primary_slot_name), as rebuilding a standby from its own backup needs; the summary and
the log name each one the restored configuration carries, with its value (a password
masked), and how to override it. PostgreSQL 13 and later.
A standby with a target is one only up to it: PostgreSQL applies --target-action in standby
mode too, pausing there (the default; pg_wal_replay_resume() then promotes it) or promoting
(then restore checks what promotion asks for, as for a primary); it streams nothing past the
target, and once promoted it archives with archive_mode on (the summary says so). The summary says what happens at the target and, for a primary, when the archive
ends first: PostgreSQL stops with "FATAL: recovery ended before configured recovery target
was reached", promoting nothing (set the target to '' and start again to end there, or
restore again with --overwrite). An xid is reached only by its commit or abort as a
top-level transaction, never by a subtransaction's xid: restore reads the archived WAL from the
backup's start to the first commit or abort record naming it, and refuses (exit 2) a
subtransaction's xid, naming the top-level one to give, and an xid no record in the archive ends
(not for --standby, nor where the archive ends in a .partial). A --target-time after this host's clock
is restored (WAL committed after it may yet be archived), with a TARGET IN THE FUTURE line in
the summary for a primary: check the time, its zone and the clock, or restore with --standby
to stop there once it comes.

--primary-conninfo may hold the replication password, which on the command line every
local user reads (ps, /proc/PID/cmdline) while the restore runs, and the shell's history
keeps. Leave it out of the string (libpq reads it from the .pgpass of PostgreSQL's user,
or from passfile=FILE, with replication in its database field), or give the string as
HOARD_PRIMARY_CONNINFO or in a file: --primary-conninfo-file FILE (or
HOARD_PRIMARY_CONNINFO_FILE; one trailing line break is dropped). It is written into
postgresql.auto.conf (mode 0600) as given, and later backups of the cluster carry it;
the summary and the log mask its password. An unreadable or empty file, or both ways at
once, is a usage error (exit 2) before anything is written. A file that users other than
its owner can read (its mode through symbolic links; group-readable is allowed for one
owned by root, as a Kubernetes Secret with defaultMode 0440 and fsGroup) gets a warning
naming it and its mode: chmod 600 it.

Without a target, recovery replays the archive to its end. When the archived WAL after
the backup has a gap with more WAL stored beyond it, PostgreSQL would stop at the gap and
promote, dropping every transaction after it: restore refuses, naming the missing
segments and the LSN recovery would reach. --stop-at-gap accepts that end; the summary
then says where recovery stops, and names each of the gap's segments stored damaged (in
local storage, a FIFO, a socket or a directory under its name) with what is there. Where the gap starts at a segment stored only as a .partial
of the backup's database system and the WAL stored after it is another system's (after
pg_upgrade into the same prefix), that .partial is the end of the system's WAL, no gap:
restore replays it to its end and says so. WAL of the backup's system stored anywhere
after it (on its timeline or a later one) makes it a gap again. Where the WAL after a gap
is another system's, none after it is the backup's system's and no such .partial exists,
the refusal says so (archive-sync cannot fill that gap). A segment deleted from the archive after the check (or
lost, or withheld by someone who can write the storage) would end recovery early just
the same: the restore_command hoard writes carries the last segment it found archived
(wal-fetch --archived-through), and wal-fetch stops recovery with an error at any of
them that is gone. Not with --standby (a standby streams what the archive lacks) nor
--restore-command.

The automatic choice (no --basebackup) restores a backup of the newest backup's database
system (system identifier), following the latest timeline as wal-fetch shows it to that
system: another system's history file it answers as not archived ends the timelines there.
After a pg_upgrade into the same site, the old cluster's timeline history files can still
lead the choice to one of the old cluster's backups (where wal-fetch refuses them, or they
are neither bound to the old system nor claim it): restore then refuses (exit 1), naming
both systems and backups, pg_upgrade, and what to do (--basebackup NAME for the old
cluster; --target-timeline for the upgraded one where the old cluster's history files are
neither bound to its system nor claim it: PGHoard's or an older hoard's, in a site without
keys; a new prefix). It chooses another system's backup only for a target no backup of the
newest's system reaches (a time before the upgrade), when the backups that reach it are of
that one system, with a warning.
A restore that PostgreSQL could not promote at the end of recovery is refused too: when
it promotes it asks for the history files of the timelines after recovery's, and wal-fetch
refuses one of another database system above its timeline (exit 255) where the archive
holds WAL of the restored system on that timeline or a later one. So is one where a
history file PostgreSQL asks for during recovery fails wal-fetch's checks (exit 255, on
which PostgreSQL stops with the directory written): with latest, each timeline's after the
backup's up to the target's; with a number, those of the timelines recovery switches to;
the target timeline's, the backup's own where recovery stays on a timeline after 1; and,
where the server promotes, each timeline's after the target's (see docs/pitr.md). A history
file stored damaged (in local storage, a FIFO, a socket or a directory under its name) is
not taken for an absent one: wal-fetch fails on it (exit 255), so restore refuses where
PostgreSQL asks for it, the file that ends a probe included (with latest, the one after
the target), naming it as stored damaged with what is there.

wal-fetch refuses (exit 255) a complete segment that is an earlier, cut copy: its WAL stops
before its end with zeros after it (see wal-fetch). A standby's last segment of an ended
timeline (archive_mode = always) and a segment PGHoard's walreceiver mode stored unfinished
have that shape too: --accept-truncated-wal SEGMENT (repeatable) writes wal-fetch
--accept-truncated SEGMENT@LSN into the restore_command, LSN where that segment's WAL ends
as the restore reads it, and recovery then ends there, without the transactions committed
after it (another copy of the segment, cut elsewhere and put in its place later, is refused:
recovery stops). SEGMENT@LSN names the end here too. Not with --restore-command
(add --accept-truncated to its wal-fetch instead). Each SEGMENT is read before anything is
written: one that is not in the archive (a typo, another timeline) or that is stored whole
(wal-fetch delivers it without the flag) is a usage error naming it (exit 2). The summary
lists each accepted segment and the LSN where its WAL, and so recovery, ends.

A restore creates only directories and regular files, inside the target, tablespace
and WAL directories, and follows no link out of them: a backup holding a symbolic or hard
link, a device, a FIFO, a sparse file, a member twice, a name outside its directory, or a
chunk over the manifest's sizes is refused, naming the backup, object and member.
The only links it makes are pg_tblspc/<oid>, to the tablespace directories, and pg_wal
with --wal-dir.

pg_wal is restored as a directory in the target, whether or not the backed-up cluster's
was a link (initdb --waldir). --wal-dir DIR (or --waldir) keeps the WAL elsewhere, on a
disk of its own, as initdb --waldir and pg_basebackup --waldir do: pg_wal becomes a link
to DIR, which must be an absolute path, neither the target nor inside or around it nor
shared with a tablespace directory, and absent, empty or only lost+found, as the target
(--overwrite empties it too; a bad DIR is a usage error, exit 2, before anything is
written). restore writes there only pg_wal's directories (archive_status) and the WAL it
keeps for wal-fetch (hoard-prefetch, as much as leaves half of DIR's free space), checks
that it can write there, and that DIR's file system has a WAL segment free (its free
space counts for no part of the backup); the restored cluster, a primary or a --standby, then
writes its WAL there, and the summary names DIR. Run chown -R on DIR too: it does not
follow the link.

The backups, WAL and timeline histories of the site's moved_from sites count as the
site's own: a backup is read from the site that holds it. A backup held by more than one
of them under the same name (archive-copy from the old site, both kept) is restored from
the first that holds it, the site itself first, as are the parents of an incremental one.

Times are ISO 8601 with a zone, seconds optional: 2026-01-02T03:04:05Z or 2026-01-02 05:04+02:00.
PostgreSQL keeps microseconds: a time with more digits is written rounded down (up with
--target-inclusive=false), so that recovery stops on the same side of every commit.
A --target-xid is 32-bit or full (txid_current()); PostgreSQL reads its low 32 bits, and
one whose low 32 bits are 0, 1 or 2 (no transaction's) is refused (exit 2).
A target, timeline or action flag given an empty value is refused (exit 2), not read as
left out (which would restore to the end of the archive).
A restore point name made more than once after the chosen backup's start (--basebackup too) is
refused (exit 2): PostgreSQL stops at the first one, not the newest; the error gives each one's LSN
for --target-lsn. To find the first, restore reads the WAL recovery replays from the backup's start
up to it, once more, before it writes (see docs/pitr.md). With --basebackup, the newest point is
looked for in all the WAL archived since that backup started (no bound): when there is none, the
restore is refused (exit 2), as recovery from it would never reach one.
Without --basebackup, a newest point found on a timeline the target timeline's path never replays
(an old primary's WAL after a failover) gives way to the newest point along the path from the
chosen backup's start (read as for --basebackup, no bound); none there, or one before the backup's
end, is refused (exit 2), naming the point's timeline for --target-timeline.

EXIT STATUS: 0 restored; 1 the restore failed (nothing was written when the checks
failed; otherwise the directory is incomplete: run again with --overwrite);
2 bad flags or configuration; 130 interrupted.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "target-dir", Usage: "data `DIR` to create: absent, empty, or only lost+found"},
			downloadRateFlag,
			&cli.StringFlag{Name: "basebackup", Usage: "backup `NAME` to restore (default: the newest that can reach the target)"},
			&cli.StringFlag{Name: "target-time", Aliases: []string{"recovery-target-time"}, Usage: "recover to `TIME` (ISO 8601 with a zone)"},
			&cli.StringFlag{Name: "target-xid", Aliases: []string{"recovery-target-xid"}, Usage: "recover to transaction `XID`"},
			&cli.StringFlag{Name: "target-name", Aliases: []string{"recovery-target-name"}, Usage: "recover to the restore point `NAME` (pg_create_restore_point)"},
			&cli.StringFlag{Name: "target-lsn", Usage: "recover to `LSN` as PostgreSQL prints it (e.g. 0/3000060)"},
			&cli.BoolFlag{Name: "target-immediate", Usage: "stop as soon as the backup is consistent"},
			&cli.BoolFlag{Name: "target-inclusive", Value: true, Usage: "stop just after the target (false: just before)"},
			&cli.StringFlag{Name: "target-timeline", Value: "latest", Usage: "recovery_target_timeline: latest, current or a `TLI` number"},
			&cli.StringFlag{Name: "target-action", Aliases: []string{"recovery-target-action"}, Usage: "at the target: pause, promote or shutdown (default promote; with --standby PostgreSQL's pause); pause and shutdown need a target"},
			&cli.BoolFlag{Name: "standby", Usage: "restore a standby (standby.signal) instead of a primary (recovery.signal)"},
			&cli.BoolFlag{Name: "restore-to-primary", Aliases: []string{"restore-to-master"}, Usage: "accepted for PGHoard compatibility: restoring a primary is the default"},
			&cli.StringFlag{Name: "primary-conninfo", EnvVars: []string{"HOARD_PRIMARY_CONNINFO"},
				Usage: "primary_conninfo `CONNINFO` for a standby to stream from after archive replay (on the command line every local user can read it: give a password in a passfile, or use the variable or --primary-conninfo-file)"},
			&cli.StringFlag{Name: "primary-conninfo-file", EnvVars: []string{"HOARD_PRIMARY_CONNINFO_FILE"},
				Usage: "read --primary-conninfo from `FILE` (one line; a trailing line break is dropped)"},
			&cli.StringSliceFlag{Name: "tablespace-dir", Usage: "restore tablespace NAME into `NAME=DIR` (repeatable)"},
			&cli.StringFlag{Name: "tablespace-base-dir", Usage: "restore other tablespaces into `DIR`/<oid>"},
			&cli.StringFlag{Name: "wal-dir", Aliases: []string{"waldir"}, Usage: "keep the restored cluster's WAL in `DIR` (absolute; absent, empty, or only lost+found), pg_wal a link to it, as initdb --waldir"},
			&cli.BoolFlag{Name: "overwrite", Usage: "empty a non-empty target (and named tablespace and WAL) directory first; refused while its postmaster.pid names a running process"},
			&cli.BoolFlag{Name: "skip-space-check", Usage: "restore even when a file system of the target or the tablespaces has less free space than the backup needs there"},
			&cli.BoolFlag{Name: "stop-at-gap", Usage: "without a target: accept a gap in the archived WAL and let recovery stop there (the WAL stored after the gap is not replayed)"},
			&cli.IntFlag{Name: "parallel", Usage: "chunks to download at once", DefaultText: "restore_process_count"},
			&cli.StringSliceFlag{Name: "accept-truncated-wal", Usage: "accept segment `SEGMENT`, which wal-fetch refuses as truncated (its WAL stops before its end, zeros after): the restore_command written passes it as wal-fetch --accept-truncated, and recovery ends where its WAL does (repeatable)"},
			&cli.StringFlag{Name: "restore-command", Usage: "restore_command `CMD` to write (default: this hoard's wal-fetch)"},
			&cli.StringFlag{Name: "recovery-end-command", Usage: "recovery_end_command `CMD` to write"},
			&cli.StringFlag{Name: "archive-mode", Value: "preserve", Usage: "`preserve` the backup's archive settings, or off: write archive_mode = 'off' so a restored copy does not archive its new timeline into this archive"},
		},
		Subcommands: []*cli.Command{listBasebackupsCommand()},
		Action:      runRestore,
	}
}

// listBasebackupsCommand is PGHoard's pghoard_restore list-basebackups.
func listBasebackupsCommand() *cli.Command {
	c := listCommand()
	c.Name = "list-basebackups"
	c.Usage = "same as hoard list"
	return c
}

func runRestore(c *cli.Context) error {
	if err := noArgs(c, "hoard restore --target-dir DIR [flags]; see hoard restore --help"); err != nil {
		return err
	}
	dir := c.String("target-dir")
	if dir == "" {
		return usagef("pass the data directory to create: --target-dir DIR", "--target-dir is required")
	}
	target, err := restoreTarget(c)
	if err != nil {
		return err
	}
	conninfo, err := primaryConnInfo(c)
	if err != nil {
		return err
	}
	spcDirs := map[string]string{}
	for _, kv := range c.StringSlice("tablespace-dir") {
		name, d, ok := strings.Cut(kv, "=")
		if !ok || name == "" || d == "" {
			return usagef("use --tablespace-dir NAME=DIR", "bad --tablespace-dir %q", kv)
		}
		spcDirs[name] = d
	}
	if c.Bool("standby") && c.Bool("restore-to-primary") {
		return usagef("give one of them", "--standby and --restore-to-primary contradict each other")
	}
	accept, err := truncatedSegments(c, "accept-truncated-wal")
	if err != nil {
		return err
	}
	if c.String("restore-command") != "" && len(accept) > 0 {
		return usagef("add --accept-truncated SEGMENT to the wal-fetch of your --restore-command instead",
			"--accept-truncated-wal goes into the restore_command hoard writes, and --restore-command gives another")
	}
	env, closeAll, err := openSiteAll(c)
	if err != nil {
		return err
	}
	defer closeAll()
	warnRoot(env.log, os.Geteuid(), "restore")
	rc := c.String("restore-command")
	var walFetch *restore.WALFetch
	var envOnly []string
	if rc == "" {
		if walFetch, err = restore.NewWALFetch(c.String("config"), env.name); err != nil {
			return err
		}
		walFetch.AcceptTruncated(accept)
		walFetch.Spool = env.cfg.RestorePrefetch > 0
		if c.String("config") == "" {
			// Nothing on the command line carries the configuration:
			// PostgreSQL runs restore_command in its own environment.
			envOnly = config.EnvSet(os.Getenv)
			env.log.Warn().Str("restore_command", walFetch.Command(nil)).Msg("the configuration came from the environment: PostgreSQL's environment must hold the same HOARD_* variables when it runs restore_command, or pass --restore-command")
		}
	}
	parallel := c.Int("parallel")
	if parallel <= 0 {
		parallel = env.cfg.RestoreProcessCount
	}
	archiveOff := false
	switch c.String("archive-mode") {
	case "preserve":
	case "off":
		archiveOff = true
	default:
		return usagef("use --archive-mode preserve or off", "unknown --archive-mode %q", c.String("archive-mode"))
	}
	o := restore.Options{
		ArchiveOff:         archiveOff,
		Archive:            env.archive,
		TargetDir:          dir,
		Backup:             c.String("basebackup"),
		Target:             target,
		TablespaceDirs:     spcDirs,
		TablespaceBaseDir:  c.String("tablespace-base-dir"),
		WALDir:             c.String("wal-dir"),
		Overwrite:          c.Bool("overwrite"),
		StopAtGap:          c.Bool("stop-at-gap"),
		SkipSpaceCheck:     c.Bool("skip-space-check"),
		Standby:            c.Bool("standby"),
		PrimaryConnInfo:    conninfo,
		RestoreCommand:     rc,
		WALFetch:           walFetch,
		RecoveryEndCommand: c.String("recovery-end-command"),
		TargetAction:       c.String("target-action"),
		Parallel:           parallel,
		Logger:             env.log,
	}
	meter := newRestoreMeter(c.App.ErrWriter, env)
	o.Progress, o.ProgressInterval = meter.report, meter.interval
	res, err := restore.Run(c.Context, o)
	meter.finish()
	if err != nil {
		return restoreError(err, env.site)
	}
	printRestored(c.App.Writer, o, res, envOnly)
	return nil
}

// restoreError turns the restore errors a user can fix by changing flags
// or the configuration of site into usage errors with a hint; the rest
// stay failures.
func restoreError(err error, site *config.Site) error {
	switch {
	case errors.Is(err, restore.ErrBadTarget):
		return usagef("see hoard restore --help", "%v", err)
	case errors.Is(err, restore.ErrBadWALDir):
		return usagef("give --wal-dir an absolute path to a directory of its own, outside the target and the tablespace directories", "%v", err)
	case errors.Is(err, restore.ErrTablespaceInPlace):
		return usagef("restore the tablespace elsewhere with --tablespace-dir NAME=DIR or --tablespace-base-dir DIR, which --overwrite empties; "+
			"or, if only a failed restore wrote there (never the running cluster's tablespace), empty that directory yourself", "%v", err)
	case errors.Is(err, restore.ErrBadAccept):
		return usagef("name only segments wal-fetch refuses as truncated, as its refusal names them (--accept-truncated SEGMENT)", "%v", err)
	case errors.Is(err, restore.ErrTargetNotEmpty):
		return usagef("choose an empty directory, or pass --overwrite to replace its contents", "%v", err)
	case errors.Is(err, archive.ErrNoBackup):
		return usagef(cmp.Or(missingRoot(site), "see the backups with hoard list"), "%v", err)
	}
	return err
}

// zoneSuffix matches the zone at the end of an ISO 8601 time.
var zoneSuffix = regexp.MustCompile(`(Z|z|[+-]\d\d(:?\d\d)?)$`)

// targetTime parses a --target-time: ISO 8601 (archive.ParseTime) with an
// explicit zone, which PostgreSQL's recovery_target_time would otherwise
// take from the restored server's TimeZone. Every form a hint suggests is
// one it accepts.
func targetTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	tm, err := archive.ParseTime(s)
	if err != nil {
		return tm, usagef("use ISO 8601 with a zone, e.g. 2026-01-02T03:04:05Z", "--target-time: %v", err)
	}
	if len(s) <= len("2006-01-02") {
		return tm, usagef(fmt.Sprintf("add the time and zone, e.g. %sT00:00:00Z for midnight UTC or %s 00:00:00+02:00", s, s),
			"--target-time %q has no time of day nor time zone", s)
	}
	if !zoneSuffix.MatchString(s) {
		return tm, usagef(fmt.Sprintf("add the zone, e.g. %sZ for UTC or %s+02:00", s, s),
			"--target-time %q has no time zone", s)
	}
	return tm, nil
}

// targetFlags are the flags that say where recovery stops.
var targetFlags = []string{"target-time", "target-xid", "target-name", "target-lsn", "target-timeline", "target-action"}

// emptyTargetFlag refuses a target flag given with an empty value: a
// script's --target-name "$POINT" with POINT unset would otherwise restore
// to the end of the archive and promote there (or to the latest timeline,
// or with the default action), as if the flag were left out.
func emptyTargetFlag(c *cli.Context) error {
	for _, f := range c.Command.Flags {
		names := f.Names()
		if !slices.Contains(targetFlags, names[0]) || !c.IsSet(names[0]) || c.String(names[0]) != "" {
			continue
		}
		given := make([]string, len(names))
		for i, n := range names {
			given[i] = "--" + n
		}
		return usagef(fmt.Sprintf("give %s a value, or leave it out (see hoard restore --help)", given[0]),
			"%s is empty: an empty value is refused rather than read as the flag left out", strings.Join(given, " / "))
	}
	return nil
}

// restoreTarget builds the recovery target from the flags.
func restoreTarget(c *cli.Context) (restore.Target, error) {
	var t restore.Target
	if err := emptyTargetFlag(c); err != nil {
		return t, err
	}
	if s := c.String("target-time"); s != "" {
		tm, err := targetTime(s)
		if err != nil {
			return t, err
		}
		t.Time = tm
	}
	if s := c.String("target-xid"); s != "" {
		x, err := strconv.ParseUint(s, 10, 64)
		if err != nil || x == 0 {
			return t, usagef("give a transaction id such as 1234 (from txid_current())", "--target-xid %q is not a transaction id", s)
		}
		if uint32(x) < restore.FirstNormalXID {
			return t, usagef("give a transaction id such as 1234 (from txid_current())",
				"--target-xid %d is no transaction's: PostgreSQL reads its low 32 bits, %d, where 0, 1 and 2 are reserved (transaction ids start at 3), "+
					"so recovery would never reach it", x, uint32(x))
		}
		t.XID = x
	}
	t.Name = c.String("target-name")
	if s := c.String("target-lsn"); s != "" {
		// As PostgreSQL reads recovery_target_lsn (wal.ParseLSN): hoard
		// writes the LSN it read, so a form read otherwise would stop
		// recovery where the operator did not ask.
		l, err := wal.ParseLSN(strings.TrimSpace(s))
		if err != nil || l == 0 {
			return t, usagef("give an LSN as PostgreSQL prints it, two hexadecimal numbers of 1 to 8 digits such as 0/3000060 (from pg_current_wal_lsn())",
				"--target-lsn %q is not an LSN", s)
		}
		t.LSN = l
	}
	t.Immediate = c.Bool("target-immediate")
	if c.IsSet("target-inclusive") {
		v := c.Bool("target-inclusive")
		t.Inclusive = &v
	}
	t.Timeline = c.String("target-timeline")
	if err := t.Validate(); err != nil {
		return t, usagef("see hoard restore --help", "%v", err)
	}
	// PostgreSQL ignores recovery_target_action without a target and
	// promotes at the end of the archived WAL (promote is accepted: it
	// is what happens, and PGHoard's scripts may pass it).
	if a := c.String("target-action"); t.IsZero() && (a == restore.ActionPause || a == restore.ActionShutdown) {
		return t, usagef("give a target (--target-time, --target-xid, --target-name, --target-lsn or --target-immediate); "+
			"to keep the cluster in recovery at the end of the archive, restore with --standby and promote it with pg_ctl promote when ready",
			"--target-action %s needs a recovery target: without one PostgreSQL replays to the end of the archive and promotes", a)
	}
	return t, nil
}

// restoreMeter shows download progress: a line rewritten in place on a
// terminal, a log line every 30 seconds otherwise.
type restoreMeter struct {
	w        io.Writer
	tty      bool
	interval time.Duration
	env      *siteEnv
	start    time.Time
	shown    bool
}

func newRestoreMeter(w io.Writer, env *siteEnv) *restoreMeter {
	m := &restoreMeter{w: w, tty: isTerminal(w), env: env, start: time.Now(), interval: 30 * time.Second}
	if m.tty {
		m.interval = time.Second
	}
	return m
}

// report is restore.Options.Progress.
func (m *restoreMeter) report(p restore.Progress) {
	el := time.Since(m.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.BytesDone) / el
	}
	pct := 100.0
	if p.Bytes > 0 {
		pct = 100 * float64(p.BytesDone) / float64(p.Bytes)
	}
	if m.tty {
		printf(m.w, "\r\033[Krestoring: %d/%s, %s / %s (%.0f%%), %s/s",
			p.ChunksDone, plural(p.Chunks, "chunk", "chunks"), humanBytes(p.BytesDone), humanBytes(p.Bytes), pct, humanBytes(int64(rate)))
		m.shown = true
		return
	}
	m.env.log.Info().Int("chunks_done", p.ChunksDone).Int("chunks", p.Chunks).Int64("bytes_done", p.BytesDone).
		Int64("bytes", p.Bytes).Int64("bytes_per_second", int64(math.Round(rate))).Msg("restore progress")
}

// finish ends the terminal progress line.
func (m *restoreMeter) finish() {
	if m.shown {
		printf(m.w, "\n")
	}
}

// printRestored tells the user what was restored and how to start it.
func printRestored(w io.Writer, o restore.Options, res *restore.Result, envOnly []string) {
	b := res.Backup
	for _, p := range res.PassedOver {
		printf(w, "PASSED OVER: backup %s, newer than the one restored, cannot be restored: %v\n", p.Backup.Name, p.Err)
	}
	if len(res.PassedOver) > 0 {
		printf(w, "Recovery replays the WAL from the older backup %s instead; run hoard verify to check the others.\n\n", b.Name)
	}
	printf(w, "Restored basebackup %s (PostgreSQL %d, %s, %s) into %s in %s.\n",
		b.Name, res.PGMajor, plural(res.Chunks, "chunk", "chunks"), humanBytes(res.Bytes), o.TargetDir, res.Elapsed.Round(time.Second))
	for _, name := range sortedKeys(res.Tablespaces) {
		printf(w, "Tablespace %s restored into %s.\n", name, res.Tablespaces[name])
	}
	pgWAL := "pg_wal"
	if o.WALDir != "" {
		printf(w, "pg_wal is a link to %s, where PostgreSQL writes its WAL.\n", o.WALDir)
		pgWAL = o.WALDir
	}
	for _, n := range res.Unlisted {
		printf(w, "NOTE: %s.\n", n)
	}
	printf(w, "WAL is archived from %s through %s.\n", b.StartWALSegment, res.WALArchivedThrough)
	if res.WALChecked > 0 {
		printf(w, "Checked %s this backup needs to become consistent, as wal-fetch checks them; %d kept in %s/%s for wal-fetch.\n",
			plural(res.WALChecked, "WAL segment", "WAL segments"), len(res.WALSpooled), pgWAL, archive.SpoolDirName)
	}
	switch p := res.WALPartial; {
	case p != nil && res.WALSystemEnd != nil:
		printf(w, "The WAL of this backup's database system ends in a .partial copy of %s (WAL up to LSN %s),\n"+
			"and another system's WAL follows it: %s.\n"+
			"wal-fetch delivers the .partial for that segment, and recovery to the end stops at its last record:\n"+
			"this cluster is restored to its end.\n", p.Segment, p.End, res.WALSystemEnd)
	case p != nil:
		printf(w, "The archive ends in a .partial copy of %s (WAL up to LSN %s): wal-fetch delivers it for that\n"+
			"segment, and recovery to the end of the archive stops at its last record.\n", p.Segment, p.End)
	}
	for _, acc := range res.Accepted {
		printf(w, "ACCEPTED TRUNCATED: wal-fetch delivers %s although its WAL ends at LSN %s, before the segment does:\n"+
			"recovery through it ends at LSN %s, and transactions committed after it are not restored.\n", acc.Segment, acc.End, acc.End)
	}
	mode := "a primary (recovery.signal)"
	if o.Standby {
		mode = "a standby (standby.signal)"
	}
	printf(w, "Recovery is configured in postgresql.auto.conf as %s, to %s.\n", mode, describeTarget(o.Target))
	printAtTarget(w, o)
	if g := res.WALGap; g != nil && (o.Target.IsZero() || !o.Target.Immediate) {
		if o.Target.IsZero() {
			printf(w, "WAL GAP: recovery will stop at LSN %s, the end of %s, and promote: %s,\n"+
				"and the WAL stored from %s on is not replayed.\n", g.ReachLSN, g.ReachSegment, gapSegments(g, b.SegmentSize()), g.Next)
		} else {
			printf(w, "WAL GAP: %s: recovery cannot go past LSN %s (the end of %s);\n"+
				"a target after it is not reached and PostgreSQL stops with an error.\n", gapSegments(g, b.SegmentSize()), g.ReachLSN, g.ReachSegment)
		}
		for _, d := range g.Damaged {
			printf(w, "STORED DAMAGED: WAL segment %s%s is stored damaged, and no read returns it: %v.\n", d.Key, o.Archive.InSite(d.Archive), d.Err)
		}
	}
	settings, err := restore.ServerSettings(o.TargetDir)
	if err != nil {
		printf(w, "\nThe restored configuration cannot be read (%v): PostgreSQL refuses to start until it is mended.\n", err)
	}
	// In the order the operator follows it: copy the configuration kept
	// outside the data directory first, since what comes after (port,
	// archiving) is set over it.
	printConfigOutside(w, o, settings)
	printArchiving(w, o, settings)
	printCarried(w, o, settings)
	dirs := []string{o.TargetDir}
	for _, name := range sortedKeys(res.Tablespaces) {
		dirs = append(dirs, res.Tablespaces[name])
	}
	if o.WALDir != "" {
		// chown -R does not follow the pg_wal link.
		dirs = append(dirs, o.WALDir)
	}
	printEnvOnly(w, envOnly)
	start, notes := startCommand(o.TargetDir, settings)
	for _, note := range notes {
		// A note quotes the restored configuration: printf escapes
		// what it holds, so the line break is the format's.
		printf(w, "\n%s\n", note)
	}
	if wrong := rootOwned(dirs); len(wrong) > 0 {
		// PostgreSQL refuses to run as root, so a root-owned directory
		// is always wrong; any other owner may be the server's user.
		printf(w, "\nRestored as root: PostgreSQL starts only on a directory owned by the user it runs as, e.g.:\n")
		printf(w, "  chown -R postgres:postgres")
		for _, d := range wrong {
			printf(w, " %s", restore.ShellQuote(d))
		}
		printf(w, "\nThen start PostgreSQL on it (as that user):\n  %s\n", start)
		return
	}
	printf(w, "\nStart PostgreSQL on it as its owner, %s:\n  %s\n", ownerName(o.TargetDir), start)
}

// printEnvOnly says, when the configuration came from HOARD_* variables
// alone (names, never their values: they hold storage credentials), that
// PostgreSQL's environment needs them too: the restore_command written,
// hoard wal-fetch, runs in the server's environment, and without them it
// finds no configuration and recovery stops at its first fetch. The
// credentials stay out of postgresql.auto.conf, which the restored
// cluster's backups carry.
func printEnvOnly(w io.Writer, names []string) {
	if len(names) == 0 {
		return
	}
	printf(w, "\nThe configuration came from HOARD_* variables alone (no --config): recovery runs restore_command\n"+
		"(hoard wal-fetch) in PostgreSQL's environment, which must hold them too, or recovery stops at its first\n"+
		"WAL fetch (\"no configuration\"). Set them where PostgreSQL starts (the shell that runs pg_ctl, which sudo\n"+
		"clears, or the systemd unit's Environment= or EnvironmentFile=):\n  %s\n"+
		"or write the same settings into a configuration file PostgreSQL's user can read (docs/configuration.md)\n"+
		"and add --config FILE after the hoard of restore_command in postgresql.auto.conf.\n", strings.Join(names, " "))
}

// printArchiving says that the restored cluster will archive, when its
// configuration archives and --archive-mode off was not given: once
// promoted, it archives its new timeline with the original's
// archive_command, so a copy beside the original sends it into the
// original's site, whose restores to the end (target timeline latest)
// follow that timeline from then on, silently. A standby archives only
// with archive_mode always, unless it has a target: at it PostgreSQL
// promotes it, at once or when resumed (TestRestoreTargetEnd), and with
// on it then archives as a primary does.
func printArchiving(w io.Writer, o restore.Options, settings map[string]string) {
	if o.ArchiveOff {
		return
	}
	mode := archiveMode(settings)
	if mode != "always" && (mode != "on" || o.Standby && o.Target.IsZero()) {
		return
	}
	printf(w, "Archiving is on (archive_mode = %s, as in the backup): once promoted, this cluster archives its new timeline\n"+
		"with the original's archive_command. If it is a copy running beside the original, set archive_mode = 'off' in its\n"+
		"postgresql.auto.conf before starting it (or restore with --archive-mode off), or the original's site gets this\n"+
		"copy's timeline, and restores of it to the end follow that timeline.\n", mode)
}

// printCarried names the standby settings the restored configuration
// carries from the backup's and the recovery block does not override
// (restore.RecoveryConfig.Carried), and how to override them. A standby
// uses them: rebuilt from its own backup it needs them, but a copy of a
// standby restored as one streams from the source's primary on the
// source's replication slot (which two standbys cannot share), and runs
// the source's commands. A primary reads primary_conninfo and
// primary_slot_name only if it is later made a standby.
func printCarried(w io.Writer, o restore.Options, settings map[string]string) {
	carried := restore.RecoveryConfig{PrimaryConnInfo: o.PrimaryConnInfo, RecoveryEndCommand: o.RecoveryEndCommand, Standby: o.Standby}.Carried(settings)
	if len(carried) == 0 {
		return
	}
	printf(w, "\nThe backup's configuration carries these standby settings, which this restore keeps:\n")
	for _, s := range carried {
		printf(w, "  %s\n", s.String())
	}
	if !o.Standby {
		printf(w, "A primary uses primary_conninfo and primary_slot_name only in standby mode (standby.signal), if it is\n"+
			"made a standby later.\n")
		return
	}
	printf(w, "This standby streams from primary_conninfo's server (on the replication slot primary_slot_name), runs\n"+
		"archive_cleanup_command at each restartpoint and recovery_end_command when promoted, and applies WAL\n"+
		"recovery_min_apply_delay late. That is right for the standby the backup was taken from; for a copy, override\n"+
		"them before starting it: restore with --primary-conninfo CONNINFO, or add lines at the end of postgresql.auto.conf,\n"+
		"e.g. primary_slot_name = '' (each name's last line applies). Once started, ALTER SYSTEM SET and\n"+
		"SELECT pg_reload_conf() change them too.\n")
}

// archiveMode returns archive_mode's value in settings, lowercased, a
// boolean's spellings of on and off as on and off (PostgreSQL takes them);
// "" when unset.
func archiveMode(settings map[string]string) string {
	switch v := strings.ToLower(settings["archive_mode"]); v {
	case "true", "yes", "1":
		return "on"
	case "false", "no", "0":
		return "off"
	default:
		return v
	}
}

// serverConfigFiles are the files PostgreSQL reads from its data directory
// unless config_file, hba_file and ident_file say otherwise.
var serverConfigFiles = []string{"postgresql.conf", "pg_hba.conf", "pg_ident.conf"}

// printConfigOutside says which of serverConfigFiles the restored
// directory lacks, and what to copy. A cluster that keeps its
// configuration outside its data directory (Debian's and Ubuntu's
// /etc/postgresql/<version>/<cluster>) has none of them in its backup, and
// pg_ctl -D dir start then fails: "could not access the server
// configuration file". The copy must lose the lines naming the original
// cluster's files, or it would start on the original's data directory.
//
// The copied postgresql.conf also sets the original's port and
// archiving, which settings (read before the copy) do not hold: so the
// advice about them comes here, after the copy, and names
// postgresql.auto.conf, which PostgreSQL reads after postgresql.conf,
// so that what is set there wins over the copy (and the copy is not
// edited away from the original's). startCommand probes no port then
// (portFromCopy).
func printConfigOutside(w io.Writer, o restore.Options, settings map[string]string) {
	dir := o.TargetDir
	var missing []string
	for _, f := range serverConfigFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return
	}
	printf(w, "\nThe restored directory lacks %s: the cluster keeps its configuration outside its data directory\n"+
		"(Debian, Ubuntu: /etc/postgresql/<version>/<cluster>). Copy them from there into %s, with the\n"+
		"conf.d directory Debian's postgresql.conf includes (include_dir = 'conf.d'), and delete\n"+
		"data_directory, hba_file, ident_file and external_pid_file from the copied postgresql.conf\n"+
		"(they name the original cluster's files) before starting it.\n", strings.Join(missing, ", "), restore.ShellQuote(dir))
	port := portFromCopy(dir, settings)
	archiving := !o.ArchiveOff && archiveMode(settings) == "" && slices.Contains(missing, "postgresql.conf")
	if !port && !archiving {
		return
	}
	printf(w, "Then, before starting it, add at the end of %s (read after postgresql.conf:\n"+
		"what it sets wins over the copy):\n", restore.ShellQuote(filepath.Join(dir, "postgresql.auto.conf")))
	const indent = "                        "
	if port {
		free := listeners{port: defaultPort, hosts: []string{"localhost"}, sockets: socketDirs}.freePortAfter()
		p := "PORT"
		if free != 0 {
			p = strconv.Itoa(free)
		}
		printf(w, "  %-21s if the copy's port is in use on this host (the original's, when it runs here):\n", "port = "+p)
		if free != 0 {
			printf(w, "%s%s is free now\n", indent, p)
		} else {
			printf(w, "%sa port free on this host\n", indent)
		}
	}
	if archiving {
		printf(w, "  %-21s if it is a copy beside the original: once promoted, it would archive its new\n"+
			"%stimeline into the original's site with the copy's archive_command\n", "archive_mode = 'off'", indent)
	}
}

// portFromCopy reports whether the restored cluster's port is set by a
// postgresql.conf still to be copied into dir (printConfigOutside): it has
// none, and settings, its postgresql.auto.conf, sets no port.
func portFromCopy(dir string, settings map[string]string) bool {
	if _, set := settings["port"]; set {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "postgresql.conf"))
	return errors.Is(err, fs.ErrNotExist)
}

// gapSegments names a gap's segments and says what they are: missing,
// or stored damaged (WALGap.Damaged: no read returns them), as restore's
// WAL check says; segSize is the backup's segment size.
func gapSegments(g *restore.WALGap, segSize uint64) string {
	if g.First == g.Last {
		if len(g.Damaged) > 0 {
			return g.First + " is stored damaged"
		}
		return g.First + " is missing"
	}
	r := g.First + " through " + g.Last
	first, ferr := wal.ParseSegmentName(g.First, segSize)
	last, lerr := wal.ParseSegmentName(g.Last, segSize)
	switch {
	case len(g.Damaged) == 0:
		return r + " are missing"
	case ferr == nil && lerr == nil && uint64(len(g.Damaged)) == last.No-first.No+1:
		return r + " are stored damaged"
	}
	return r + " are missing or stored damaged"
}

// describeTarget says in words where recovery stops.
// printAtTarget says what PostgreSQL does at the target and, where it
// may not reach it, what it does then and what to do (seen on 13, 15 and
// 18: e2e TestRestoreTargetEnd).
func printAtTarget(w io.Writer, o restore.Options) {
	t := o.Target
	if t.IsZero() {
		return
	}
	if ahead := time.Until(t.Time); !t.Time.IsZero() && !o.Standby && ahead > 0 {
		// Not refused: WAL committed after the time may yet be archived
		// (an archive still growing), and this host's clock may be the
		// one that is wrong. But most often the time or its zone is.
		printf(w, "TARGET IN THE FUTURE: --target-time %s is %s after this host's clock (%s):\n"+
			"no transaction archived so far committed after it, so recovery reaches it only if WAL committed after it is archived\n"+
			"before recovery replays the archive's end; otherwise PostgreSQL stops as below. Check the time, its zone\n"+
			"and this host's clock; for the end of the archive restore without a target; to stop at that time once\n"+
			"it comes, restore with --standby, which waits for more WAL.\n",
			t.Time.UTC().Format(time.RFC3339Nano), ahead.Round(time.Second), time.Now().UTC().Format(time.RFC3339))
	}
	switch {
	case o.TargetAction == restore.ActionShutdown:
		printf(w, "At the target PostgreSQL shuts down (recovery_target_action = shutdown), a standby too; started again with\n"+
			"these settings it shuts down there again: change the target or --target-action's setting first.\n")
	case o.TargetAction == restore.ActionPromote || (o.TargetAction == "" && !o.Standby):
		if o.Standby {
			printf(w, "At the target PostgreSQL promotes (recovery_target_action = promote), a standby too: it streams no further.\n")
		} else {
			printf(w, "At the target PostgreSQL promotes (recovery_target_action = promote).\n")
		}
	default:
		printf(w, "At the target PostgreSQL pauses, in recovery (recovery_target_action = pause): it replays nothing past it,\n"+
			"a standby too (nor streams); select pg_wal_replay_resume() or pg_ctl promote then promotes it.\n")
	}
	if t.Immediate {
		return
	}
	if t.XID != 0 {
		printf(w, "Recovery reaches transaction %d only at its commit or abort as a top-level transaction: a subtransaction's\n"+
			"xid (a row's xmin written after a SAVEPOINT) or one that never ended is never reached.\n", t.XID)
	}
	if o.Standby {
		printf(w, "Until it reaches the target, a standby waits for more WAL at the end of the archive.\n")
		return
	}
	printf(w, "If the archived WAL ends before the target, PostgreSQL replays it all, then stops with \"FATAL: recovery ended\n"+
		"before configured recovery target was reached\" and does not promote: restore again with --overwrite and another\n"+
		"target, or, to keep the end of the archive, set %s = '' in hoard's block of postgresql.auto.conf\n"+
		"and start it again.\n", targetSetting(t))
}

// targetSetting is the recovery_target_* setting hoard writes for t.
func targetSetting(t restore.Target) string {
	switch {
	case !t.Time.IsZero():
		return "recovery_target_time"
	case t.XID != 0:
		return "recovery_target_xid"
	case t.Name != "":
		return "recovery_target_name"
	}
	return "recovery_target_lsn"
}

func describeTarget(t restore.Target) string {
	switch {
	case t.Immediate:
		return "the end of the backup (immediate)"
	case !t.Time.IsZero():
		return "time " + t.Time.UTC().Format(time.RFC3339Nano)
	case t.XID != 0:
		return fmt.Sprintf("transaction %d", t.XID)
	case t.Name != "":
		return fmt.Sprintf("restore point %q", t.Name)
	case t.LSN != 0:
		return "LSN " + t.LSN.String()
	}
	return "the end of the archived WAL"
}
