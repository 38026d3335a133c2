package command

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

func TestOrderArgs(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string
	}{
		{"FlagsFirst", "object get -o F KEY", "object get -o F KEY"},
		{"ValueFlagAfterArg", "object get KEY -o F", "object get -o F KEY"},
		{"LongValueFlagAfterArg", "object get KEY --output F", "object get --output F KEY"},
		{"EqualsForm", "object get KEY --output=F", "object get --output=F KEY"},
		{"BoolFlagDoesNotTakeNext", "object ls --long PREFIX", "object ls --long PREFIX"},
		// A boolean flag's value written apart, where the command line
		// leaves no doubt that it is one: before the command name, or one
		// argument more than the command takes.
		{"BoolValueApartBeforeCommand", "--short-log maybe wal-fetch A B", "--short-log=maybe wal-fetch A B"},
		{"BoolValueApartNoCommand", "--short-log lst", "--short-log lst"},
		{"BoolValueApartTooManyArgs", "wal-fetch --short-log maybe A B", "--short-log=maybe wal-fetch A B"},
		{"BoolValueApartTrue", "wal-push --allow-root false P", "wal-push --allow-root=false P"},
		{"BoolValueApartExtra", "object ls PREFIX --long EXTRA", "object ls --long=EXTRA PREFIX"},
		{"BoolValueApartNoArgs", "list --json maybe", "list --json=maybe"},
		{"BoolBeforeSubcommand", "restore --overwrite list-basebackups EXTRA", "restore --overwrite list-basebackups EXTRA"},
		{"BoolValueApartHelp", "list --json maybe --help", "list --json --help"},
		{"RepeatedSliceFlag", "object put FILE KEY -m a=1 -m b=2", "object put -m a=1 -m b=2 FILE KEY"},
		{"GlobalFlagAfterCommand", "list --config F --json", "--config F list --json"},
		{"GlobalFlagAfterArg", "object get KEY --config F -o O", "--config F object get -o O KEY"},
		{"GlobalsBeforeKept", "--log-level warn object get KEY -o O", "--log-level warn object get -o O KEY"},
		// wal-push defines --config itself (archive_command lines put it
		// after the command): the command's own flag wins.
		{"CommandOwnConfig", "wal-push pg_wal/X --config F", "wal-push --config F pg_wal/X"},
		{"RestoreLikePGHoard", "restore --config F --target-dir D --target-time T", "--config F restore --target-dir D --target-time T"},
		{"ValueLooksLikeFlag", "restore --target-dir D --target-name -x", "restore --target-dir D --target-name -x"},
		{"SubcommandOfCommand", "restore list-basebackups --json --config F", "--config F restore list-basebackups --json"},
		{"DashDash", "object get -- -odd-key -o F", "object get -- -odd-key -o F"},
		{"DashDashAfterArg", "object get KEY -o F -- -x", "object get -o F -- KEY -x"},
		{"LoneDashIsArg", "object put - KEY -m a=1", "object put -m a=1 - KEY"},
		{"UnknownFlagMovedForUrfave", "list EXTRA --bogus", "list --bogus EXTRA"},
		{"HelpAfterArg", "object get KEY --help", "object get --help"},
		{"Completion", "object get KEY -o F --generate-bash-completion", "object get -o F KEY --generate-bash-completion"},
		{"UnknownCommand", "nope a -x", "nope a -x"},
		{"HelpCommand", "help list", "help list"},
		// The help command's help: help's own help, as before; a topic
		// after it is the topic of help alone.
		{"HelpHelp", "help help", "help help"},
		{"HelpHelpHelp", "help help help", "help help help"},
		{"HelpHelpCommand", "help help list", "help list"},
		{"HelpAliasHelpCommand", "h help config show", "h config show"},
		{"HelpHelpUnknown", "help help lsit", "lsit"},
		{"SubHelpHelpCommand", "config help help show", "config help show"},
		{"SubHelpHelpUnknown", "config help h shwo", "config shwo"},
		// The help flag on the help command: its topic is the topic of
		// help alone; without one, the help flag's help as before.
		{"HelpFlagHelp", "help --help", "help --help"},
		{"HelpShortFlagHelp", "help -h", "help -h"},
		{"HelpFlagHelpHelp", "help --help help", "help --help help"},
		{"HelpFlagCommand", "help --help list", "help list"},
		{"HelpShortFlagCommand", "h -h config show", "h config show"},
		{"HelpFlagUnknown", "help --help lsit", "lsit"},
		{"HelpShortFlagUnknown", "help -h lsit", "lsit"},
		{"HelpHelpFlagUnknown", "help help --help lsit", "lsit"},
		{"HelpFlagOtherFlag", "help --help --json lsit", "help --help --json lsit"},
		// "--" between the help command and its topic.
		{"HelpDashDashUnknown", "help -- lsit", "lsit"},
		{"HelpHelpDashDashUnknown", "help help -- lsit", "lsit"},
		{"HelpDashDashCommand", "help -- list", "help list"},
		{"HelpFlagDashDashUnknown", "--help -- lsit", "-- lsit"},
		{"HelpFlagDashDashCommand", "--help -- list", "--help -- list"},
		{"SubHelpDashDashUnknown", "config help -- shwo", "config shwo"},
		{"SubHelpDashDashCommand", "config help -- show", "config help show"},
		// The help flag on a command with subcommands: a name in the
		// subcommand's place that is none is reported, as without it; the
		// help command's topic is its topic.
		{"SubHelpFlagUnknown", "config --help shwo", "config shwo"},
		{"SubUnknownHelpFlag", "config shwo -h", "config shwo"},
		{"SubHelpHelpFlagUnknown", "config help --help shwo", "config shwo"},
		{"SubHelpHelpFlagCommand", "config help --help show", "config help show"},
		{"SubHelpFlagCommand", "config --help show", "config --help show"},
		{"SubHelpHelpFlag", "config help --help", "config --help"},
		{"HelpFlagExtraArg", "list --help extra", "list --help"},
		{"NoCommand", "--config F", "--config F"},
		{"MissingValue", "object get KEY -o", "object get -o KEY"},
		{"UnknownFlagBeforeCommand", "-D list --json", "list -D --json"},
		{"UnknownFlagValueBeforeCommand", "--config F --conifg G wal-fetch A B", "--config F wal-fetch --conifg G A B"},
		{"UnknownFlagThenCommand", "--bogus wal-fetch A B", "wal-fetch --bogus A B"},
		{"UnknownFlagNoCommand", "--bogus x y", "--bogus x y"},
	}
	app := App("test")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := OrderArgs(app, append([]string{"hoard"}, strings.Fields(tc.in)...))
			want := append([]string{"hoard"}, strings.Fields(tc.want)...)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("OrderArgs(%s) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// TestOrderArgs_Object runs hoard object put, ls and get on a local store
// with every flag, global ones included, after the positional arguments.
func TestOrderArgs_Object(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hoard.json")
	store := filepath.Join(dir, "store")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {
		"object_storage": {"storage_type": "local", "directory": %q}}}}`, filepath.Join(dir, "state"), store)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "in")
	if err := os.WriteFile(src, []byte("hello, archive\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hoard := func(args ...string) string {
		t.Helper()
		app := App("test")
		var out, errOut bytes.Buffer
		app.Writer, app.ErrWriter = &out, &errOut
		argv := append([]string{"hoard"}, args...)
		if err := app.RunContext(context.Background(), OrderArgs(app, argv)); err != nil {
			t.Fatalf("hoard %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	hoard("object", "put", src, "s/misc/greeting", "-m", "note=hi", "--config", cfg)
	if ls := hoard("object", "ls", "s/misc/", "--long", "--config", cfg); !strings.Contains(ls, "s/misc/greeting") || !strings.Contains(ls, "note=hi") {
		t.Errorf("object ls --long after PREFIX:\n%s", ls)
	}
	dst := filepath.Join(dir, "out")
	hoard("object", "get", "s/misc/greeting", "-o", dst, "--config", cfg)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatalf("object get KEY -o FILE wrote no file: %v", err)
	}
	if string(got) != "hello, archive\n" {
		t.Errorf("object get wrote %q", got)
	}
}

func TestOrderArgs_ExitCodes(t *testing.T) {
	// A flag mistake after the arguments is still a usage error, and
	// still wal-fetch's fatal status for wal-fetch.
	if got := run(t, "list", "EXTRA", "--no-such-flag"); got != ExitUsage {
		t.Errorf("unknown flag after an argument: exit %d, want %d", got, ExitUsage)
	}
	if got := run(t, "wal-fetch", "a", "b", "--no-such-flag"); got != exitWALFatal {
		t.Errorf("wal-fetch with an unknown flag after its arguments: exit %d, want %d", got, exitWALFatal)
	}
	app := App("test")
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	if err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "object", "get", "KEY", "--help"})); err != nil {
		t.Errorf("object get KEY --help: %v", err)
	}
}

// TestOrderArgs_EveryCommand: for every command and subcommand, each of its
// flags written after a positional argument is moved before it, with its
// value when it takes one, so no command reads a flag as an argument.
func TestOrderArgs_EveryCommand(t *testing.T) {
	app := App("test")
	var walk func(path []string, cmds []*cli.Command)
	n := 0
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Name == "help" {
				continue
			}
			p := append(append([]string{}, path...), c.Name)
			for _, f := range c.Flags {
				name := f.Names()[0]
				if name == "help" {
					continue
				}
				flag := "--" + name
				if len(name) == 1 {
					flag = "-" + name
				}
				fl := []string{flag}
				if d, ok := f.(cli.DocGenerationFlag); ok && d.TakesValue() {
					fl = append(fl, "VALUE")
				}
				in := append(append(append([]string{"hoard"}, p...), "ARG"), fl...)
				want := append(append(append([]string{"hoard"}, p...), fl...), "ARG")
				if diff := cmp.Diff(want, OrderArgs(app, in)); diff != "" {
					t.Errorf("OrderArgs(%s) (-want +got):\n%s", strings.Join(in, " "), diff)
				}
				n++
			}
			walk(p, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
	if n < len(app.Commands) {
		t.Fatalf("only %d flags checked over %d commands", n, len(app.Commands))
	}
}
