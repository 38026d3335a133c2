// Command hoard is PostgreSQL backup and point-in-time restore in one
// binary: it streams WAL, takes basebackups over the replication protocol,
// stores them compressed and encrypted in object storage in PGHoard's
// format, and restores them to any point in time.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hoardbackup/hoard/command"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := command.App(version)
	err := app.RunContext(ctx, command.OrderArgs(app, os.Args))
	if ctx.Err() != nil {
		// A signal came: whatever the command returned, it stopped early.
		err = command.Interrupted(err)
	}
	stop()
	// wal-fetch and wal-push: the status PostgreSQL reads.
	err = command.PostgresStatus(app, os.Args, err)
	if err != nil {
		if msg := command.ErrorMessage(err); msg != "" {
			fmt.Fprintln(os.Stderr, "hoard:", msg)
		}
	}
	os.Exit(command.ExitCode(err))
}
