package command

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

func walPushCommand() *cli.Command {
	return &cli.Command{
		Name:      "wal-push",
		Usage:     "archive one WAL file (PostgreSQL's archive_command)",
		ArgsUsage: "PATH",
		Description: `Compresses, encrypts and uploads the WAL file at PATH (PostgreSQL's %p, relative to the
data directory) to the site's xlog/ folder (.history files to timeline/). A segment's page
header must match its name and size, so a recycled or misnamed file is refused. Pushing a
file that is already archived with the same contents succeeds without uploading; a
different file under the same name is refused and never overwritten, but for a .partial
(the old timeline's last segment a promoted server archives): one stored by a streaming
daemon of the site that holds a shorter copy of the file's WAL is stored over, and one that
holds all of the file's WAL and more counts as archived. A .history file
refused so because the stored one is bound to another database system (a site with keys),
or claims one (a site without keys: the system its writer recorded, not authenticated), is
most likely the old cluster's after a pg_upgrade into the same site: the message says
so, and to set a new backup_sites.<site>.prefix for the upgraded cluster (until then
PostgreSQL retries and keeps its WAL in pg_wal). A .history file already stored with the
same hash is refused as well when the stored object is not this cluster's own as wal-fetch
takes it (a site with keys: not signed by hoard for its name and this cluster's database
system; any site: bound to, or claiming, another system): someone who can write the storage
may have planted it in advance, and it is left alone for a person to look at.

The object's pg-version metadata is the site's pg_version when set; otherwise wal-push asks
the site's first node for its server_version_num (one short connection, at most 5 s) and
records it when that node is the cluster that wrote the file. Failing that, it records the
major version the WAL page header gives (150000 for 15), with a warning.

In postgresql.conf:

   archive_mode = on
   archive_command = 'hoard wal-push --config /etc/hoard.json %p'

EXIT STATUS:
   0    the file is archived (now, or already with the same contents)
   1    it is not; the message names the file and the key. PostgreSQL keeps the file
        and retries.
   2    bad arguments or configuration: PATH names no WAL segment, .partial, .history
        or .backup file, or -h, --help or --version given with PATH (the help is shown);
        nothing is archived. PostgreSQL keeps the file and retries.
   130, 131, 134, 143  stopped by SIGINT, SIGQUIT, SIGABRT or SIGTERM, which PostgreSQL's
        postmaster sends to the archiver's process group at a shutdown: 128 + the signal's
        number, as if it had killed wal-push, even when the file was stored (PostgreSQL's
        archiver then stops; it retries the file later, and finds it archived). An upload
        in progress is abandoned and stores nothing; after 10 s wal-push exits without
        waiting for it. (Go's default answer to SIGQUIT and SIGABRT is exit 2.)
   killed by SIGABRT  a bug in hoard (a panic, printed with every goroutine's stack):
        the archiver restarts and retries the file`,
		Flags:  append(siteFlags(), allowRootFlag),
		Before: inheritSiteFlags,
		Action: runWALPush,
	}
}

func runWALPush(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("archive_command = 'hoard wal-push --config FILE %p'", "want exactly one PATH, got %d arguments", c.NArg())
	}
	path := c.Args().First()
	env, err := openSiteToWrite(c, "wal-push")
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	pgVersion, err := walPGVersion(c.Context, env, path)
	if err != nil {
		env.log.Warn().Err(err).Str(logSegment, filepath.Base(path)).
			Msg("pg-version records the major version only; set the site's pg_version to record the full one without asking the server")
	}
	res, err := env.archive.PushWAL(c.Context, path, archive.PushOptions{
		PGVersion:     pgVersion,
		HashAlgorithm: env.cfg.HashAlgorithm,
	})
	if errors.Is(err, archive.ErrNotWALName) {
		// A mistake in archive_command (PostgreSQL passes %p, a file in
		// pg_wal), told apart from a failed upload by its status.
		return usagef("archive_command = 'hoard wal-push --config FILE %p'", "%v", err)
	}
	if err != nil {
		return err
	}
	ev := env.log.Info().Str(logSegment, res.Name).Str(logKey, res.Key)
	if !res.Uploaded {
		ev.Msg("already archived with the same contents")
		return nil
	}
	ev.Int64("plain_bytes", res.Stored.PlainSize).Int64("stored_bytes", res.Stored.StoredSize).Msg("wal file archived")
	return nil
}

// serverVersionTimeout bounds wal-push's question to the server about its
// version: an unreachable node slows archiving down by at most this much.
const serverVersionTimeout = 5 * time.Second

// walPGVersion returns the server_version_num to record as the pg-version
// of the WAL file at path: the site's pg_version when set (PGHoard's cached
// version, which also saves the connection), else the version of the
// site's first node, asked over an ordinary connection, when that node is
// the cluster that wrote the file (same system identifier). WAL holds only
// the major version (its page magic), which PushWAL records when this
// returns 0 with an error saying why. A file PushWAL will refuse anyway
// gets 0 and no error: PushWAL says what is wrong with it.
func walPGVersion(ctx context.Context, env *siteEnv, path string) (int, error) {
	if env.site.PGVersion != 0 {
		return env.site.PGVersion, nil
	}
	name := filepath.Base(path)
	segment := wal.IsSegmentName(name) || wal.IsPartialName(name)
	if !segment && !wal.IsHistoryFile(name) && !wal.IsBackupHistoryName(name) {
		return 0, nil
	}
	sysID, err := archive.WALSystemID(path)
	if err != nil {
		if segment {
			return 0, nil // unreadable or a bad header: PushWAL refuses it
		}
		return 0, err
	}
	return nodeVersion(ctx, env, sysID, name)
}

// nodeVersion asks the site's first node for its server_version_num and
// returns it when the node is cluster sysID, which wrote what (a file
// name, or a data directory).
func nodeVersion(ctx context.Context, env *siteEnv, sysID uint64, what string) (int, error) {
	srv, err := nodeServer(ctx, env, sysID, what)
	return srv.Version, err
}

// nodeServer asks the site's first node what replication.QueryServer
// learns over one short ordinary connection, and returns it when the node
// is cluster sysID, which wrote what (a file name, or a data directory).
func nodeServer(ctx context.Context, env *siteEnv, sysID uint64, what string) (replication.Server, error) {
	node := env.site.Nodes[0]
	name := fmt.Sprintf("node %q", node.Redacted())
	if node.Redacted() == "" {
		name = "the node libpq's PG* variables and defaults name"
	}
	ctx, cancel := context.WithTimeout(ctx, serverVersionTimeout)
	defer cancel()
	srv, err := replication.QueryServer(ctx, node.ConnString())
	if err != nil {
		return replication.Server{}, fmt.Errorf("ask %s: %w", name, err)
	}
	if srv.SystemID != sysID {
		return replication.Server{}, fmt.Errorf("%s is cluster %d, but %s belongs to cluster %d", name, srv.SystemID, what, sysID)
	}
	return srv, nil
}

// siteFlags are --config and --site again on the command itself, so that
// archive_command and restore_command lines can put them after the command
// name, as PGHoard's do.
func siteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "PGHoard-format JSON configuration `FILE` (as the global flag)"},
		&cli.StringFlag{Name: "site", Usage: "backup `SITE` to use (as the global flag)"},
	}
}

// inheritSiteFlags gives the command's --config and --site the global
// flags' values (or HOARD_CONFIG, HOARD_SITE) when they are not set after
// the command name: urfave/cli reads a flag from the innermost command that
// defines it, set or not.
func inheritSiteFlags(c *cli.Context) error {
	lineage := c.Lineage()
	if len(lineage) < 2 {
		return nil
	}
	for _, name := range []string{"config", "site"} {
		if c.IsSet(name) {
			continue
		}
		if v := lineage[1].String(name); v != "" {
			if err := c.Set(name, v); err != nil {
				return err
			}
		}
	}
	return nil
}
