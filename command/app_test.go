package command

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// run runs the app with args and returns the process exit code main would
// use.
func run(t *testing.T, args ...string) int {
	t.Helper()
	app := App("test")
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	full := append([]string{"hoard"}, args...)
	return ExitCode(PostgresStatus(app, full, app.RunContext(context.Background(), OrderArgs(app, full))))
}

func TestApp_ExitCodes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"OK", []string{"--help"}, ExitOK},
		{"ErrBadGlobalFlag", []string{"--log-level", "bogus", "list"}, ExitUsage},
		{"ErrUnknownFlag", []string{"list", "--no-such-flag"}, ExitUsage},
		{"ErrCreateKeysNoKeyID", []string{"create-keys"}, ExitUsage},
		// PostgreSQL reads a restore_command exit status of 1 or 2 as "not
		// archived" and ends recovery: anything wrong with the invocation
		// itself must stop recovery instead.
		{"ErrWALFetchBadGlobalFlag", []string{"--log-level", "bogus", "wal-fetch", "a", "b"}, exitWALFatal},
		{"ErrWALFetchUnknownFlag", []string{"wal-fetch", "--no-such-flag", "a", "b"}, exitWALFatal},
		{"ErrWALFetchArgs", []string{"wal-fetch", "a"}, exitWALFatal},
		{"ErrWALFetchAcceptNotASegment", []string{"wal-fetch", "--accept-truncated", "00000002.history", "a", "b"}, exitWALFatal},
		{"ErrRestoreAcceptNotASegment", []string{"restore", "--target-dir", "d", "--accept-truncated-wal", "4"}, ExitUsage},
		{"ErrRestoreAcceptWithRestoreCommand", []string{"restore", "--target-dir", "d", "--accept-truncated-wal", "000000010000000000000004", "--restore-command", "cp /a/%f %p"}, ExitUsage},
		// A flag hoard does not define, before the command (PGHoard's -D):
		// the command reports it, wal-fetch with its fatal status, even when
		// the typo takes a value (--conifg F).
		{"ErrUnknownGlobalFlag", []string{"-D", "list"}, ExitUsage},
		{"ErrUnknownGlobalFlagNoCommand", []string{"--bogus"}, ExitUsage},
		{"ErrWALFetchUnknownGlobalFlag", []string{"--debug", "wal-fetch", "a", "b"}, exitWALFatal},
		{"ErrWALFetchMisspeltConfig", []string{"--conifg", "F", "wal-fetch", "a", "b"}, exitWALFatal},
		// A known global flag's bad value, wherever it is written, and help
		// with arguments (-h, libpq's host flag): fatal for wal-fetch; for
		// wal-push anything but 0, which PostgreSQL reads as archived.
		{"ErrWALFetchBadBool", []string{"--short-log=maybe", "wal-fetch", "a", "b"}, exitWALFatal},
		{"ErrWALFetchBadBoolApart", []string{"--short-log", "maybe", "wal-fetch", "a", "b"}, exitWALFatal},
		{"ErrWALFetchBadBoolAfterArgs", []string{"wal-fetch", "a", "b", "--short-log=maybe"}, exitWALFatal},
		{"ErrWALFetchHostFlag", []string{"wal-fetch", "-h", "localhost", "a", "b"}, exitWALFatal},
		{"ErrWALFetchVersion", []string{"--version", "wal-fetch", "a", "b"}, exitWALFatal},
		{"WALFetchHelp", []string{"wal-fetch", "--help"}, ExitOK},
		{"ErrWALPushHostFlag", []string{"wal-push", "-h", "localhost", "pg_wal/X"}, ExitUsage},
		{"ErrWALPushHelpAfterPath", []string{"wal-push", "pg_wal/X", "--help"}, ExitUsage},
		{"WALPushHelp", []string{"--config", "F", "wal-push", "--help"}, ExitOK},
		{"WALPushHelpBoolApart", []string{"wal-push", "--allow-root", "false", "--help"}, ExitOK},
		{"ErrWALPushHelpBoolApartPath", []string{"wal-push", "--allow-root", "false", "--help", "pg_wal/X"}, ExitUsage},
		{"ErrWALPushHelpBadBoolApart", []string{"wal-push", "--allow-root", "pg_wal/X", "--help"}, ExitUsage},
		{"ErrWALFetchHelpBoolApartArgs", []string{"wal-fetch", "--short-log", "true", "a", "b", "--help"}, exitWALFatal},
		{"ErrListBadBool", []string{"--short-log=maybe", "list"}, ExitUsage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, tc.args...); got != tc.want {
				t.Errorf("hoard %v: exit %d, want %d", tc.args, got, tc.want)
			}
		})
	}
}

// TestApp_BoolValueApart: a boolean flag's bad value written apart
// (--short-log maybe) is reported as the flag's bad value, wherever it
// is written, with each command's exit status; urfave/cli took it for a
// command name (No help topic for 'maybe') or an argument too many.
func TestApp_BoolValueApart(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--short-log", "maybe", "wal-fetch", "a", "b"}, exitWALFatal},
		{[]string{"wal-fetch", "--short-log", "maybe", "a", "b"}, exitWALFatal},
		{[]string{"wal-fetch", "a", "b", "--short-log", "maybe"}, exitWALFatal},
		{[]string{"--short-log", "maybe", "wal-push", "pg_wal/X"}, ExitUsage},
		{[]string{"wal-push", "--short-log", "maybe", "pg_wal/X"}, ExitUsage},
		{[]string{"--short-log", "maybe", "list"}, ExitUsage},
		{[]string{"list", "--short-log", "maybe"}, ExitUsage},
	} {
		app := App("test")
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		full := append([]string{"hoard"}, tc.args...)
		err := PostgresStatus(app, full, app.RunContext(context.Background(), OrderArgs(app, full)))
		if got := ExitCode(err); got != tc.want {
			t.Errorf("hoard %s: exit %d, want %d", strings.Join(tc.args, " "), got, tc.want)
		}
		if msg := ErrorMessage(err); !strings.Contains(msg, `"maybe"`) || !strings.Contains(msg, "short-log") {
			t.Errorf("hoard %s: %q, want the flag and its bad value named", strings.Join(tc.args, " "), msg)
		}
	}
}

// TestApp_HelpEveryCommand: --help (or -h) alone shows a command's help
// and exits 0, for every command and subcommand, with --config before or
// after the command name; given with positional arguments, wal-push and
// wal-fetch take it as a mistake in how PostgreSQL runs them
// (TestApp_ExitCodes).
func TestApp_HelpEveryCommand(t *testing.T) {
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(slices.Clone(path), c.Name)
			invocations := [][]string{
				append(slices.Clone(p), "--help"),
				append(slices.Clone(p), "-h"),
				slices.Concat(p, []string{"--config", "F", "--help"}),
				slices.Concat([]string{"--config", "F"}, p, []string{"--help"}),
				slices.Concat(p, []string{"--short-log", "false", "--help"}),
			}
			// A boolean flag's value written apart is the flag's, not an
			// argument given with --help (wal-push --allow-root false).
			for _, f := range c.Flags {
				if f, ok := f.(*cli.BoolFlag); ok {
					invocations = append(invocations, slices.Concat(p, []string{"--" + f.Name, "false", "--help"}))
				}
			}
			for _, args := range invocations {
				if got := run(t, args...); got != ExitOK {
					t.Errorf("hoard %s: exit %d, want 0", strings.Join(args, " "), got)
				}
			}
			walk(p, c.Subcommands)
		}
	}
	walk(nil, App("test").Commands)
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"debug", "INFO", "", "warn", "WARNING", "error", "CRITICAL"} {
		if _, err := parseLevel(s); err != nil {
			t.Errorf("parseLevel(%q): %v", s, err)
		}
	}
	if _, err := parseLevel("verbose"); err == nil {
		t.Errorf("parseLevel(verbose) accepted an unknown level")
	}
}

// TestApp_FlagDefaultsOnce: no flag's help states its default twice, once
// in its usage and once as urfave/cli's "(default: 0)", which for restore
// --parallel contradicted the first (restore_process_count).
func TestApp_FlagDefaultsOnce(t *testing.T) {
	var walk func(path string, cmds []*cli.Command)
	check := func(path string, flags []cli.Flag) {
		for _, f := range flags {
			if s := f.String(); strings.Count(s, "(default") > 1 {
				t.Errorf("hoard %s: %s", path, s)
			}
		}
	}
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			check(path+c.Name, c.Flags)
			walk(path+c.Name+" ", c.Subcommands)
		}
	}
	app := App("test")
	check("", app.Flags)
	walk("", app.Commands)
}

// TestApp_PGHoardFlagHint: PGHoard's -D/--debug and -s, which hoard spells
// --log-level debug and --short-log, are refused (migrating-from-pghoard.md)
// with a hint naming hoard's spelling, and the flag as it was written:
// urfave/cli's own message shows --debug as -debug.
func TestApp_PGHoardFlagHint(t *testing.T) {
	for _, c := range []struct {
		args       []string
		flag, want string
	}{
		{[]string{"list", "--debug"}, "--debug", "--log-level debug"},
		{[]string{"-D", "list"}, "-D", "--log-level debug"},
		{[]string{"list", "-s"}, "-s", "--short-log"},
	} {
		app := App("test")
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		full := append([]string{"hoard"}, c.args...)
		err := app.RunContext(context.Background(), OrderArgs(app, full))
		if ExitCode(err) != ExitUsage {
			t.Errorf("hoard %v: exit %d, want %d", c.args, ExitCode(err), ExitUsage)
		}
		msg := ErrorMessage(err)
		if !strings.Contains(msg, c.want) || !strings.Contains(msg, "flag "+c.flag+"\n") && !strings.Contains(msg, "flag "+c.flag+" ") {
			t.Errorf("hoard %v: %q does not name %s nor say %q", c.args, msg, c.flag, c.want)
		}
	}
}

// TestApp_UnknownCommand: a name that is no command, of hoard or of a
// command grouping subcommands (config, object), is a usage error (exit 2)
// naming it, with a hint that says what to run (hoard's command for
// PGHoard's pghoard_restore words), where urfave/cli said "No help topic
// for 'lsit'" and exited 1, also where the name is a help topic (hoard help
// lsit, hoard --help lsit, hoard config help shwo, hoard help help lsit,
// hoard help --help lsit); with no name, or a help topic that is a
// command, the help is shown as before.
func TestApp_UnknownCommand(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		msg, hint  string
		wantStatus int
	}{
		{[]string{"lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"--config", "F", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"list-basebackups"}, `unknown command "list-basebackups"`, "hoard list", ExitUsage},
		{[]string{"get-basebackup"}, `unknown command "get-basebackup"`, "hoard restore --target-dir DIR", ExitUsage},
		{[]string{"config", "shwo"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		{[]string{"object", "cat", "k"}, `unknown command "cat" of hoard object`, "hoard object --help lists its commands", ExitUsage},
		// A help topic that is no command: the same usage error.
		{[]string{"help", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"h", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"--config", "F", "help", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"--help", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"-h", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"lsit", "--help"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"help", "list-basebackups"}, `unknown command "list-basebackups"`, "hoard list", ExitUsage},
		{[]string{"config", "help", "shwo"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		{[]string{"object", "h", "cat"}, `unknown command "cat" of hoard object`, "hoard object --help lists its commands", ExitUsage},
		// The help command's help asked for a topic that is no command.
		{[]string{"help", "help", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"h", "help", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"help", "h", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"config", "help", "help", "shwo"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		// The help flag on the help command, with such a topic.
		{[]string{"help", "--help", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"help", "-h", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"h", "--help", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"help", "help", "--help", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"--config", "F", "help", "-h", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		// "--" before the topic: still the topic.
		{[]string{"help", "--", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"h", "--", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"help", "help", "--", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"--help", "--", "lsit"}, `unknown command "lsit"`, "hoard help lists the commands", ExitUsage},
		{[]string{"config", "help", "--", "shwo"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		{[]string{"object", "h", "--", "cat"}, `unknown command "cat" of hoard object`, "hoard object --help lists its commands", ExitUsage},
		// The help flag on a command with subcommands, with a name that is
		// none of them: as hoard --help lsit and hoard lsit --help.
		{[]string{"config", "--help", "shwo"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		{[]string{"config", "-h", "shwo"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		{[]string{"config", "shwo", "--help"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		{[]string{"config", "help", "--help", "shwo"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		{[]string{"config", "help", "-h", "shwo"}, `unknown command "shwo" of hoard config`, "hoard config --help lists its commands", ExitUsage},
		{[]string{"object", "--help", "cat"}, `unknown command "cat" of hoard object`, "hoard object --help lists its commands", ExitUsage},
		{[]string{"object", "help", "--help", "cat"}, `unknown command "cat" of hoard object`, "hoard object --help lists its commands", ExitUsage},
		{[]string{"restore", "--help", "shwo"}, `unexpected argument "shwo"`, "see hoard restore --help", ExitUsage},
	} {
		app := App("test")
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		full := append([]string{"hoard"}, tc.args...)
		err := app.RunContext(context.Background(), OrderArgs(app, full))
		if got := ExitCode(err); got != tc.wantStatus {
			t.Errorf("hoard %s: exit %d, want %d", strings.Join(tc.args, " "), got, tc.wantStatus)
		}
		if err == nil {
			continue
		}
		if msg := ErrorMessage(err); !strings.Contains(msg, tc.msg) || !strings.Contains(msg, tc.hint) {
			t.Errorf("hoard %s: %q, want %q with the hint %q", strings.Join(tc.args, " "), msg, tc.msg, tc.hint)
		}
	}
	// Not hoard help list: urfave/cli, running its help command, makes
	// that package variable a subcommand of itself, and the command walk
	// of a later test (TestCompletion) overflows the stack.
	for _, args := range [][]string{nil, {"config"}, {"object"}, {"--help", "list"}, {"-h", "config"}, {"config", "--help", "show"}} {
		app := App("test")
		var out strings.Builder
		app.Writer, app.ErrWriter = &out, io.Discard
		full := append([]string{"hoard"}, args...)
		err := app.RunContext(context.Background(), OrderArgs(app, full))
		if got := ExitCode(err); got != ExitOK || !strings.Contains(out.String(), "USAGE:") {
			t.Errorf("hoard %s: exit %d, output %q; want the help, exit 0", strings.Join(args, " "), got, out.String())
		}
	}
}
