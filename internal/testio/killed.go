package testio

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// RunKilledChild runs the test named child of this test binary in a
// child process, with env set to value, and fails t unless the child dies
// of SIGKILL (as a crash would end it). The child test does nothing
// without env; with it, it does its work and kills itself.
func RunKilledChild(t testing.TB, child, env, value string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+child+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+value)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\n%s", err, out)
	}
}
