package testio

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a server a test started, in its own process group, stopped
// when the test ends (SIGTERM to the group, SIGKILL after 10 s).
type Process struct {
	Name string
	Out  *SyncBuffer // its stdout and stderr

	pid  int           // also its process group's id
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done is closed
	stop sync.Once
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
	p := &Process{Name: name, Out: out, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Stop)
	return p
}

// Stop stops the process's group (SIGTERM, SIGKILL after 10 s) and waits
// for the process to exit; calling it again does nothing.
func (p *Process) Stop() {
	p.stop.Do(func() {
		// The group was made for the process at its start: only its own.
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// exited returns the process's exit error and true once it has exited.
func (p *Process) exited() (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	default:
		return nil, false
	}
}

// fail is err about the process, with its output.
func (p *Process) fail(err error) error {
	return fmt.Errorf("%s: %w\n%s", p.Name, err, p.Out.String())
}
