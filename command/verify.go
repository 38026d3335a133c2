package command

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/verify"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check that the site's basebackups and WAL are restorable, or test a restore",
		UsageText: `hoard verify [--full] [--parallel N] [--json]
   hoard verify --restore [--basebackup NAME] [--target-time T] [--scratch-dir D] [--pg-bin-dir D] [--as-user U] [--db-user R] [--json]`,
		Description: `Without --restore: for every basebackup, the control object is downloaded and decoded,
it must list as many chunks as the backup's metadata counts (hoard-chunk-count, where recorded),
and every chunk it lists must exist with its recorded size; a backup in one pg_basebackup tar
(PGHoard's basic or pipe mode) must start with backup_label (its first member is decoded,
from a ranged read of the object's first 256 KiB);
a backup whose metadata says its control object holds PostgreSQL's backup_manifest must hold
one that parses, and so must every incremental backup, whatever its metadata
says (restore refuses one without), and the full backup an incremental backup names as
its parent, whatever its metadata says, or the incremental backups on it are broken (restore
refuses their chain; the full backup alone stays ok); with --full every chunk and every
WAL segment the backups need is downloaded and decoded (HMAC, decompression, sizes, hash,
WAL page headers against names), and every file of a backup that carries backup_manifest
(hoard's; each backup of an incremental chain with its own, INCREMENTAL files as stored)
must have the size and CRC-32C it lists, none missing or unlisted, as restore requires (the quick check reads no file); a complete segment whose WAL stops before its end, zeros
after it (an earlier copy under its name, see wal-fetch), is a problem that names, as
wal-fetch's refusal does, the LSN its WAL ends at and the flag that accepts it if it is
legitimately cut (hoard restore --accept-truncated-wal SEGMENT). The WAL must continue without a gap from each backup's
start, along the timeline .history files, through the newest stored segment; gaps are
named, with what to do (store the WAL the primary's pg_wal still holds with hoard
archive-sync on the database host, or take a new basebackup); a segment stored in a state
no read returns (in local storage a FIFO, a socket or a directory under its name) is named
as stored damaged, not missing, with what is there. The table shows per backup whether it is restorable and how far recovery reaches.
The backups of the site's moved_from sites are checked too, as restore counts them: each
is read from the site that holds it (its storage, prefix and keys), and the WAL and timeline
histories of all those sites count as the site's own. The table then has a SITE column,
each problem line names the backup's site, and --json gives each backup's site. A backup
held by several of them under the same name (archive-copy, both kept) is reported once per
site; an incremental one's parents are taken as restore takes them, whichever site holds it:
each from the first site holding it (the site, then its moved_from sites), so a broken or
damaged copy there breaks the child even where another site's copy is sound.

With --restore: restores a backup into a scratch directory (without --basebackup the one
hoard restore would choose, among the backups of the database system of the site's first
node that answers, those of its moved_from sites included; a warning says when none
does), starts PostgreSQL of its major version
on it (found with --pg-bin-dir, on PATH, in pg_bin_directory, /usr/lib/postgresql/<major>/bin,
/usr/pgsql-<major>/bin or $HOARD_CACHE/pg/<major>/bin), lets it replay the archive (to the
target, or to its end), checks that it accepts connections, that recovery reached the newest
archived WAL, that every database answers, amcheck's bt_index_check on every btree index
(when the extension is available) and pg_checksums --check (when checksums are on), then
stops it and removes the scratch directory; one that a killed run left in the same place is
removed by the next. See docs/verifying.md.

Both decrypt what an encrypted site stores: a site whose encryption keys are all public
halves (the daemon's configuration) is refused before anything is read (exit 2), naming
where the private key goes.

EXIT STATUS: 0 everything checked is sound; 1 a problem was found (the output names it),
a check could not be made (the storage failed: the message names the object, and no
backup is called broken), the test restore failed, or it could not be run because the
storage failed (NOT RUN: the message names the object); 2 bad flags or configuration;
130 interrupted.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "full", Usage: "download and decode every chunk and WAL segment, and compare every file with the backup's backup_manifest"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.IntFlag{Name: "parallel", Usage: "`N` objects checked at once", DefaultText: "4"},
			&cli.BoolFlag{Name: "restore", Usage: "restore into a scratch directory and test the result with PostgreSQL"},
			&cli.StringFlag{Name: "basebackup", Usage: "with --restore: backup `NAME` to test (default: the newest that reaches the target)"},
			&cli.StringFlag{Name: "target-time", Usage: "with --restore: recover to `TIME` (ISO 8601 with a zone) instead of the end of the archive"},
			&cli.StringFlag{Name: "scratch-dir", Usage: "with --restore: make the scratch directory in `DIR` (default: the system temp directory)"},
			&cli.StringFlag{Name: "pg-bin-dir", Usage: "with --restore: PostgreSQL binaries `DIR` of the backup's major version"},
			&cli.StringFlag{Name: "as-user", Usage: "with --restore as root: run PostgreSQL as `USER` (default postgres)"},
			&cli.StringFlag{Name: "db-user", Usage: "with --restore: `ROLE` the checks connect as (default: postgres, then the server's user)"},
		},
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	if err := noArgs(c, "see hoard verify --help"); err != nil {
		return err
	}
	if c.Bool("restore") {
		return runRestoreTest(c)
	}
	for _, f := range []string{"basebackup", "target-time", "scratch-dir", "pg-bin-dir", "as-user", "db-user"} {
		if c.IsSet(f) {
			return usagef("add --restore, or leave --"+f+" out", "--%s applies to --restore only", f)
		}
	}
	// The sites it moved from too: restore counts their backups, WAL
	// and timeline histories as the site's own.
	env, closeAll, err := openSiteAll(c)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := publicKeysOnly(env); err != nil {
		return err
	}
	if hint := missingRoot(env.site); hint != "" {
		env.log.Warn().Msg(hint)
	}
	rep, err := verify.Run(c.Context, verify.Options{Archive: env.archive, Full: c.Bool("full"), Parallel: c.Int("parallel"), Logger: env.log})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, rep); err != nil {
			return err
		}
	} else if err := writeVerifyTable(c.App.Writer, rep); err != nil {
		return err
	}
	if !rep.OK() {
		return &exitError{code: ExitFailure, err: fmt.Errorf("verify: site %s: problems found (see above)", env.name)}
	}
	return nil
}

// publicKeysOnly is the usage error of a site with encryption keys, none
// of them with its private half, and no unencrypted_objects_before: no
// object it stores can be read here (an unencrypted one is refused as
// tampered), so verify would call every backup broken, which only this
// configuration makes them. nil otherwise.
func publicKeysOnly(env *siteEnv) error {
	s := env.site
	if len(s.EncryptionKeys) == 0 || s.UnencryptedObjectsBefore != "" {
		return nil
	}
	for _, k := range s.EncryptionKeys {
		if k.Private != "" {
			return nil
		}
	}
	id := s.EncryptionKeyID
	if id == "" {
		id = sortedKeys(s.EncryptionKeys)[0]
	}
	hint := fmt.Sprintf("add the private key as encryption_keys.%s.private of site %s, or run verify where it is", id, env.name)
	if env.cfg.File == "" {
		hint = fmt.Sprintf("set HOARD_ENCRYPTION_PRIVATE_KEY_FILE (or HOARD_ENCRYPTION_PRIVATE_KEY) to the private key of %s, or run verify where it is", id)
	}
	return usagef(hint, "site %s holds only the public half of its encryption keys: verify decrypts the backups, and can read none here", env.name)
}

// writeVerifyTable prints one line per backup, then every problem. Where
// the report names the site holding each backup (a site with moved_from),
// a SITE column says it, and each backup's problems name it too.
func writeVerifyTable(w io.Writer, rep *verify.Report) error {
	sites := slices.ContainsFunc(rep.Backups, func(b verify.BackupReport) bool { return b.Site != "" })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if sites {
		printf(tw, "BACKUP\tSITE\tSTATUS\tREACHES LSN\tREACHES SEGMENT\tREACHES TIME (AT LEAST)\tPROBLEMS\n")
	} else {
		printf(tw, "BACKUP\tSTATUS\tREACHES LSN\tREACHES SEGMENT\tREACHES TIME (AT LEAST)\tPROBLEMS\n")
	}
	for _, b := range rep.Backups {
		reachTime := "unknown"
		if b.ReachTimeAtLeast != nil {
			reachTime = tableTime(*b.ReachTimeAtLeast)
		}
		if sites {
			printf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", b.Name, dash(b.Site), b.Status, dash(b.ReachLSN), dash(b.ReachSegment), reachTime, len(b.Problems))
			continue
		}
		printf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", b.Name, b.Status, dash(b.ReachLSN), dash(b.ReachSegment), reachTime, len(b.Problems))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	mode := "quick"
	if rep.Full {
		mode = "full"
	}
	printf(w, "\n%s, %s (newest %s), %s check in %s\n", plural(len(rep.Backups), "backup", "backups"), plural(rep.Segments, "WAL segment", "WAL segments"), dash(rep.Newest), mode,
		time.Duration(rep.Elapsed).Round(time.Millisecond))
	printWALEnd(w, rep.WALEnd)
	for _, b := range rep.Backups {
		name := b.Name
		if b.Site != "" {
			name += " (site " + b.Site + ")"
		}
		for _, p := range b.Problems {
			printf(w, "  %s: %s\n", name, p)
		}
		for _, n := range b.Notes {
			printf(w, "  %s: note: %s\n", name, n)
		}
	}
	for _, p := range rep.Problems {
		printf(w, "  archive: %s\n", p)
	}
	for _, n := range rep.Notes {
		printf(w, "  archive: note: %s\n", n)
	}
	if rep.OK() {
		printf(w, "OK: every backup is restorable through the newest stored WAL\n")
	} else {
		printf(w, "PROBLEMS FOUND\n")
	}
	return nil
}

// printWALEnd says where the stored WAL ends and how long ago it was
// stored: the recovery point a restore reaches now.
func printWALEnd(w io.Writer, e *verify.WALEnd) {
	if e == nil {
		printf(w, "Stored WAL ends: nothing stored\n")
		return
	}
	printf(w, "Stored WAL ends at LSN %s on timeline %d (%s), stored %s, %s ago\n",
		e.LSN, e.Timeline, e.File, tableTime(e.StoredAt), (time.Duration(e.AgeSeconds) * time.Second).String())
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runRestoreTest runs hoard verify --restore.
func runRestoreTest(c *cli.Context) error {
	if c.Bool("full") {
		return usagef("run hoard verify --full separately", "--full does not apply to --restore")
	}
	// Only --target-time is defined here; restoreTarget reads the other
	// target flags as unset.
	target, err := restoreTarget(c)
	if err != nil {
		return err
	}
	// With the sites it moved from, as hoard restore (and the daemon's
	// test restore) sees it: their backups are chosen from too.
	env, closeAll, err := openSiteAll(c)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := publicKeysOnly(env); err != nil {
		return err
	}
	rc, err := restore.WALFetchCommand(c.String("config"), env.name)
	if err != nil {
		return err
	}
	// The automatic choice goes by the backups of the node's system:
	// another cluster's, copied from a site sharing the key pair, would
	// fail the test at this site's WAL.
	systemID := ""
	if b := c.String("basebackup"); b == "" || b == "latest" {
		if systemID, err = nodeSystemID(c.Context, env.site); err != nil {
			env.log.Warn().Err(err).Msg("the cluster's system identifier is not known: the test chooses among the backups of every database system")
		}
	}
	res, err := verify.RestoreTest(c.Context, verify.RestoreTestOptions{
		Archive:        env.archive,
		Backup:         c.String("basebackup"),
		SystemID:       systemID,
		Target:         target,
		PGBinDir:       c.String("pg-bin-dir"),
		SitePGBinDir:   env.site.PGBinDirectory,
		ScratchDir:     c.String("scratch-dir"),
		RestoreCommand: rc,
		RunAsUser:      c.String("as-user"),
		DBUser:         c.String("db-user"),
		Parallel:       env.cfg.RestoreProcessCount,
		Logger:         env.log,
	})
	if res != nil {
		if c.Bool("json") {
			if werr := writeJSON(c.App.Writer, res); werr != nil {
				return werr
			}
		} else {
			writeRestoreTest(c.App.Writer, res)
		}
	}
	if err != nil {
		return restoreError(err, env.site)
	}
	return nil
}

// writeRestoreTest prints a restore test's result.
func writeRestoreTest(w io.Writer, r *verify.RestoreTestResult) {
	status := "PASSED"
	switch {
	case r.StorageFailed:
		// Nothing was tested: the error says which object the storage
		// failed to send.
		status = "NOT RUN (the storage failed)"
	case !r.OK:
		status = "FAILED"
	}
	printf(w, "restore test %s: backup %s, PostgreSQL %d (%s)\n", status, dash(r.Backup), r.PGMajor, dash(r.BinDir))
	printf(w, "  restore %s, replay %s, checks %s (total %s)\n",
		time.Duration(r.Restore).Round(time.Millisecond), time.Duration(r.Replay).Round(time.Millisecond),
		time.Duration(r.Checking).Round(time.Millisecond), time.Duration(r.Elapsed).Round(time.Millisecond))
	if r.ReplayedTo != "" {
		printf(w, "  recovery ended at %s\n", r.ReplayedTo)
	}
	for _, ch := range r.Checks {
		printf(w, "  %-10s %-11s %s\n", ch.Name, ch.Status, strings.ReplaceAll(ch.Detail, "\n", " "))
	}
	for _, p := range r.PassedOver {
		printf(w, "  PASSED OVER: backup %s cannot be restored: %s\n", p.Backup, p.Error)
	}
	if r.Error != "" {
		printf(w, "  error: %s\n", r.Error)
	}
}
