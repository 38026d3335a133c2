package command

import (
	"context"
	"errors"
	"syscall"
	"testing"
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
