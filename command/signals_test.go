package command

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStopped: a command told to stop by a signal exits 130 when it
// returned an error and 0 when it finished; wal-fetch and wal-push exit
// 128 + the signal's number either way, never 1 ("not archived") or 0.
func TestStopped(t *testing.T) {
	missing := &exitError{code: exitWALMissing}
	cases := []struct {
		name  string
		cause *stopSignal // nil: no signal came
		err   error
		want  int
	}{
		{"OKNoSignal", nil, nil, ExitOK},
		{"ErrNoSignal", nil, missing, exitWALMissing},
		{"OKFinishedDespiteSignal", &stopSignal{sig: syscall.SIGTERM}, nil, ExitOK},
		{"ErrInterrupted", &stopSignal{sig: syscall.SIGTERM}, context.Canceled, ExitInterrupted},
		{"ErrChildQuit", &stopSignal{sig: syscall.SIGQUIT, child: true}, context.Canceled, 131},
		{"ErrChildDoneQuit", &stopSignal{sig: syscall.SIGQUIT, child: true}, nil, 131},
		{"ErrChildMissingTerm", &stopSignal{sig: syscall.SIGTERM, child: true}, missing, 143},
		{"ErrChildAbort", &stopSignal{sig: syscall.SIGABRT, child: true}, errors.New("storage"), 134},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			if tc.cause != nil {
				cancel(tc.cause)
			}
			defer cancel(nil)
			if got := ExitCode(Stopped(ctx, tc.err)); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
		})
	}
}

// panicChildEnv names the command line a re-run of this test binary panics
// under (TestNotifySignals_Panic).
const panicChildEnv = "HOARD_TEST_PANIC_ARGS"

// TestNotifySignals_Panic: a panic in wal-fetch kills it with SIGABRT, which
// PostgreSQL reads as "stop recovery"; Go's own exit 2 would read "not
// archived" and end recovery early. Other commands keep exit 2. The panic
// comes in a goroutine of its own, where no recover in the command could
// catch it.
func TestNotifySignals_Panic(t *testing.T) {
	if args := os.Getenv(panicChildEnv); args != "" {
		// No core file from the crash.
		_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
		NotifySignals(App("test"), strings.Fields(args))
		go func() { panic("a bug") }()
		time.Sleep(time.Minute)
		return
	}
	cases := []struct {
		name   string
		args   string
		signal syscall.Signal // 0: a normal exit with status
		status int
	}{
		{"WALFetch", "hoard wal-fetch 000000010000000000000001 pg_wal/RECOVERYXLOG", syscall.SIGABRT, 0},
		{"WALPush", "hoard --config hoard.json wal-push pg_wal/000000010000000000000001", syscall.SIGABRT, 0},
		{"List", "hoard list", 0, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestNotifySignals_Panic$")
			cmd.Env = append(os.Environ(), panicChildEnv+"="+tc.args, "GOTRACEBACK=")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("re-run with %q: %v, want it to die of its panic\n%s", tc.args, err, out)
			}
			ws := ee.Sys().(syscall.WaitStatus)
			switch {
			case tc.signal != 0 && !(ws.Signaled() && ws.Signal() == tc.signal):
				t.Errorf("%q after a panic: %v, want killed by %v\n%s", tc.args, ws, tc.signal, out)
			case tc.signal == 0 && ws.ExitStatus() != tc.status:
				t.Errorf("%q after a panic: %v, want exit %d\n%s", tc.args, ws, tc.status, out)
			}
			if !strings.Contains(string(out), "a bug") {
				t.Errorf("output names no panic:\n%s", out)
			}
		})
	}
}
