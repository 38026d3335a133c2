package command

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes shared by every command. wal-push and wal-fetch add their own
// (see their help): PostgreSQL reads their exit status.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the operation failed; the message says why
	ExitUsage   = 2 // bad flags, arguments or configuration: nothing was done
	// ExitInterrupted is returned when SIGINT or SIGTERM stopped the command.
	ExitInterrupted = 130
)

// exitCodesHelp documents the exit codes in `hoard --help`.
const exitCodesHelp = `EXIT STATUS:
   0    success
   1    the operation failed (the message names the object or setting at fault)
   2    bad flags, arguments or configuration; nothing was changed
   130  interrupted by SIGINT or SIGTERM
   wal-fetch, wal-push: 128 + the signal's number when stopped by SIGINT (130),
              SIGQUIT (131), SIGABRT (134) or SIGTERM (143), as PostgreSQL reads it
   wal-fetch: 1 = the file is not in the archive (PostgreSQL ends recovery there),
              255 = the archive could not be read, or hoard was called wrongly
              (PostgreSQL stops recovery instead of ending it early)`

// usageError is a mistake in how hoard was called: the message says what is
// wrong and Hint what to do instead.
type usageError struct {
	msg  string
	hint string
}

func (e *usageError) Error() string {
	if e.hint == "" {
		return e.msg
	}
	return e.msg + "\n  hint: " + e.hint
}

// usagef returns a usage error with a hint (which may be empty).
func usagef(hint, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), hint: hint}
}

// noArgs is the usage error of a command that takes no arguments and was
// given some, with hint; nil when it was given none.
func noArgs(c *cli.Context, hint string) error {
	if c.NArg() > 0 {
		return usagef(hint, "unexpected argument %q", c.Args().First())
	}
	return nil
}

// exitError carries an explicit exit code for commands whose callers read
// it (PostgreSQL for wal-fetch). A nil Err exits quietly.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// ExitCode maps an error returned by the app to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	return ExitFailure
}

// ErrorMessage returns the text to print for err, or "" when the command
// asked to exit quietly.
func ErrorMessage(err error) string {
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return ""
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	// An error may quote a name from the storage (see printable). Lines
	// of hoard's own multi-line errors stay lines, indented, so that none
	// a name holds can pass for a line of its own.
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = printable(l)
	}
	return strings.Join(lines, "\n  ")
}

// Interrupted marks err, returned by a command that SIGINT or SIGTERM
// stopped, so that hoard exits ExitInterrupted whatever the error wraps (a
// storage error from a cancelled request, a wal-fetch failure). A nil err,
// a command that finished despite the signal, stays nil.
func Interrupted(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return &exitError{code: ExitInterrupted, err: err}
	}
	return &exitError{code: ExitInterrupted, err: fmt.Errorf("interrupted: %w", err)}
}
