package command

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/demo"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "watch hoard back up a throwaway PostgreSQL and restore it to a point in time",
		Description: `A guided tour of hoard's whole job, in under a minute, needing nothing but PostgreSQL's
server binaries: Debian's (/usr/lib/postgresql/<version>/bin), those task deps installs
($HOARD_CACHE/pg/<version>/bin, default /var/cache/hoard), the ones on PATH, or --pg-bin.

In a new temporary directory it creates a cluster whose archive_command is this hoard's
wal-push, a configuration with a local store and a fresh key pair, checks the setup (hoard
check --archive-switch), writes pgbench's tables
and runs pgbench's transaction over SQL, takes a basebackup, records a point in time and
writes more, restores to that point into a second cluster, starts it and shows that the
rows written after the point are absent, then runs hoard list and hoard verify. Every hoard
command is printed before it runs. The clusters are stopped and the directory removed at
the end, or kept with --keep, with the commands to look around.

As root, PostgreSQL and hoard run as the user postgres, which must exist.

EXIT STATUS: 0 the restored cluster holds exactly the rows of the point in time;
1 a step failed or the rows differ (the message says which); 2 bad flags;
130 interrupted (everything is cleaned up all the same).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep", Usage: "keep the directory, clusters stopped, and print commands to look around"},
			&cli.StringFlag{Name: "pg-bin", Usage: "`DIR` of initdb, pg_ctl and postgres (default: found as described above)"},
			&cli.DurationFlag{Name: "load", Usage: "how long each pgbench-like load runs", Value: 2 * time.Second},
		},
		Action: runDemo,
	}
}

func runDemo(c *cli.Context) error {
	if c.NArg() != 0 {
		return usagef("hoard demo [--keep] [--pg-bin DIR]", "hoard demo takes no arguments")
	}
	if c.Duration("load") <= 0 || c.Duration("load") > time.Hour {
		return usagef("use a duration such as 2s", "--load %s is out of range", c.Duration("load"))
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this hoard binary: %w", err)
	}
	cache := os.Getenv("HOARD_CACHE")
	if cache == "" {
		cache = "/var/cache/hoard"
	}
	err = demo.Run(c.Context, demo.Options{
		Hoard: self,
		PGBin: c.String("pg-bin"),
		Cache: cache,
		Keep:  c.Bool("keep"),
		Load:  c.Duration("load"),
		Out:   c.App.Writer,
		Err:   c.App.ErrWriter,
	})
	if errors.Is(err, demo.ErrNoPostgreSQL) {
		return &usageError{msg: err.Error(), hint: "install PostgreSQL's server (Debian: apt-get install postgresql), run task deps, or pass --pg-bin DIR"}
	}
	return err
}
