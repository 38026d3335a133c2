package command

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// stopSignals stop any command: its context is cancelled, it stops what it
// is doing, removes what it left half-written and exits ExitInterrupted.
var stopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}

// childStopSignals stop wal-fetch and wal-push too. PostgreSQL's
// postmaster sends SIGQUIT (immediate shutdown, or a backend crashed) and,
// with send_abort_for_crash or send_abort_for_kill, SIGABRT to the process
// group of the startup process and of the archiver, whose system() ignores
// SIGQUIT and SIGINT while it waits: only the child's exit status tells
// them to stop. Go's own answer to both is a goroutine dump and exit 2,
// which restore_command's caller reads as "not archived" (recovery ends
// there, and may promote). And in a CLONE_VFORK child that os/exec's first
// process start makes to probe pidfd support (os.checkClonePidfd, signals
// not blocked), that crash path can deadlock on the runtime's paniclk: the
// child, which shares the parent's memory, then outlives it forever,
// holding pg_wal's files open. Handled here, such a signal only wakes the
// goroutine below, in the child as in the parent.
var childStopSignals = []os.Signal{syscall.SIGQUIT, syscall.SIGABRT}

// childStopGrace is how long wal-fetch and wal-push may take, after a stop
// signal, to return; then they exit at once. What they leave is what a
// kill -9 leaves: a temporary file that no reader takes for the file.
const childStopGrace = 10 * time.Second

// stopSignal is the cause of a context NotifySignals cancelled.
type stopSignal struct {
	sig   syscall.Signal
	child bool // the command is wal-fetch or wal-push
}

func (s *stopSignal) Error() string { return "stopped by " + unix.SignalName(s.sig) }

// NotifySignals returns a context that the first stop signal cancels, for
// running the app with args (the command line as given). main calls it
// first, before any work: a signal that comes before it is Go's default
// (see childStopSignals). The handlers stay until the process exits: a
// SIGQUIT after the command returned must not take Go's crash path either.
func NotifySignals(app *cli.App, args []string) context.Context {
	child := postgresChild(app, args) != ""
	sigs := stopSignals
	if child {
		sigs = slices.Concat(stopSignals, childStopSignals)
		// A panic (a bug) exits 2, which restore_command's caller reads
		// as "not archived": ending recovery early could promote a
		// cluster that misses committed transactions. Crash with
		// SIGABRT instead, after the same goroutine dump: PostgreSQL
		// stops recovery, or restarts its archiver, and tells why.
		debug.SetTraceback("crash")
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	go func() {
		sig := (<-ch).(syscall.Signal)
		cancel(&stopSignal{sig: sig, child: child})
		if child {
			time.AfterFunc(childStopGrace, func() {
				fmt.Fprintf(os.Stderr, "hoard: stopped by %s; exiting without waiting for the work in progress\n", unix.SignalName(sig))
				os.Exit(128 + int(sig))
			})
		}
	}()
	return ctx
}

// Stopped returns the error a command that returned err exits with when
// a stop signal cancelled ctx (NotifySignals): otherwise err. A command
// stopped early exits ExitInterrupted whatever its error wraps (a storage
// error from a cancelled request); one that finished despite the signal
// (nil) exits 0. wal-fetch and wal-push exit 128 + the signal's number in
// both cases, as if the signal had killed them: PostgreSQL stops recovery
// or its archiver (wait_result_is_any_signal), and for SIGTERM (143) shuts
// down (wait_result_is_signal), instead of reading "not archived" or
// "archived" from a command that was told to stop.
func Stopped(ctx context.Context, err error) error {
	s, ok := context.Cause(ctx).(*stopSignal)
	if !ok {
		return err
	}
	if s.child {
		if err != nil {
			err = fmt.Errorf("%w: %w", s, err)
		} else {
			err = s
		}
		return &exitError{code: 128 + int(s.sig), err: err}
	}
	return Interrupted(err)
}
