package command

import "github.com/urfave/cli/v2"

// commands lists hoard's subcommands, each in its own file.
func commands() []*cli.Command {
	return []*cli.Command{
		basebackupCommand(),
		daemonCommand(),
		listCommand(),
		restoreCommand(),
		walPushCommand(),
		walFetchCommand(),
		retentionCommand(),
		createKeysCommand(),
		objectCommand(),
		verifyCommand(),
		checkCommand(),
		archiveSyncCommand(),
		archiveCopyCommand(),
		configCommand(),
		completionCommand(),
		demoCommand(),
	}
}
