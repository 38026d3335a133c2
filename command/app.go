// Package command holds hoard's subcommands: each file parses one command's
// flags, builds the options of the package that does the work, calls it and
// prints the result.
package command

import (
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

// App builds the hoard command line.
func App(version string) *cli.App {
	app := &cli.App{
		Name:    "hoard",
		Usage:   "PostgreSQL backup and point-in-time restore",
		Version: version,
		Description: `hoard streams WAL and takes basebackups over PostgreSQL's replication protocol,
stores them compressed and encrypted in object storage in PGHoard's format,
and restores them to any point in time. It reads PGHoard's JSON configuration.

Flags may come before or after a command's arguments, as with PGHoard's tools
(hoard object get KEY -o FILE); global flags such as --config may follow the command
name. Arguments after -- are never read as flags. A boolean flag takes its value after
"=" (--short-log=false); a value written apart (--short-log false) is read as the flag's
only before the command name or where the command has an argument too many.`,
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp + "\n",
		EnableBashCompletion:  true,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "config",
				Usage:   "PGHoard-format JSON configuration `FILE` (no default path: without one, the HOARD_* variables alone)",
				EnvVars: []string{"HOARD_CONFIG", "PGHOARD_CONFIG"},
			},
			&cli.StringFlag{
				Name:    "site",
				Usage:   "backup site to use (default: the only site in the configuration)",
				EnvVars: []string{"HOARD_SITE"},
			},
			&cli.StringFlag{
				Name:    "log-level",
				Usage:   "debug, info, warn or error",
				Value:   "info",
				EnvVars: []string{"HOARD_LOG_LEVEL"},
			},
			&cli.StringFlag{
				Name:    "log-format",
				Usage:   "console or json",
				Value:   "console",
				EnvVars: []string{"HOARD_LOG_FORMAT"},
			},
			&cli.BoolFlag{
				Name:    "short-log",
				Usage:   "log only level and message (for journald)",
				EnvVars: []string{"HOARD_SHORT_LOG"},
			},
		},
		Before: func(c *cli.Context) error {
			l, err := newLogger(os.Stderr, c.String("log-level"), c.String("log-format"), c.Bool("short-log"))
			if err != nil {
				return err
			}
			c.App.Metadata = map[string]any{"logger": l}
			return nil
		},
		Commands: commands(),
		ExitErrHandler: func(*cli.Context, error) {
			// main maps errors to exit codes; urfave must not exit itself.
		},
		// The global flags did not parse: urfave then has no arguments to
		// give (c.Args panics). OrderArgs hands a flag hoard does not
		// define to the command that follows it, so what remains here is
		// a known flag's bad value (--short-log=maybe) or no command;
		// PostgresStatus makes it fatal for wal-fetch.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return flagError(err, "see hoard --help")
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return unknownCommand(c.Args().First(), "")
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, cmd := range app.Commands {
		setUsageErrors(cmd)
		if len(cmd.Subcommands) > 0 && cmd.Action == nil {
			cmd.Action = groupAction
		}
	}
	return app
}

// pghoardCommands are pghoard_restore's commands, which a PGHoard user
// may give hoard, with hoard's command for each (migrating-from-pghoard.md).
var pghoardCommands = map[string]string{
	"list-basebackups": "hoard list",
	"get-basebackup":   "hoard restore --target-dir DIR",
}

// unknownCommand is the usage error of name, given where a command of
// hoard (group "") or of hoard's command group was expected. urfave/cli
// took it for a help topic ("No help topic for 'lsit'", exit 1).
func unknownCommand(name, group string) error {
	if group != "" {
		return usagef(fmt.Sprintf("hoard %s --help lists its commands", group), "unknown command %q of hoard %s", name, group)
	}
	if alt, ok := pghoardCommands[name]; ok {
		return usagef(fmt.Sprintf("use %s, hoard's command for pghoard_restore %s", alt, name), "unknown command %q", name)
	}
	return usagef("hoard help lists the commands", "unknown command %q", name)
}

// groupAction is the action of a command that only groups subcommands
// (config, object): its help, or the usage error of a name that is none
// of them.
func groupAction(c *cli.Context) error {
	if c.Args().Present() {
		return unknownCommand(c.Args().First(), c.Command.Name)
	}
	return cli.ShowSubcommandHelp(c)
}

// setUsageErrors makes a flag mistake in cmd or its subcommands a usage
// error (exit 2; for wal-fetch, PostgresStatus makes it 255).
func setUsageErrors(cmd *cli.Command) {
	if cmd.OnUsageError == nil {
		cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			return flagError(err, fmt.Sprintf("see hoard %s --help", c.Command.FullName()))
		}
	}
	for _, sub := range cmd.Subcommands {
		setUsageErrors(sub)
	}
}

// pghoardFlags are PGHoard's flags that hoard spells otherwise, with
// hoard's spelling (migrating-from-pghoard.md).
var pghoardFlags = map[string]string{"-D": "--log-level debug", "--debug": "--log-level debug", "-s": "--short-log"}

// flagError is the usage error for err, a flag that did not parse, with
// help as the hint. An undefined flag is named as it was written (the
// flag package writes --debug as -debug), and one of PGHoard's that hoard
// spells otherwise gets hoard's spelling as the hint.
func flagError(err error, help string) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return usagef(help, "%v", err)
	}
	written := "-" + name
	if len(name) > 1 {
		written = "--" + name
	}
	if alt, ok := pghoardFlags[written]; ok {
		help = fmt.Sprintf("use %s, hoard's spelling of PGHoard's %s", alt, written)
	}
	return usagef(help, "unknown flag %s", written)
}

// logger returns the logger built in App's Before hook.
func logger(c *cli.Context) zerolog.Logger {
	if l, ok := c.App.Metadata["logger"].(zerolog.Logger); ok {
		return l
	}
	return zerolog.Nop()
}
