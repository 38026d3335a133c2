package command

import (
	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
)

func walPushCommand() *cli.Command {
	return &cli.Command{
		Name:      "wal-push",
		Usage:     "archive one WAL file (PostgreSQL's archive_command)",
		ArgsUsage: "PATH",
		Description: "Compresses, encrypts and uploads the WAL file at PATH (PostgreSQL's %p, relative to the\n" +
			"data directory) to the site's xlog/ folder (.history files to timeline/). A segment's page\n" +
			"header must match its name and size, so a recycled or misnamed file is refused. Pushing a\n" +
			"file that is already archived with the same contents succeeds without uploading; a\n" +
			"different file under the same name is refused and never overwritten.\n\n" +
			"In postgresql.conf:\n\n" +
			"   archive_mode = on\n" +
			"   archive_command = 'hoard wal-push --config /etc/hoard.json %p'\n\n" +
			"EXIT STATUS:\n" +
			"   0    the file is archived (now, or already with the same contents)\n" +
			"   1    it is not; the message names the file and the key. PostgreSQL keeps the file\n" +
			"        and retries.\n" +
			"   2    bad arguments or configuration",
		Flags:  siteFlags(),
		Before: inheritSiteFlags,
		Action: runWALPush,
	}
}

func runWALPush(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("archive_command = 'hoard wal-push --config FILE %p'", "want exactly one PATH, got %d arguments", c.NArg())
	}
	path := c.Args().First()
	env, err := openSite(c)
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	res, err := env.archive.PushWAL(c.Context, path, archive.PushOptions{
		PGVersion:     env.site.PGVersion,
		HashAlgorithm: env.cfg.HashAlgorithm,
	})
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
