package command

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/daemon"
)

// progressLogInterval is how often a basebackup without a terminal logs its
// progress.
const progressLogInterval = 10 * time.Second

func basebackupCommand() *cli.Command {
	return &cli.Command{
		Name:  "basebackup",
		Usage: "take one basebackup of the site now",
		Description: `Takes a basebackup of the site's first node (PostgreSQL 13 or later) and stores it in
PGHoard's pghoard-bb-v2 format: chunk tars of basebackup_chunk_size, then the control
object, which makes the backup visible to hoard list and restore. A failed or interrupted
backup deletes what it stored.

With basebackup_mode local-tar (the default when pg_data_directory is set and readable
here), hoard starts the backup with pg_backup_start over an SQL connection, reads the data
directory and the tablespaces itself with basebackup_threads workers that compress,
encrypt and upload chunks in parallel, verifies data page checksums, and ends it with
pg_backup_stop. Otherwise (basebackup_mode basic or pipe, or no readable data directory)
the server sends it over the replication protocol (BASE_BACKUP) and verifies the
checksums itself.
Either way a damaged data page does not fail the backup: it is stored with the page as
read, each failure logged with its file and block and recorded in the backup's metadata
(hoard-checksum-failures) and manifest, and the command exits 0 with a warning in its
summary (with --json, in its "warnings"). A BASE_BACKUP the server fails for damaged
pages before it has sent all of it stores nothing and exits 1, naming the files and
blocks. Over BASE_BACKUP the files and blocks are known only when the server's warnings
are in English (its lc_messages, or a role that may set lc_messages: a superuser, or on
PostgreSQL 15+ one granted SET ON PARAMETER lc_messages); otherwise the server's count is
recorded with files_unknown, and the server's log names them (docs/backup-restore.md,
Damaged data pages).

The backup is restorable only with its WAL, from its start to its end segment: run the
daemon (or archive_command) so that it is archived. From a primary, with active_backup_mode
other than archive_command (the daemon streams the WAL), when no daemon of this
configuration answers on http_address:http_port (one of another configuration there, its
site of that name stored elsewhere, refuses to be told of the backup: 421) and the
archive does not hold that WAL yet, the backup is stored and the command exits 0, but
warns (on stderr, and in the summary; with --json, in its "warnings") that nothing
archives it, naming the end segment: start the daemon, or run hoard archive-sync on the
primary to copy the WAL from its pg_wal, before the primary recycles it.

From a standby (the node is in recovery), PostgreSQL does not wait for that WAL to be
archived (hoard asks it not to even with archive_mode = always, where that wait has no
end while the primary is idle), and the backup ends in the segment the primary is
writing. hoard then waits,
after storing the backup, until the archive holds its WAL through its end (the complete
segment, or the daemon's .partial copy of the segment in progress: a daemon streaming the
site's WAL stores it once it sees the new backup, whatever wal_partial_upload_interval;
hoard tells a daemon answering on http_address:http_port of the backup, which it
otherwise sees within a minute), for --wal-timeout at most, and says so. When the time runs
out the command fails (exit 1) saying which segment is missing; the backup stays stored
and restores once that WAL is archived (the daemon stores it, the primary writes more, or
runs pg_switch_wal()).

When a hoard daemon runs with this configuration (it answers on http_address:http_port),
the backup is requested from it instead, so that backups of a site never overlap; the
daemon takes it at once, or right after the backup it is taking. Without --wait the
command exits 0 once the daemon has queued the request, without waiting for the backup
(see hoard list); a request that the daemon's shutdown (or a reload restarting the site)
cuts short is dropped, with the warning "basebackup request dropped" in the daemon's log:
request it again. With --wait it waits for the backup taken for its own request (it asks
the daemon every second): once stored it prints the backup's summary (--json: as JSON)
and exits 0; if that backup fails it exits 1 with the daemon's error for it (the daemon
keeps the request and retries it); if the daemon drops the request, forgets it (it
restarted) or stops answering (connection refused), it exits 1 saying so. A poll that
fails on the way (no answer within 10 s, a connection reset or closed, a 500, 502, 503,
504, 408 or 429 from the daemon or a proxy in front of it) is asked again with backoff
(1 s doubling to 10 s) and a warning on stderr; after a minute of such failures in a row
the command exits 1 naming the request and the last state it saw (the daemon may go on
with it: see hoard list). A 401 (credentials) or another answer ends the wait at once.
While a request already waits for the daemon, another is refused (409, "a basebackup
request already waits") and the command fails (exit 1), with --wait or not. A site
already stopping refuses the request (503, "the site is stopping"), and so does one stopped
by an error while the daemon runs its other sites (503, "the site is stopped by an error"):
the command fails (exit 1). A daemon of another configuration answering there (another cluster's hoard on
the same host and port, its site of that name stored elsewhere) refuses the request (421,
"this daemon stores the site elsewhere") rather than back up its own cluster, and the
command fails (exit 1): give each configuration its own http_port. Places are compared,
not spellings: a local directory relative, with a trailing slash or reached through a
symbolic link, a prefix with its slashes, an endpoint's default port given or not name
the same place as the daemon's spelling of it. --local takes the backup in this process regardless; a backup taken here
is always waited for.

--incremental takes a PostgreSQL 17+ incremental backup over the replication protocol:
hoard sends the backup_manifest of the newest backup the site itself stores of the same
system and timeline (its parent; UPLOAD_MANIFEST; never a moved_from site's) and the server
sends only the blocks changed since (BASE_BACKUP INCREMENTAL). A parent whose chain restore
would refuse (a backup of it missing, broken, or sharing its name with a damaged object)
is not used: the command fails (exit 1) naming it. Nor is one whose chain continues into a
moved_from site (a partial archive-copy): when that chain is sound, the command fails
(exit 1) saying the parent lies in that moved_from site and a new chain starts with a full
backup in this site; nothing is broken. The server needs summarize_wal = on since before the parent
began; a standby also needs a checkpoint of its primary, replayed, since the parent
ended (a backup of a standby starts at the last one it replayed). Restore rebuilds the
files from the chain of parents down to a full backup. An
incremental backup is always taken in this process, as with --local (the daemon takes
its own on the basebackup_incremental_interval_hours schedule).

On a terminal a progress bar is drawn on stderr; otherwise progress is logged every 10 s.
The summary goes to stdout.`,
		Flags: []cli.Flag{
			allowRootFlag,
			&cli.BoolFlag{Name: "fast", Usage: "request an immediate checkpoint instead of a spread one"},
			&cli.IntFlag{Name: "max-rate", Usage: "limit the server's send rate to `KB/s` (32 to 1048576; 0 = unlimited); takes the backup over the replication protocol"},
			uploadRateFlag,
			&cli.BoolFlag{Name: "no-wait", Usage: "do not wait for the backup's WAL to be archived (by the server's archive_command; from a standby, in the archive)"},
			&cli.DurationFlag{Name: "wal-timeout", Usage: "from a standby: how long to wait for the archive to hold the backup's WAL", Value: basebackup.DefaultWALTimeout},
			&cli.BoolFlag{Name: "json", Usage: "print the stored backup as JSON, as hoard list --json does, with the summary's warnings in \"warnings\" ([] for none)"},
			&cli.BoolFlag{Name: "local", Usage: "take the backup in this process even when a daemon runs"},
			&cli.BoolFlag{Name: "wait", Usage: "with a running daemon: wait until the backup taken for this request is stored (exit 0) or fails, or the request is dropped (exit 1)"},
			&cli.BoolFlag{Name: "incremental", Usage: "take a PostgreSQL 17+ incremental backup against the newest backup of the same system and timeline (needs summarize_wal = on)"},
		},
		Action: runBasebackup,
	}
}

func runBasebackup(c *cli.Context) error {
	decided := time.Now()
	rate := c.Int("max-rate")
	if rate != 0 && (rate < 32 || rate > 1048576) {
		return usagef("use 32 to 1048576, or 0 for no limit", "--max-rate %d is out of range", rate)
	}
	if d := c.Duration("wal-timeout"); d <= 0 {
		return usagef("give a positive duration such as 5m, or --no-wait not to wait", "--wal-timeout %v is not positive", d)
	}
	env, err := openSite(c)
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	if err := checkUploadKey(env.site); err != nil {
		return err
	}
	if len(env.site.Nodes) == 0 {
		return usagef("add a node to the site's nodes", "site %s has no nodes", env.name)
	}
	if !c.Bool("local") && !c.Bool("incremental") {
		id, err := daemon.RequestBackup(c.Context, *httpConfig(env.cfg), env.name, siteDestination(env.name, env.site))
		if err == nil {
			if c.Bool("fast") || rate != 0 || c.Bool("no-wait") || c.IsSet("wal-timeout") {
				env.log.Warn().Msg("--fast, --max-rate, --no-wait and --wal-timeout apply to backups taken here; the daemon uses its own settings (use --local)")
			}
			if c.Bool("wait") {
				return waitDaemonBackup(c, env, id)
			}
			printf(c.App.Writer, "basebackup of site %s requested from the running daemon; see hoard list\n", env.name)
			return nil
		}
		if !errors.Is(err, daemon.ErrNoDaemon) {
			return fmt.Errorf("request a basebackup from the daemon at %s:%d: %w (use --local to take it here)", env.cfg.HTTPAddress, env.cfg.HTTPPort, err)
		}
	}

	if err := refuseRootStore(c, os.Geteuid(), "basebackup", env.site.ObjectStorage); err != nil {
		return err
	}
	bar := &progressBar{w: os.Stderr, term: isTerminal(os.Stderr)}
	o := basebackupOptions(c, env, decided, basebackup.ReasonRequested)
	o.Fast, o.MaxRate, o.NoWait, o.WALTimeout = c.Bool("fast"), rate, c.Bool("no-wait"), c.Duration("wal-timeout")
	if c.Bool("incremental") {
		o.Incremental, o.Mode = true, basebackup.ModeStream
	}
	if rate != 0 && o.Mode != basebackup.ModeStream {
		// Only BASE_BACKUP has a rate limit.
		o.Mode = basebackup.ModeStream
		env.log.Info().Msg("--max-rate: basebackup over the replication protocol")
	}
	fromStandby, onStandby := false, noteStandbyBackup(c, env)
	o.OnStandby = func(info *archive.BackupInfo) { fromStandby = true; onStandby(info) }
	if bar.term {
		o.Progress = bar.draw
	} else {
		o.Progress = bar.logEvery(env, progressLogInterval)
	}
	info, err := basebackup.Run(c.Context, o)
	bar.end()
	if err != nil {
		return err
	}
	// A standby's backup has waited for its WAL (or says what it needs).
	unarchived := ""
	if !fromStandby {
		if unarchived = unarchivedWAL(c.Context, env, info); unarchived != "" {
			env.log.Warn().Str(logBackup, info.Name).Str("segment", info.EndWALSegment).Str("why", unarchived).
				Msg("the backup does not restore until its WAL is archived")
		}
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, newBasebackupJSON(info, unarchived))
	}
	printSummary(c.App.Writer, info)
	printUnarchivedWAL(c.App.Writer, unarchived)
	return nil
}

// basebackupJSON is hoard basebackup --json's output: the stored backup
// as hoard list --json shows it, and the warnings its summary gives.
type basebackupJSON struct {
	backupJSON
	// Warnings are the summary's WARNING lines (damaged data pages,
	// WAL nothing archives), [] for none: automation reads stdout, and
	// stderr's log may go elsewhere.
	Warnings []string `json:"warnings"`
}

// newBasebackupJSON is basebackup --json's view of b; unarchived is
// unarchivedWAL's reason ("" for none).
func newBasebackupJSON(b *archive.BackupInfo, unarchived string) basebackupJSON {
	out := basebackupJSON{backupJSON: newBackupJSON(b), Warnings: []string{}}
	if w := checksumWarning(b); w != "" {
		out.Warnings = append(out.Warnings, w)
	}
	if unarchived != "" {
		out.Warnings = append(out.Warnings, unarchived)
	}
	return out
}

// daemonPollInterval is how often basebackup --wait asks the daemon
// about its request.
const daemonPollInterval = time.Second

// waitDaemonBackup waits for the daemon's backup for request id
// (daemon.WaitBackup) and prints the stored backup as the archive lists
// it, as a backup taken here is printed.
func waitDaemonBackup(c *cli.Context, env *siteEnv, id string) error {
	if id == "" {
		return errors.New("the daemon queued the basebackup but names no request to wait for (a hoard daemon older than --wait): " +
			"see hoard list, or upgrade the daemon")
	}
	env.log.Info().Str("request", id).Msg("basebackup requested from the running daemon: waiting for it")
	st, err := daemon.WaitBackup(c.Context, *httpConfig(env.cfg), env.name, id, daemon.WaitOptions{
		Interval: daemonPollInterval,
		OnState: func(st daemon.RequestStatus) {
			env.log.Info().Str("request", id).Str("state", st.State).Msg("basebackup request")
		},
		OnRetry: func(err error, delay time.Duration) {
			env.log.Warn().Err(err).Str("request", id).Stringer("retry_in", delay).
				Msg("could not ask the daemon about the basebackup request: asking again")
		},
	})
	if err != nil {
		return err
	}
	backups, err := env.archive.ListBackups(c.Context)
	if err != nil {
		return fmt.Errorf("the daemon stored basebackup %s; list it: %w", st.Backup, err)
	}
	for _, b := range backups {
		if b.Name != st.Backup {
			continue
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, newBasebackupJSON(b, ""))
		}
		printSummary(c.App.Writer, b)
		return nil
	}
	return fmt.Errorf("the daemon says it stored basebackup %s, but the archive lists no such backup: check the daemon's log and hoard list", st.Backup)
}

// noteStandbyBackup returns Options.OnStandby for a backup taken here: it
// tells a running daemon of the stored backup (daemon.NoteBackupStored),
// so that a daemon streaming the site's WAL from the standby stores the
// backup's WAL as soon as it has it, rather than once it next lists the
// backups (within the minute).
func noteStandbyBackup(c *cli.Context, env *siteEnv) func(*archive.BackupInfo) {
	return func(info *archive.BackupInfo) {
		err := daemon.NoteBackupStored(c.Context, *httpConfig(env.cfg), env.name, siteDestination(env.name, env.site))
		switch {
		case err == nil:
			env.log.Info().Str(logBackup, info.Name).
				Msg("told the running daemon of the backup: if it streams this site's WAL, it stores the backup's WAL as soon as it has received it")
		case errors.Is(err, daemon.ErrNoDaemon):
			env.log.Info().Str(logBackup, info.Name).Int("http_port", env.cfg.HTTPPort).
				Msg("no hoard daemon answers on this host's http_port: unless one streaming this site's WAL runs elsewhere, " +
					"the backup's WAL is archived only once the primary finishes the segment")
		default:
			env.log.Warn().Err(err).Str(logBackup, info.Name).
				Msg("could not tell the daemon of the backup: if it streams this site's WAL, it sees the backup when it next lists the backups " +
					"(within a minute, or once its maintenance mode ends)")
		}
	}
}

// basebackupOptions builds the options of a basebackup of the site's first
// node, as the site's configuration asks; callers set Fast, MaxRate, NoWait
// and Progress.
func basebackupOptions(c *cli.Context, env *siteEnv, decided time.Time, reason string) basebackup.Options {
	return basebackup.Options{
		ConnString:         env.site.Nodes[0].ConnString(),
		Archive:            env.archive,
		Mode:               basebackupMode(env.site),
		ChunkSize:          env.site.BasebackupChunkSize,
		DeltaMinFileSize:   env.site.BasebackupDeltaModeMinDeltaFileSize,
		DeltaChunkSize:     env.site.BasebackupDeltaModeChunkSize,
		TempDir:            basebackupTempDir(env.cfg, env.name),
		DeltaHintFile:      basebackupDeltaHintFile(env.cfg, env.name),
		Parallel:           basebackupParallel(env.site),
		CompressionThreads: env.site.BasebackupCompressionThreads,
		Reason:             reason,
		ActiveBackupMode:   env.site.ActiveBackupMode,
		BasebackupMode:     basebackupModeName(env.site),
		DecisionTime:       decided,
		PGData:             env.site.PGDataDirectory,
		Version:            "hoard " + c.App.Version,
		Logger:             env.log,
	}
}

// basebackupTempDir is where delta mode stages new delta objects:
// <backup_location>/<site>/basebackup_incoming, as PGHoard's, or the
// system's temporary directory without backup_location.
func basebackupTempDir(cfg *config.Config, site string) string {
	if cfg.BackupLocation == "" {
		return ""
	}
	return filepath.Join(cfg.BackupLocation, site, "basebackup_incoming")
}

// basebackupDeltaHintFile is where delta mode keeps its last backup's
// large files' sizes and modification times for the next backup:
// <backup_location>/<site>/delta_hint.json, none without backup_location.
func basebackupDeltaHintFile(cfg *config.Config, site string) string {
	if cfg.BackupLocation == "" {
		return ""
	}
	return filepath.Join(cfg.BackupLocation, site, "delta_hint.json")
}

// basebackupMode maps basebackup_mode to how a backup reads the cluster:
// delta to delta mode, PGHoard's other modes that read the data directory
// (local-tar, local-tar-delta-stats) to local-tar, basic and pipe
// (pg_basebackup in PGHoard) to BASE_BACKUP, unset to local-tar when the
// data directory is readable.
func basebackupMode(site *config.Site) basebackup.Mode {
	switch site.EffectiveBasebackupMode() {
	case "":
		return basebackup.ModeAuto
	case config.BasebackupBasic, config.BasebackupPipe:
		return basebackup.ModeStream
	case config.BasebackupDelta:
		return basebackup.ModeDelta
	}
	return basebackup.ModeLocal
}

// basebackupModeName is the basebackup-mode metadata of the site's
// backups: delta for delta mode; every other mode writes PGHoard's
// local-tar format.
func basebackupModeName(site *config.Site) string {
	if site.EffectiveBasebackupMode() == config.BasebackupDelta {
		return config.BasebackupDelta
	}
	return config.BasebackupLocalTar
}

// basebackupParallel is the number of chunks a backup has in flight:
// basebackup_threads, at most basebackup_chunks_in_progress when it is set
// (basebackup lowers it further to fit its memory budget).
func basebackupParallel(site *config.Site) int {
	n := site.BasebackupThreads
	if c := site.BasebackupChunksInProgress; c > 0 {
		n = min(n, c)
	}
	return max(1, n)
}

// printSummary prints a stored backup in a few lines.
func printSummary(w io.Writer, b *archive.BackupInfo) {
	printf(w, "basebackup %s stored\n", b.Name)
	printf(w, "  start     %s  LSN %s  timeline %d  (WAL %s)\n", b.StartTime.UTC().Format(time.RFC3339), b.StartLSN, b.StartTimeline, b.StartWALSegment)
	printf(w, "  end       %s  LSN %s  timeline %d  (WAL %s)\n", b.EndTime.UTC().Format(time.RFC3339), b.EndLSN, b.EndTimeline, b.EndWALSegment)
	printf(w, "  duration  %s\n", b.EndTime.Sub(b.StartTime).Round(100*time.Millisecond))
	printf(w, "  size      %s in %s, %s stored\n", humanBytes(b.TotalSizePlain), plural(b.ChunkCount, "chunk", "chunks"), humanBytes(storedBytes(b)))
	switch b.Metadata[basebackup.MetaSource] {
	case basebackup.SourceDataDirectory:
		mode := "local-tar"
		if b.Format == archive.FormatDeltaV2 {
			mode = "delta"
		}
		printf(w, "  read      from the data directory (%s)\n", mode)
	case basebackup.SourceBaseBackup:
		printf(w, "  read      over the replication protocol (BASE_BACKUP)\n")
	}
	if n := b.Metadata[basebackup.MetaChecksumFailures]; n != "" && n != "0" {
		printf(w, "  WARNING   %s data pages failed their checksum: damaged in the cluster itself, stored as read\n", n)
		printf(w, "            (the files and blocks are in the log and in the backup's manifest)\n")
	}
}

// checksumWarning is printSummary's warning of b's damaged data pages as
// one line, "" for none.
func checksumWarning(b *archive.BackupInfo) string {
	n := b.Metadata[basebackup.MetaChecksumFailures]
	if n == "" || n == "0" {
		return ""
	}
	return n + " data pages failed their checksum: damaged in the cluster itself, stored as read " +
		"(the files and blocks are in the log and in the backup's manifest)"
}

// progressBar draws a basebackup's progress on one terminal line, or logs
// it now and then.
type progressBar struct {
	w     io.Writer
	term  bool
	drawn bool
}

func (p *progressBar) draw(pr basebackup.Progress) {
	var b strings.Builder
	b.WriteString(humanBytes(pr.Bytes))
	if pct := pr.Percent(); pct >= 0 {
		const width = 24
		fill := int(pct / 100 * width)
		fmt.Fprintf(&b, " / %s [%s%s] %3.0f%%", humanBytes(pr.Total), strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct)
	}
	fmt.Fprintf(&b, "  %s/s  %s", humanBytes(int64(pr.Rate)), plural(pr.Chunks, "chunk", "chunks"))
	if eta, ok := pr.ETA(); ok && !pr.Done {
		fmt.Fprintf(&b, "  ETA %s", eta.Round(time.Second))
	}
	// \r returns to the line's start, \033[K clears what a longer line left.
	printf(p.w, "\r%s\033[K", b.String())
	p.drawn = true
	if pr.Done {
		// Run logs once more after the last report: on its own line.
		printf(p.w, "\n")
		p.drawn = false
	}
}

// end finishes the progress line so that later output starts on its own.
func (p *progressBar) end() {
	if p.drawn {
		printf(p.w, "\n")
	}
}

// logEvery returns a Progress func that logs at most once per interval, and
// the final report.
func (p *progressBar) logEvery(env *siteEnv, interval time.Duration) func(basebackup.Progress) {
	var last time.Time
	return func(pr basebackup.Progress) {
		if !pr.Done && time.Since(last) < interval {
			return
		}
		last = time.Now()
		ev := env.log.Info().Int64("bytes", pr.Bytes).Str("rate", humanBytes(int64(pr.Rate))+"/s").Int("chunks", pr.Chunks)
		if pct := pr.Percent(); pct >= 0 {
			ev = ev.Int64("total", pr.Total).Float64("percent", float64(int(pct*10))/10)
		}
		if eta, ok := pr.ETA(); ok && !pr.Done {
			ev = ev.Str("eta", eta.Round(time.Second).String())
		}
		ev.Msg("basebackup progress")
	}
}
