package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/verify"
)

func archiveSyncCommand() *cli.Command {
	return &cli.Command{
		Name:      "archive-sync",
		Usage:     "store WAL the archive lacks from the local pg_wal, and check the archive is continuous",
		UsageText: "hoard archive-sync [--max-hash-checks N] [--no-verify] [--create-new-backup-on-failure] [--json]",
		Description: `PGHoard's pghoard_archive_sync, run on the database host. Reads the pg_wal of the site's
pg_data_directory and, from the newest complete segment back to the start segment of the
newest backup of that cluster (the system identifier in its global/pg_control; another
cluster's backups, copied from a site sharing the key pair, do not count), stores every
segment the archive lacks and compares the stored hash of up to
--max-hash-checks archived ones with the local file (a mismatch is reported, never
overwritten). It first asks the site's first node, when that node is the cluster of
pg_data_directory (same system identifier), how far its WAL is flushed
(pg_current_wal_flush_lsn() on a primary, the WAL a standby received or replayed): a segment
that ends at or before that position is complete and stored (so is the one an idle server
has just switched out of); the segment the position falls inside is the one the server is
writing and is left out, and so is any after it. The newest local segment is stored only if
its WAL also runs to its end or to a WAL switch. When the node cannot be asked (unreachable,
another cluster, system identifier unknown) it warns, and the newest segment of the newest
timeline is left out as the one being written, though after a switch on an idle server it
is complete. An older timeline's segment at or after the newest local position, or at or
after that timeline's switch point in a local .history file, is left out: partial
(PostgreSQL names it .partial only when archiving is on), or off the current timeline.
Stores the local .history files the archive lacks. Then, unless --no-verify, checks that the
archive's WAL continues without a gap from the newest backup's start to the newest segment;
with --create-new-backup-on-failure a gap before the segment left out as being written makes
it take a new basebackup (a gap only at or after that segment closes at a later sync, which
a new backup would not hasten: it exits 1 saying so, and takes none). After a new backup it
asks the server again and stores the new backup's WAL from pg_wal, then checks the new
backup's WAL instead: a primary's backup ends with a WAL switch, so its WAL is all stored; a
standby's ends in the segment its primary is writing, which a later run stores once the
primary has finished it: it exits 1 saying so, without waiting for it. A timeline history
file stored damaged (in local storage, a FIFO, a socket or a directory under its name) that
PostgreSQL asks for while it recovers the backup checked makes hoard restore refuse it,
whatever its WAL: it exits 1 naming the file (damaged_history with --json), as hoard check
does, and takes no new basebackup for it (the file would stop that backup's recovery too):
move it away and store a good copy.

The WAL it stores records pg-version as wal-push does: the site's pg_version when set, else
the server_version_num of the site's first node when that node is the cluster of
pg_data_directory (from the same one short connection), else the major version.

EXIT STATUS: 0 the archive is continuous (after a new basebackup, from that backup's start) and
no hash differs; 1 a gap remains (a standby's new basebackup still needs the segment its
primary is writing), a timeline history file the backup's recovery asks for is stored
damaged, a hash differs, or storing failed; 2 bad flags or configuration; 130
interrupted.`,
		Flags: []cli.Flag{
			allowRootFlag,
			&cli.IntFlag{Name: "max-hash-checks", Value: archive.DefaultMaxHashChecks, Usage: "compare the hashes of at most `N` archived segments (0: none)"},
			&cli.BoolFlag{Name: "no-verify", Usage: "skip the continuity check"},
			&cli.BoolFlag{Name: "create-new-backup-on-failure", Usage: "take a new basebackup when the archive is not continuous"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		},
		Action: runArchiveSync,
	}
}

func runArchiveSync(c *cli.Context) error {
	if err := noArgs(c, "see hoard archive-sync --help"); err != nil {
		return err
	}
	if c.Bool("no-verify") && c.Bool("create-new-backup-on-failure") {
		return usagef("give one of them", "--create-new-backup-on-failure needs the continuity check that --no-verify skips")
	}
	env, err := openSiteToWrite(c, "archive-sync")
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	if env.site.PGDataDirectory == "" {
		return usagef("set pg_data_directory in the site's configuration (or HOARD_PG_DATA_DIRECTORY)", "site %s has no pg_data_directory", env.name)
	}
	checks := c.Int("max-hash-checks")
	if checks == 0 {
		checks = -1 // Archive.Sync reads 0 as its default
	}
	// The cluster's system identifier: the sync starts from the newest
	// backup of its system (another cluster's, copied from a site sharing
	// the key pair, does not count), and the node is asked for its
	// version only when it is that cluster.
	systemID := ""
	sysID, idErr := archive.ClusterSystemID(env.site.PGDataDirectory)
	if idErr != nil {
		idErr = fmt.Errorf("system identifier of %s: %w", env.site.PGDataDirectory, idErr)
		env.log.Warn().Err(idErr).Msg("the cluster's system identifier is not known: the sync starts from the newest backup of any database system")
	} else {
		systemID = strconv.FormatUint(sysID, 10)
	}
	// The server that writes pg_wal, asked before each sync when the
	// site's first node is the cluster whose pg_wal is read: how far its
	// WAL is flushed, which says which local segments are complete
	// (PGHoard's archive_sync asks the server for its position too), and
	// its version.
	var srv replication.Server
	var srvErr error
	// As wal-push records it: the site's pg_version, else the node's
	// version when the node is the cluster whose pg_wal is read.
	pgVersion := func(ctx context.Context) int {
		if env.site.PGVersion != 0 {
			return env.site.PGVersion
		}
		if srv.Version != 0 {
			return srv.Version
		}
		env.log.Warn().Err(srvErr).Msg("pg-version of the WAL stored records the major version only; set the site's pg_version to record the full one without asking the server")
		return 0
	}
	sync := func(checks int) (*archive.SyncResult, error) {
		srv, srvErr = replication.Server{}, idErr
		if idErr == nil {
			srv, srvErr = nodeServer(c.Context, env, sysID, env.site.PGDataDirectory)
			if srvErr == nil && srv.Flushed == 0 {
				srvErr = errors.New("the standby reports no WAL received or replayed")
			}
		}
		if srvErr != nil {
			env.log.Warn().Err(srvErr).Msg("the server's WAL flush position is not known: the newest segment in pg_wal is left out as the one being written, though after a WAL switch on an idle server it may be complete; to store it, make the site's first node the server of pg_data_directory, reachable from here")
		}
		return env.archive.Sync(c.Context, archive.SyncOptions{
			PGData:        env.site.PGDataDirectory,
			MaxHashChecks: checks,
			HashAlgorithm: env.cfg.HashAlgorithm,
			SystemID:      systemID,
			PGVersion:     pgVersion,
			Flushed:       srv.Flushed,
			Logger:        env.log,
		})
	}
	res, err := sync(checks)
	if err != nil {
		return err
	}
	// The archive's WAL from the newest backup's start, after the sync.
	var chain *verify.Chain
	if !c.Bool("no-verify") && res.Backup != nil {
		if chain, err = verify.CheckContinuity(c.Context, env.archive, res.Backup); err != nil {
			return err
		}
	}
	var failures []string
	if len(res.Mismatches) > 0 {
		failures = append(failures, fmt.Sprintf("%s from the local ones (left alone): %s",
			plural(len(res.Mismatches), "archived segment differs", "archived segments differ"), strings.Join(res.Mismatches, ", ")))
	}
	newBackup := ""
	if chain != nil && !chain.Continuous() {
		gaps := make([]string, len(chain.Gaps))
		for i, g := range chain.Gaps {
			gaps[i] = g.String()
		}
		gone, _ := gapKinds(chain.Gaps, res.InProgress)
		// Only WAL gone from pg_wal needs a new basebackup: a gap at the
		// segment the server is writing closes at a later sync, and a new
		// backup would not close it sooner.
		if c.Bool("create-new-backup-on-failure") && gone {
			env.log.Warn().Strs("gaps", gaps).Msg("archive not continuous: taking a new basebackup")
			if len(env.site.Nodes) == 0 {
				return usagef("add a node to the site's nodes", "site %s has no nodes to take a new basebackup from", env.name)
			}
			o := basebackupOptions(c, env, time.Now(), basebackup.ReasonRequested)
			o.Fast = true
			// A standby's backup ends in the segment its primary is
			// writing, which only a later sync stores: waiting for it
			// here would wait for this command itself.
			o.NoStandbyWait, o.OnStandby = true, noteStandbyBackup(c, env)
			info, err := basebackup.Run(c.Context, o)
			if err != nil {
				return fmt.Errorf("archive not continuous (WAL missing: %s) and the new basebackup failed: %w", strings.Join(gaps, ", "), err)
			}
			newBackup = info.Name
			// The new backup's WAL that pg_wal holds, asking the server
			// again where its WAL is flushed: a primary's backup ends
			// with a WAL switch, so its end segment is complete; a
			// standby's ends in the segment its primary is writing,
			// stored by a later sync. The hashes were compared by the
			// first sync (and its differences reported above).
			more, err := sync(-1)
			if err != nil {
				return fmt.Errorf("new basebackup %s stored; store its WAL: %w", info.Name, err)
			}
			more.Pushed = append(res.Pushed, more.Pushed...)
			more.HashChecked, more.Mismatches = res.HashChecked, res.Mismatches
			res = more
			if chain, err = verify.CheckContinuity(c.Context, env.archive, info); err != nil {
				return fmt.Errorf("new basebackup %s stored; check its WAL: %w", info.Name, err)
			}
			if !chain.Continuous() {
				gaps := make([]string, len(chain.Gaps))
				for i, g := range chain.Gaps {
					gaps[i] = g.String()
				}
				failures = append(failures, "new basebackup "+info.Name+" does not restore until its WAL is archived: WAL missing: "+strings.Join(gaps, ", ")+
					" ("+gapAdvice(chain.Gaps, res.InProgress, res.Flushed)+")")
			}
		} else {
			failures = append(failures, "archive not continuous from the newest backup's start: WAL missing: "+strings.Join(gaps, ", ")+
				" ("+gapAdvice(chain.Gaps, res.InProgress, res.Flushed)+")")
		}
	}
	// Whatever its WAL, hoard restore refuses the backup checked when
	// PostgreSQL asks for a timeline history file stored damaged while
	// it recovers it (hoard check fails on it too: checkChain). No new
	// basebackup is taken for it: the file stays in the way of the
	// new backup's recovery as well, until someone moves it away.
	refused := ""
	if chain != nil && chain.DamagedHistory != nil {
		checked := newBackup
		if checked == "" {
			checked = res.Backup.Name
		}
		refused = fmt.Sprintf("backup %s is not restorable: %v", checked, chain.DamagedHistory)
		failures = append(failures, refused)
	}
	if c.Bool("json") {
		out := struct {
			*archive.SyncResult
			Gaps           []verify.Gap `json:"wal_gaps"`
			Continuous     *bool        `json:"continuous"`
			DamagedHistory string       `json:"damaged_history,omitempty"`
			NewBackup      string       `json:"new_basebackup,omitempty"`
		}{SyncResult: res, Gaps: []verify.Gap{}, NewBackup: newBackup}
		if chain != nil {
			v := chain.Continuous()
			out.Continuous = &v
			if len(chain.Gaps) > 0 {
				out.Gaps = chain.Gaps
			}
			if chain.DamagedHistory != nil {
				out.DamagedHistory = chain.DamagedHistory.Error()
			}
		}
		if err := writeJSON(c.App.Writer, out); err != nil {
			return err
		}
	} else {
		writeSyncResult(c.App.Writer, res, chain, newBackup)
		if refused != "" {
			printf(c.App.Writer, "%s\n", refused)
		}
	}
	if len(failures) > 0 {
		return &exitError{code: ExitFailure, err: fmt.Errorf("archive-sync: %s", strings.Join(failures, "; "))}
	}
	return nil
}

// gapAdvice says what to do about the archive's gaps after a sync. The
// segment left out as in progress is in pg_wal, and so are those after
// it: a later run stores them once the server has finished them. By the
// server's flush position (flushed, "" when not known) it is the segment
// the server is writing; without it, the newest in pg_wal, which after a
// switch on an idle server may be complete, the next not begun. Missing
// segments before it are no longer in pg_wal: only a new basebackup
// closes that gap.
func gapAdvice(gaps []verify.Gap, inProgress, flushed string) string {
	gone, pending := gapKinds(gaps, inProgress)
	var advice []string
	switch {
	case pending && flushed != "":
		advice = append(advice, inProgress+" is in pg_wal, the segment the server is writing (its WAL is flushed to "+flushed+
			"): run archive-sync again once the server has finished it (pg_switch_wal() on the primary finishes it at once)")
	case pending:
		advice = append(advice, inProgress+" is in pg_wal, the newest segment there, which the server may still be writing: run archive-sync again once the server has written WAL into the next segment")
	}
	if gone {
		advice = append(advice, "the segments before it are no longer in pg_wal; take a new basebackup, or pass --create-new-backup-on-failure")
	}
	if !pending {
		advice = []string{"the segments are no longer in pg_wal; take a new basebackup, or pass --create-new-backup-on-failure"}
	}
	return strings.Join(advice, "; ")
}

// gapKinds tells whether any of the gaps lies before the segment left out
// as in progress (gone: no longer in pg_wal, or every gap when none was
// left out) and whether any reaches it (pending: in pg_wal, stored by a
// later sync).
func gapKinds(gaps []verify.Gap, inProgress string) (gone, pending bool) {
	pos := func(name string) string { return name[min(8, len(name)):] } // log and segment number, without the timeline
	for _, g := range gaps {
		if inProgress == "" || pos(g.First) < pos(inProgress) {
			gone = true
		}
		if inProgress != "" && pos(g.Last) >= pos(inProgress) {
			pending = true
		}
	}
	return gone, pending
}

func writeSyncResult(w io.Writer, r *archive.SyncResult, chain *verify.Chain, newBackup string) {
	printf(w, "local WAL %s..%s: stored %s, compared %s, %d differ\n",
		dash(r.Oldest), dash(r.Newest), plural(len(r.Pushed), "missing file", "missing files"),
		plural(r.HashChecked, "hash", "hashes"), len(r.Mismatches))
	for _, n := range r.Pushed {
		printf(w, "  stored %s\n", n)
	}
	for _, n := range r.Mismatches {
		printf(w, "  DIFFERS %s\n", n)
	}
	switch {
	case chain == nil:
		printf(w, "continuity not checked\n")
	case chain.Continuous():
		printf(w, "archive continuous from %s to %s\n", chain.Start, dash(chain.Newest))
	default:
		for _, g := range chain.Gaps {
			printf(w, "  WAL missing: %s\n", g)
		}
	}
	if newBackup != "" {
		printf(w, "took new basebackup %s\n", newBackup)
	}
}
