package command

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/config"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "inspect the configuration",
		Subcommands: []*cli.Command{{
			Name:  "show",
			Usage: "print the effective configuration, secrets masked, with where each value came from",
			Description: `Loads the configuration as every other command does: PGHoard's defaults, then the
file given by --config (if any), then the HOARD_* environment variables, and prints
every setting with its source: default, file, env HOARD_X (env HOARD_X_FILE for a value
read from the file that variable names), or key file PATH (a key of encryption_keys_dir).
With no --config the configuration comes from the environment alone.

Secrets (webserver_password, private keys, storage credentials, and the nodes' libpq
password and sslpassword) are printed as xxxxx when set. Exit status 2 means the
configuration is invalid; the message lists every problem.`,
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "json", Usage: "print the settings as JSON"},
			},
			Action: runConfigShow,
		}},
	}
}

// configJSON is `hoard config show --json`.
type configJSON struct {
	File     string         `json:"file"` // "" when built from the environment only
	Settings []config.Value `json:"settings"`
	Warnings []string       `json:"warnings"`
}

func runConfigShow(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	vals := cfg.Values()
	if c.Bool("json") {
		out := configJSON{File: cfg.File, Settings: vals, Warnings: cfg.Warnings}
		if out.Warnings == nil {
			out.Warnings = []string{}
		}
		return writeJSON(c.App.Writer, out)
	}
	return writeConfigTable(c.App.Writer, cfg.File, vals)
}

// writeConfigTable prints one setting per line: path, value as JSON, source.
func writeConfigTable(w io.Writer, file string, vals []config.Value) error {
	if file == "" {
		printf(w, "# configuration from the environment only (no --config)\n")
	} else {
		printf(w, "# configuration file %s\n", file)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	printf(tw, "KEY\tVALUE\tSOURCE\n")
	for _, v := range vals {
		printf(tw, "%s\t%s\t%s\n", v.Path, showValue(v.Value), v.Source)
	}
	return tw.Flush()
}

// showValue prints a value as JSON on one line; a multi-line string (a PEM
// public key) is cut to its first line and its length.
func showValue(v any) string {
	if s, ok := v.(string); ok && strings.Contains(s, "\n") {
		first, _, _ := strings.Cut(s, "\n")
		return fmt.Sprintf("%q... (%d bytes)", first, len(s))
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}
