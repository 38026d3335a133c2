package command

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// OrderArgs returns the command line args (program name first) with the
// flags that follow a command's positional arguments moved before them, so
// that hoard accepts flags anywhere, as PGHoard's argparse-based tools do:
//
//	hoard object get KEY -o FILE          → hoard object get -o FILE KEY
//	hoard restore --config F --target-dir D  (global --config after the command)
//
// urfave/cli stops reading flags at a command's first positional argument;
// OrderArgs does the reading it skips. It knows which flags take a value
// (the next argument, unless written --flag=value), so a value is never
// mistaken for a positional argument. A global flag (--config, --site,
// --log-level...) written after the command name moves before it, unless
// the command defines a flag of that name itself. Everything after "--"
// stays positional, and unknown flags, even before the command name, are
// moved with the command's so that the command reports them. With --help, the positional arguments are dropped:
// urfave would take them for a help topic. Args that do not start with a known command are
// returned unchanged.
func OrderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	globals := flagSet{app.Flags, []cli.Flag{cli.HelpFlag, cli.VersionFlag}}
	// Global flags before the command name stay where they are. A flag
	// hoard does not define there (PGHoard's -D, a misspelt --config)
	// moves after the command name, with the next argument when that is
	// not a command name (it may be the flag's value): the command then
	// reports it, with its own exit status. Left before it, urfave would
	// fail to parse the global flags, and report it without the command
	// (PostgresStatus still makes that fatal for wal-fetch).
	var head, unknown []string
	i := 1
	for i < len(args) && isFlag(args[i]) {
		if args[i] == "--" {
			return args
		}
		if !globals.has(args[i]) {
			n := 1
			if !strings.Contains(args[i], "=") && i+1 < len(args) && !isFlag(args[i+1]) && findCommand(app.Commands, args[i+1]) == nil {
				n = 2
			}
			unknown = append(unknown, args[i:i+n]...)
			i += n
			continue
		}
		n := 1 + globals.valueArgs(args[i], args[i+1:])
		head = append(head, args[i:i+n]...)
		i += n
	}
	if i >= len(args) {
		return args
	}
	cmd := findCommand(app.Commands, args[i])
	if cmd == nil {
		return args
	}
	head = append([]string{args[0]}, head...)
	var moved, body []string // global flags found later; the command path and its flags
	body = append(body, args[i])
	body = append(body, unknown...)
	var pos []string
	rest := args[i+1:]
	completion := len(rest) > 0 && rest[len(rest)-1] == "--generate-bash-completion"
	if completion {
		// urfave/cli only completes when this flag is the very last
		// argument: it stays there.
		rest = rest[:len(rest)-1]
	}
	own := flagSet{cmd.Flags, []cli.Flag{cli.HelpFlag}}
	var dashdash []string
	help := false
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			dashdash = rest[j:]
			j = len(rest)
		case isFlag(a):
			n := 0
			switch {
			case own.has(a):
				help = help || slices.Contains(cli.HelpFlag.Names(), flagName(a))
				n = own.valueArgs(a, rest[j+1:])
				body = append(body, rest[j:j+1+n]...)
			case globals.has(a):
				n = globals.valueArgs(a, rest[j+1:])
				moved = append(moved, rest[j:j+1+n]...)
			default:
				body = append(body, a)
			}
			j += n
		case len(pos) == 0 && findCommand(cmd.Subcommands, a) != nil:
			// A subcommand: its flags follow its name. The parent's flags
			// read so far stay before it.
			cmd = findCommand(cmd.Subcommands, a)
			own = flagSet{cmd.Flags, []cli.Flag{cli.HelpFlag}}
			body = append(body, a)
		default:
			pos = append(pos, a)
		}
	}
	out := append(head, moved...)
	out = append(out, body...)
	switch {
	case help:
		// urfave/cli would read the arguments as a help topic: a help
		// request ignores them, as argparse's does.
	case len(dashdash) > 0:
		// "--" ends the flags: it goes before every positional argument,
		// which are then all read as such, as argparse reads them.
		out = append(out, "--")
		out = append(out, pos...)
		out = append(out, dashdash[1:]...)
	default:
		out = append(out, pos...)
	}
	if completion {
		out = append(out, "--generate-bash-completion")
	}
	return out
}

// isFlag reports whether a looks like a flag: "-x", "--x", "--x=v" or
// "--". A lone "-" (stdin or stdout) is an argument.
func isFlag(a string) bool {
	return len(a) > 1 && a[0] == '-'
}

// flagName returns the name in a flag argument: "o" for "-o", "output" for
// "--output=FILE".
func flagName(a string) string {
	name := strings.TrimLeft(a, "-")
	name, _, _ = strings.Cut(name, "=")
	return name
}

// flagSet is the flags defined at one level of the command line.
type flagSet [2][]cli.Flag

func (s flagSet) find(a string) cli.Flag {
	name := flagName(a)
	for _, list := range s {
		for _, f := range list {
			for _, n := range f.Names() {
				if n == name {
					return f
				}
			}
		}
	}
	return nil
}

func (s flagSet) has(a string) bool { return s.find(a) != nil }

// valueArgs returns how many of the following arguments the flag a
// consumes: 1 for a flag that takes a value written as a separate
// argument, else 0 (bool flags, --flag=value, unknown flags, or no
// argument left, which urfave/cli then reports).
func (s flagSet) valueArgs(a string, next []string) int {
	if strings.Contains(a, "=") || len(next) == 0 {
		return 0
	}
	f, ok := s.find(a).(cli.DocGenerationFlag)
	if !ok || !f.TakesValue() {
		return 0
	}
	return 1
}

// findCommand returns the command named (or aliased) name, or nil.
func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
