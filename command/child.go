package command

import (
	"errors"
	"slices"
	"strconv"

	"github.com/urfave/cli/v2"
)

// PostgreSQL runs two hoard commands as its children and reads their exit
// status: wal-fetch as restore_command, wal-push as archive_command.
//
// For restore_command a normal exit other than 0 means "not archived": the
// startup process ends recovery there and, with no recovery target or one
// it has not reached, promotes (RestoreArchivedFile, shell_restore.c in
// PostgreSQL 16 and later, xlogarchive.c before). Exit 0 with no file at %p
// means the same. A status above 125, or death by a signal, stops recovery
// with FATAL (wait_result_is_any_signal); SIGTERM, or 143, is a fast
// shutdown (wait_result_is_signal). So wal-fetch exits 1 only when the
// storage said the file does not exist, and 255 for anything else,
// including every mistake in how it was called.
//
// For archive_command exit 0 means "archived": PostgreSQL then recycles the
// segment. Any other status makes the archiver retry (a signal, or a status
// above 125, after it restarts: pgarch.c, shell_archive.c).
const (
	walFetchName = "wal-fetch"
	walPushName  = "wal-push"
)

// PostgresStatus gives err, what the app returned when run with args (the
// command line as given, before OrderArgs), the meaning PostgreSQL reads in
// the exit status of wal-fetch and wal-push; other commands' errors are
// returned unchanged.
//
// For wal-fetch, every error that does not carry its own exit status (1,
// not archived; 255) becomes 255: a bad flag or HOARD_* variable anywhere,
// a configuration that is missing, unreadable or invalid, an unknown site.
// For both, -h, --help or --version given with arguments (libpq's -h host
// is a plausible slip in a command line) prints the help and did nothing:
// that is an error, not exit 0, which PostgreSQL would read as "archived"
// (wal-push) or, for wal-fetch, "not archived".
func PostgresStatus(app *cli.App, args []string, err error) error {
	name := postgresChild(app, args)
	if name == "" {
		return err
	}
	if err == nil && helpWithArgs(app, args) {
		err = usagef("remove the flag: hoard "+name+" --help alone shows the help; name the node in the configuration or with PGHOST, not -h",
			"%s was given -h, --help or --version and arguments: it showed the help and did nothing", name)
	}
	if name == walPushName || err == nil {
		return err
	}
	if _, ok := errors.AsType[*exitError](err); ok {
		return err
	}
	return &exitError{code: exitWALFatal, err: err}
}

// postgresChild returns walFetchName or walPushName when args run that
// command, else "". An argument that names neither a command nor a known
// flag's value (the value of a bool flag written apart: --short-log maybe
// wal-fetch) is passed over: urfave reports it, and the search goes on, so
// that wal-fetch's mistakes stay fatal.
func postgresChild(app *cli.App, args []string) string {
	globals := flagSet{app.Flags, []cli.Flag{cli.HelpFlag, cli.VersionFlag}}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return ""
		case isFlag(a):
			i += globals.valueArgs(a, args[i+1:])
		case a == walFetchName || a == walPushName:
			return a
		case findCommand(app.Commands, a) != nil:
			return ""
		}
	}
	return ""
}

// helpWithArgs reports whether args ask for help or the version and
// also give the command an argument that is not a flag's value. A
// boolean flag's value written apart (wal-push --allow-root false --help)
// is the flag's, as urfave/cli reads it once OrderArgs joins it: only a
// word strconv.ParseBool takes is, so a path after the flag still counts.
func helpWithArgs(app *cli.App, args []string) bool {
	names := slices.Concat(cli.HelpFlag.Names(), cli.VersionFlag.Names())
	flags := flagSet{app.Flags, []cli.Flag{cli.HelpFlag, cli.VersionFlag}}
	var cmd *cli.Command
	help, positional := false, false
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = positional || (cmd != nil && i+1 < len(args))
			i = len(args)
		case isFlag(a):
			help = help || slices.Contains(names, flagName(a))
			i += flags.valueArgs(a, args[i+1:])
			if flags.isBool(a) && i+1 < len(args) && isBoolValue(args[i+1]) {
				i++
			}
		case cmd == nil && findCommand(app.Commands, a) != nil:
			cmd = findCommand(app.Commands, a)
			flags = flagSet{cmd.Flags, app.Flags}
		case cmd != nil:
			positional = true
		}
	}
	return help && positional
}

// isBoolValue reports whether a is a value a boolean flag takes (true,
// false, 1, 0, t, f...: strconv.ParseBool, which the flag package uses).
func isBoolValue(a string) bool {
	_, err := strconv.ParseBool(a)
	return err == nil
}
