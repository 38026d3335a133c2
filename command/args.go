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
// moved with the command's so that the command reports them. A boolean
// flag's value written apart (--short-log maybe) is joined to it
// (--short-log=maybe) where nothing else can be meant: before the command
// name, in its place, and after it for as many arguments as the command
// has too many (joinBoolValues); urfave then reports a bad value as the
// flag's, instead of "No help topic for 'maybe'" or a count of arguments. With --help, the positional arguments are dropped:
// urfave would take them for a help topic. A help topic that is no command
// (hoard help lsit, hoard --help lsit, hoard help --help lsit, hoard help
// -- lsit, hoard config help shwo, hoard config --help shwo) is given as
// the command itself, which hoard reports as unknown (withoutHelp). Args that do not start with a known command are
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
	var helpAt []int // where --help or -h is, before the command name
	i := 1
	for i < len(args) && isFlag(args[i]) {
		if args[i] == "--" {
			if len(helpAt) > 0 && i+1 < len(args) && !isFlag(args[i+1]) && findCommand(app.Commands, args[i+1]) == nil {
				// hoard --help -- lsit: as hoard --help lsit.
				return withoutHelp(app.Commands, args, i+1, helpAt)
			}
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
		if globals.isBool(args[i]) && i+2 < len(args) && !isFlag(args[i+1]) && findCommand(app.Commands, args[i+1]) == nil &&
			slices.ContainsFunc(args[i+2:], func(a string) bool { return findCommand(app.Commands, a) != nil }) {
			// --short-log maybe wal-fetch: the value of the flag, written
			// apart, where the command name should be. Joined, urfave
			// reports the flag's bad value; apart, it took the value for
			// a command ("No help topic for 'maybe'").
			head = append(head, args[i]+"="+args[i+1])
			i += 2
			continue
		}
		if isHelpFlag(args[i]) {
			helpAt = append(helpAt, i)
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
		return withoutHelp(app.Commands, args, i, helpAt)
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
	var aparts []boolApart
	help := false
	var helpFlags []int // where the help flags are in body
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			dashdash = rest[j:]
			j = len(rest)
		case isFlag(a):
			n := 0
			list := &body
			switch {
			case own.has(a):
				if isHelpFlag(a) {
					help = true
					helpFlags = append(helpFlags, len(body))
				}
				n = own.valueArgs(a, rest[j+1:])
				body = append(body, rest[j:j+1+n]...)
			case globals.has(a):
				n = globals.valueArgs(a, rest[j+1:])
				list = &moved
				moved = append(moved, rest[j:j+1+n]...)
			default:
				body = append(body, a)
			}
			if n == 0 && (own.isBool(a) || globals.isBool(a)) && j+1 < len(rest) && !isFlag(rest[j+1]) {
				aparts = append(aparts, boolApart{list: list, flag: len(*list) - 1, pos: len(pos)})
			}
			j += n
		case len(pos) == 0 && findCommand(cmd.Subcommands, a) != nil:
			// A subcommand: its flags follow its name. The parent's flags
			// read so far stay before it.
			cmd = findCommand(cmd.Subcommands, a)
			own = flagSet{cmd.Flags, []cli.Flag{cli.HelpFlag}}
			aparts = nil // a boolean flag before the name took no value
			body = append(body, a)
		default:
			pos = append(pos, a)
		}
	}
	if !help {
		pos = joinBoolValues(cmd, pos, aparts)
	}
	group := len(cmd.Subcommands) > 0
	// The name in the subcommand's place, after the help command's
	// names: is it a boolean flag's value written apart (hoard restore
	// --standby false --help)? The rewrites below keep that name.
	topic := 0
	if len(pos) > 0 && slices.Contains(helpNames, pos[0]) {
		topic = helpTopic(pos)
	}
	apartTopic := slices.ContainsFunc(aparts, func(b boolApart) bool { return b.pos == topic && !isHelpFlag((*b.list)[b.flag]) })
	if group && len(dashdash) > 1 && !isFlag(dashdash[1]) && (help || len(pos) > 0) &&
		!slices.ContainsFunc(pos, func(a string) bool { return !slices.Contains(helpNames, a) }) {
		// hoard config help -- shwo, hoard config --help -- shwo: the
		// name after "--" is the topic, as without it.
		pos = append(pos, dashdash[1:]...)
		dashdash = nil
	}
	if group && len(pos) > 1 && slices.Contains(helpNames, pos[0]) {
		// hoard config help shwo: as withoutHelp's hoard help lsit;
		// hoard config help help show: as hoard config help show.
		if t := helpTopic(pos); t < len(pos) && !isFlag(pos[t]) {
			if findCommand(cmd.Subcommands, pos[t]) == nil {
				pos = pos[t:]
			} else {
				pos = slices.Delete(pos, 1, t)
			}
		}
	}
	if help && group && len(pos) > 0 && !apartTopic {
		// The help flag with a name in the subcommand's place: urfave
		// would show the command's help and ignore it. As hoard --help
		// lsit and hoard help --help list, the help flag goes: a name
		// that is no subcommand is reported (hoard config --help shwo,
		// hoard config shwo --help, hoard config help --help shwo are
		// hoard config shwo; hoard restore --help shwo is hoard restore
		// shwo), and the help command's topic gets its help (hoard
		// config help --help show is hoard config help show).
		t := 0
		if slices.Contains(helpNames, pos[0]) {
			t = helpTopic(pos)
		}
		if t < len(pos) && !isFlag(pos[t]) && (t > 0 || findCommand(cmd.Subcommands, pos[0]) == nil) {
			for _, j := range slices.Backward(helpFlags) {
				body = slices.Delete(body, j, j+1)
			}
			help = false
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

// helpNames are the name and alias of urfave/cli's help command, which
// its Setup adds to hoard and to each command with subcommands.
var helpNames = []string{"help", "h"}

// withoutHelp returns args, whose args[i] names no command of hoard,
// without what would make urfave/cli take a name that is no command for a
// help topic ("No help topic for 'lsit'", exit 1): the help flags before
// it, at helpAt (hoard --help lsit), or args[i] itself when it is the help
// command and the next argument no command (hoard help lsit), with the help
// command's names and help flags that follow it (hoard help help lsit,
// hoard help --help lsit). hoard then reports the name as a command it
// does not have (unknownCommand, exit 2). A help command's name or help
// flag repeated before a command is dropped (hoard help help list and
// hoard help --help list are hoard help list).
func withoutHelp(cmds []*cli.Command, args []string, i int, helpAt []int) []string {
	drop := helpAt
	if slices.Contains(helpNames, args[i]) {
		t := i + helpTopic(args[i:])
		switch {
		case t >= len(args) || isFlag(args[t]):
			// hoard help, hoard help help, hoard help --help: the
			// help, or the help command's own.
			return args
		case findCommand(cmds, args[t]) != nil:
			// hoard help help list, hoard help --help list: as
			// hoard help list.
			return slices.Delete(slices.Clone(args), i+1, t)
		}
		drop = slices.Clone(helpAt)
		for j := i; j < t; j++ {
			drop = append(drop, j)
		}
	}
	out := slices.Clone(args)
	for _, j := range slices.Backward(drop) {
		out = slices.Delete(out, j, j+1)
	}
	return out
}

// helpTopic returns the index in args, which starts with the help command's
// name, of the topic: the first argument that is neither the help
// command's name again, nor the help flag, nor "--" (hoard help -- lsit),
// or len(args). urfave/cli reads
// hoard help help lsit and hoard help --help lsit as the help command's
// help with the topic "lsit", which it has not ("No help topic for
// 'lsit'", exit 1): the topic is the topic of one help command.
func helpTopic(args []string) int {
	t := 1
	for t < len(args) && (slices.Contains(helpNames, args[t]) || isHelpFlag(args[t]) || args[t] == "--") {
		t++
	}
	return t
}

// isHelpFlag reports whether a is --help or -h.
func isHelpFlag(a string) bool {
	return isFlag(a) && slices.Contains(cli.HelpFlag.Names(), flagName(a))
}

// boolApart is a boolean flag written with an argument right after it:
// the flag is (*list)[flag], the argument pos[pos].
type boolApart struct {
	list      *[]string
	flag, pos int
}

// joinBoolValues makes the arguments written right after a boolean flag
// (aparts, in order) that flag's value (--short-log maybe →
// --short-log=maybe) while cmd is given more positional arguments than
// its ArgsUsage names, and returns the positional arguments left. A
// boolean flag takes no separate value, so urfave/cli read the value as
// an argument too many and the command reported the count ("want NAME and
// DEST, got 3 arguments"); joined, urfave reports the flag's bad value, or
// takes a good one. A command with subcommands, or whose ArgsUsage has
// "...", is left as it is.
func joinBoolValues(cmd *cli.Command, pos []string, aparts []boolApart) []string {
	if len(cmd.Subcommands) > 0 || strings.Contains(cmd.ArgsUsage, "...") {
		return pos
	}
	excess := len(pos) - len(strings.Fields(cmd.ArgsUsage))
	joined := map[int]bool{}
	for _, b := range aparts {
		if excess <= 0 {
			break
		}
		(*b.list)[b.flag] += "=" + pos[b.pos]
		joined[b.pos] = true
		excess--
	}
	var out []string
	for i, a := range pos {
		if !joined[i] {
			out = append(out, a)
		}
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

// isBool reports whether a is a flag of s that takes no value (a boolean
// flag), written without one ("--short-log", not "--short-log=true").
func (s flagSet) isBool(a string) bool {
	if strings.Contains(a, "=") {
		return false
	}
	f, ok := s.find(a).(cli.DocGenerationFlag)
	return ok && !f.TakesValue()
}

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
