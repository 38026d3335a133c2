package testio

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a server a test started, in its own process group, stopped
// when the test ends (SIGTERM to the group, SIGKILL after 10 s).
//
// Its group is signalled only while the process has not been reaped: a
// zombie keeps its pid, so the group id is still its own. Once reaped,
// the pid is free, and a new process may take it: a postmaster, which
// pg_ctl starts in a session of its own (setsid), then leads a group of
// that id, and a SIGTERM to the group would shut down another test's
// server (seen once: a restored cluster gone, its postmaster.pid removed,
// between the test's last query and its stop). So the process is reaped
// under mu, after what it left in its group is killed, and a signal to
// the group is sent under mu only before that.
type Process struct {
	Name string
	Out  *SyncBuffer // its stdout and stderr

	pid  int           // also its process group's id
	mu   sync.Mutex    // held to reap the process and to signal its group
	done chan struct{} // closed when it has exited and been reaped
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
	go func() {
		waitExited(p.pid)
		p.mu.Lock()
		defer p.mu.Unlock()
		// Exited, not reaped: the group is still its own. What it left
		// there goes with it.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Stop)
	return p
}

// waitExited waits until the process pid has exited, leaving it to be
// reaped (WNOWAIT): until then its pid is not free.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// signal sends sig to the process's group, unless the process has been
// reaped (see Process).
func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
	default:
		// The group was made for the process at its start: only its own.
		_ = syscall.Kill(-p.pid, sig)
	}
}

// Stop stops the process's group (SIGTERM, SIGKILL after 10 s) and waits
// for the process to exit; calling it again does nothing.
func (p *Process) Stop() {
	p.stop.Do(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.signal(syscall.SIGKILL)
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
