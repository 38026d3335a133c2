package testio

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a server a test started, in its own process group, stopped
// when the test ends (SIGTERM to the group, SIGKILL after 10 s).
type Process struct {
	Name   string
	Exited <-chan error // receives the process's exit
	Out    *SyncBuffer  // its stdout and stderr
}

// Start runs bin with args and env added to the test's environment.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	out := &SyncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// Stop the server's process group: it was started here, with its own group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return &Process{Name: name, Exited: exited, Out: out}
}

// WaitReady calls ready every 100 ms until it holds. It fails the test,
// with the process's output, when the process exits first or timeout
// passes.
func (p *Process) WaitReady(t testing.TB, timeout time.Duration, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ready() {
		select {
		case err := <-p.Exited:
			t.Fatalf("%s exited before it was ready: %v\n%s", p.Name, err, p.Out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %s\n%s", p.Name, timeout, p.Out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
