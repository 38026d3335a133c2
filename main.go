// Command hoard is PostgreSQL backup and point-in-time restore in one
// binary: it streams WAL, takes basebackups over the replication protocol,
// stores them compressed and encrypted in object storage in PGHoard's
// format, and restores them to any point in time.
package main

import (
	"fmt"
	"os"

	"github.com/hoardbackup/hoard/command"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	app := command.App(version)
	// Before any work (see command.NotifySignals).
	ctx := command.NotifySignals(app, os.Args)
	err := app.RunContext(ctx, command.OrderArgs(app, os.Args))
	// A signal came: whatever the command returned, it was told to stop.
	err = command.Stopped(ctx, err)
	// wal-fetch and wal-push: the status PostgreSQL reads.
	err = command.PostgresStatus(app, os.Args, err)
	if err != nil {
		if msg := command.ErrorMessage(err); msg != "" {
			fmt.Fprintln(os.Stderr, "hoard:", msg)
		}
	}
	os.Exit(command.ExitCode(err))
}
