package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/command"
)

// hoardCall matches where a hoard command line starts in a page: the word
// hoard (or a path ending in /hoard) followed by a blank.
var hoardCall = regexp.MustCompile("(?:^|[\\s`'\"(/=])hoard[ \t]+")

// callEnd cuts a command line where it ends in the page: a code span,
// a quote, a pipe, a comment, a list or a parenthesis closes it.
var callEnd = regexp.MustCompile("[`'\"|;)#]|&&")

// flagNames returns the --names (and aliases) of flags.
func flagNames(flags []cli.Flag) []string {
	var out []string
	for _, f := range flags {
		for _, n := range f.Names() {
			if len(n) > 1 {
				out = append(out, "--"+n)
			}
		}
	}
	return out
}

// takesValue reports whether the global flag name (--config) reads the
// next word as its value.
func takesValue(app *cli.App, name string) bool {
	for _, f := range app.Flags {
		if slices.Contains(flagNames([]cli.Flag{f}), name) {
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false
}

// findCommand returns the command of cmds called name (or an alias).
func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// TestPages_Flags checks that every flag the pages show after a hoard
// command (`hoard [global flags] COMMAND [SUBCOMMAND] ... --flag`) is a flag
// of that command or a global one, so that a flag renamed or removed in the
// code cannot stay in the README, a page, the systemd unit or the
// Dockerfile. commands.md, generated from the code, is the reference and
// is not read. Words after hoard that name no command are prose.
func TestPages_Flags(t *testing.T) {
	app := command.App("dev")
	global := append(flagNames(app.Flags), "--help", "--version")
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = slices.DeleteFunc(pages, func(p string) bool { return p == "commands.md" })
	pages = append(pages, "../README.md", "../deploy/hoard.service", "../Dockerfile")
	calls := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range hoardCall.FindAllStringIndex(line, -1) {
				rest := line[m[1]:]
				if e := callEnd.FindStringIndex(rest); e != nil {
					rest = rest[:e[0]]
				}
				words := strings.Fields(rest)
				// Global flags, then the command and its subcommand.
				var unknown []string
				j := 0
				for ; j < len(words) && strings.HasPrefix(words[j], "-"); j++ {
					name, _, hasValue := strings.Cut(words[j], "=")
					if !slices.Contains(global, name) {
						unknown = append(unknown, name)
					}
					if !hasValue && takesValue(app, name) {
						j++
					}
				}
				if j >= len(words) {
					continue
				}
				cmd := findCommand(app.Commands, words[j])
				if cmd == nil {
					// Prose ("hoard as the postgres user"), or another
					// program's hoard: docker build -t hoard --build-arg.
					continue
				}
				for _, name := range unknown {
					t.Errorf("%s:%d: hoard %s is no global flag: %s", page, i+1, name, strings.TrimSpace(line))
				}
				path := "hoard " + cmd.Name
				for j++; j < len(words); j++ {
					sub := findCommand(cmd.Subcommands, words[j])
					if sub == nil {
						break
					}
					cmd, path = sub, path+" "+sub.Name
				}
				calls++
				own := flagNames(cmd.Flags)
				for ; j < len(words); j++ {
					if words[j] == "--" {
						break // arguments only from here
					}
					if !strings.HasPrefix(words[j], "--") {
						continue
					}
					name, _, _ := strings.Cut(words[j], "=")
					if !slices.Contains(own, name) && !slices.Contains(global, name) {
						t.Errorf("%s:%d: %s has no flag %s: %s", page, i+1, path, name, strings.TrimSpace(line))
					}
				}
			}
		}
	}
	// The pages show well over a hundred command lines: far fewer means
	// the parsing above no longer finds them.
	if calls < 100 {
		t.Errorf("found %d hoard command lines in the pages, want over 100", calls)
	}
}
