package docs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/command"
	"github.com/hoardbackup/hoard/config"
)

// Generated pages, by file name under docs/.
const (
	ConfigurationFile = "configuration.md"
	CommandsFile      = "commands.md"
)

// Pages renders every generated page, by file name.
func Pages() (map[string][]byte, error) {
	cmds, err := Commands()
	if err != nil {
		return nil, err
	}
	return map[string][]byte{ConfigurationFile: Configuration(), CommandsFile: cmds}, nil
}

// Configuration renders configuration.md: the environment variables, then
// every key grouped by the object it belongs to.
func Configuration() []byte {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Configuration reference\n\n")
	w("<!-- Generated from config.Keys and config.EnvVars by `go generate ./docs`; do not edit. -->\n\n")
	w("hoard reads [PGHoard](https://github.com/Aiven-Open/pghoard)'s JSON configuration file, so a PGHoard\n")
	w("configuration works unchanged. Values come, in order, from the defaults below, the file given by\n")
	w("`--config` (or `HOARD_CONFIG`), then the `HOARD_*` environment variables, so the environment wins.\n")
	w("With no file at all, the variables alone build a one-site configuration (the site is named by\n")
	w("`HOARD_SITE`, default `default`): this is how hoard runs as a [sidecar](kubernetes.md). The\n")
	w("name is part of the site's object keys (`<name>/xlog/...`), so give every hoard that reads or\n")
	w("writes the site, the daemon, `archive_command` and `restore_command` among them, the same\n")
	w("`HOARD_SITE`: `--site` does not rename the site, and `--site NAME` that is not its name fails\n")
	w("saying so (exit 2; `wal-fetch` 255), rather than reading or writing under another name's keys.\n\n")
	w("The file is the one `--config` names, else `HOARD_CONFIG`, else `PGHOARD_CONFIG`; there is no\n")
	w("default path. A file hoard cannot use stops every command with exit status 2 (`wal-fetch` 255),\n")
	w("naming its absolute path and how it was given, and saying what to do:\n\n")
	w("```\n")
	w("hoard: configuration file /etc/hoard/hoard.json (--config /etc/hoard/hoard.json) does not exist\n")
	w("hoard: configuration file /etc/hoard/hoard.json (HOARD_CONFIG=/etc/hoard/hoard.json): permission denied: the user hoard runs as (uid 999) cannot read it\n")
	w("hoard: configuration file /etc/hoard (--config /etc/hoard) is a directory\n")
	w("hoard: configuration file /etc/hoard/hoard.json (--config /etc/hoard/hoard.json) is empty\n")
	w("```\n\n")
	w("each followed by a hint: the places hoard looks; who must be able to read the file (it holds\n")
	w("secrets: `chown` it to the user hoard runs as, or `chgrp` it to that user's group and `chmod\n")
	w("0640`, and let that user into the directories above it); the JSON files in the directory; that\n")
	w("an empty file is no configuration (a write cut short leaves one), while no file at all builds it\n")
	w("from the `HOARD_*` variables. A relative path is shown resolved against the working directory.\n\n")
	w("`hoard config show` prints the effective configuration, secrets masked, and where each value\n")
	w("came from. Unknown keys are reported as warnings, not errors, with the key a typo most likely\n")
	w("meant. A key given twice in one object takes its last value, as in PGHoard, and is reported as\n")
	w("a warning too, as is a `HOARD_*` variable that hoard does not read (`HOARD_BASEBACKUP_CONT:\n")
	w("unknown variable (did you mean HOARD_BASEBACKUP_COUNT?)`). Validation reports every problem at\n")
	w("once, each with its JSON path or variable name, and exits with status 2.\n\n")
	w("The PostgreSQL connection (`nodes`) also takes libpq's `PG*` variables (`PGHOST`, `PGPORT`,\n")
	w("`PGUSER`, `PGPASSWORD`, `PGSSLMODE`, ...) and `~/.pgpass` for whatever the node does not set;\n")
	w("a site with no `nodes` takes everything from them. In a `.pgpass` (or the file `passfile` or\n")
	w("`PGPASSFILE` names), the replication connection's password is looked up under the database\n")
	w("`replication`, as `pg_receivewal`, `pg_basebackup` and a standby look it up, and under the node's\n")
	w("`dbname` when no such line matches; the ordinary connections hoard also opens (slots, `hoard\n")
	w("check`, local-tar's `pg_backup_start`) under the node's `dbname`, as libpq does: a line with `*`\n")
	w("as its database serves both. A password file that is not a plain file, or that group or others\n")
	w("may read or write, is ignored, as libpq ignores it (pgx, hoard's driver, would read it): a\n")
	w("connection that then fails says `password file \"...\" has group or world access (0644) and was\n")
	w("ignored, as libpq ignores it: permissions should be u=rw (0600) or less (chmod 0600 ...)`. A\n")
	w("`passfile` a service file (`service`, `PGSERVICEFILE`) names is not checked.\n\n")

	w("## Environment variables\n\n")
	w("Site variables apply to the site named by `HOARD_SITE`, or to the only site. Variables marked\n")
	w("*file* can instead name a file with `NAME_FILE` (as container platforms mount secrets); one\n")
	w("trailing newline is dropped. `HOARD_STORAGE_URL` or `HOARD_STORAGE_TYPE` replaces the file's\n")
	w("`object_storage` (keeping its prefix); the `HOARD_<TYPE>_*` variables must match the storage type\n")
	w("in effect: %s.\n\n", storagePrefixes())
	w("| variable | key | *file* | meaning |\n|---|---|---|---|\n")
	for _, ev := range config.EnvVars {
		key := ev.Key
		if key != "" {
			if ev.Site {
				key = "backup_sites.<site>." + key
			}
			key = "`" + key + "`"
		}
		file := ""
		if ev.File {
			file = "`" + ev.Name + "_FILE`"
		}
		w("| `%s` | %s | %s | %s |\n", ev.Name, key, file, cell(ev.Help))
	}
	w("\nThe command line also reads `HOARD_CONFIG` (the file), `HOARD_SITE`, `HOARD_LOG_LEVEL`,\n")
	w("`HOARD_LOG_FORMAT` and `HOARD_SHORT_LOG`; see [commands](commands.md).\n")

	keys := config.Keys()
	sections := []string{""}
	for _, k := range keys {
		if k.Type == "object" {
			sections = append(sections, k.Path)
		}
	}
	for _, sec := range sections {
		title, intro := "Top-level keys", ""
		if sec != "" {
			title = "`" + sec + "`"
			for _, k := range keys {
				if k.Path == sec {
					intro = k.Doc
					if k.Default != "" {
						intro += " Default: " + k.Default + "."
					}
				}
			}
		}
		w("\n## %s\n\n", title)
		if intro != "" {
			w("%s\n", intro)
		}
		header := false
		for _, k := range keys {
			if k.Type == "object" || parent(k.Path) != sec {
				continue
			}
			if !header {
				w("\n| key | type | default | variable | meaning |\n|---|---|---|---|---|\n")
				header = true
			}
			doc := k.Doc
			if len(k.Storage) > 0 {
				doc += " Storage types: " + strings.Join(k.Storage, ", ") + "."
			}
			env := ""
			if k.Env != "" {
				env = "`" + strings.ReplaceAll(k.Env, ", ", "`, `") + "`"
			}
			def := ""
			if k.Default != "" {
				def = "`" + k.Default + "`"
			}
			w("| `%s` | %s | %s | %s | %s |\n", k.Path, k.Type, def, env, cell(doc))
		}
	}
	return b.Bytes()
}

// storagePrefixes lists the HOARD_<TYPE>_* variables of each storage type,
// from EnvVars: "`HOARD_LOCAL_*` for `local`, `HOARD_S3_*` for `s3`, ...".
func storagePrefixes() string {
	var out []string
	for _, ev := range config.EnvVars {
		typ, _, _ := strings.Cut(strings.TrimPrefix(ev.Name, "HOARD_"), "_")
		p := fmt.Sprintf("`HOARD_%s_*` for `%s`", typ, ev.Storage)
		if ev.Storage != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

// parent is the path of the object holding a key ("" at the top level).
func parent(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// cell escapes text for a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

// Commands renders commands.md: `hoard --help`, then the help of every
// command and subcommand, as the binary prints it.
func Commands() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Commands\n\n")
	b.WriteString("<!-- Generated from the help of every command by `go generate ./docs`; do not edit. -->\n\n")
	b.WriteString("`hoard help` and `hoard COMMAND --help` print the same text. Exit codes are listed under\n")
	b.WriteString("EXIT STATUS below; `wal-push` and `wal-fetch` document their own, which PostgreSQL reads.\n\n")
	paths := CommandPaths()
	for _, p := range paths {
		name := strings.Join(append([]string{"hoard"}, p...), " ")
		b.WriteString("- [" + name + "](#" + anchor(name) + ")\n")
	}
	for _, p := range paths {
		out, err := help(p)
		if err != nil {
			return nil, err
		}
		name := strings.Join(append([]string{"hoard"}, p...), " ")
		fmt.Fprintf(&b, "\n## %s\n\n```text\n%s\n```\n", name, strings.TrimRight(out, "\n"))
	}
	return b.Bytes(), nil
}

// CommandPaths lists the root (an empty path) and every visible command
// and subcommand of command.App, depth first.
func CommandPaths() [][]string {
	paths := [][]string{{}}
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden || c.Name == "help" {
				continue
			}
			p := append(append([]string{}, prefix...), c.Name)
			paths = append(paths, p)
			walk(p, c.Subcommands)
		}
	}
	walk(nil, command.App("dev").Commands)
	return paths
}

// help runs `hoard <path> --help` on a fresh app and returns what it prints.
func help(path []string) (string, error) {
	app := command.App("dev")
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, io.Discard
	args := append(append([]string{"hoard"}, path...), "--help")
	if err := app.RunContext(context.Background(), args); err != nil {
		return "", fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// anchor is GitHub's heading anchor for a heading made of words.
func anchor(heading string) string {
	return strings.ReplaceAll(strings.ToLower(heading), " ", "-")
}
