package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
)

func TestRequestBackup(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		got = r.Method + " " + r.URL.Path + " " + user + ":" + pass
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	h := HTTPConfig{Address: host, Username: "u", Password: "p"}
	h.Port, _ = strconv.Atoi(port)
	if _, err := RequestBackup(context.Background(), h, "main", ""); err != nil {
		t.Fatal(err)
	}
	if want := "POST /main/basebackup u:p"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	if err := NoteBackupStored(context.Background(), h, "main", ""); err != nil {
		t.Fatal(err)
	}
	if want := "POST /main/backup-stored u:p"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}

	// Nothing listening: ErrNoDaemon, so the caller takes the backup.
	srv.Close()
	if _, err := RequestBackup(context.Background(), h, "main", ""); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("no daemon: err %v, want ErrNoDaemon", err)
	}
	if err := NoteBackupStored(context.Background(), h, "main", ""); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("no daemon: err %v, want ErrNoDaemon", err)
	}
}

// TestRequestBackup_Refused: a daemon's refusal names its status and
// reason.
func TestRequestBackup_Refused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "site main: a basebackup request already waits", http.StatusConflict)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	h := HTTPConfig{Address: host}
	h.Port, _ = strconv.Atoi(port)
	_, err := RequestBackup(context.Background(), h, "main", "")
	if want := "the daemon answered 409 Conflict: site main: a basebackup request already waits"; err == nil || err.Error() != want {
		t.Errorf("err %v, want %q", err, want)
	}
}

func TestNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify(NotifyReady); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}

	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	if err := Notify(NotifyReloading); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := ln.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != NotifyReloading {
		t.Errorf("systemd received %q, want %q", got, NotifyReloading)
	}

	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	if err := Notify(NotifyStopping); err == nil {
		t.Error("Notify to a missing socket succeeded")
	}
}

// pollDaemon is a daemon's HTTP API as a test scripts it: GET
// /main/basebackup/abc is answered as each step says in turn, the last
// step for good: a JSON status, a status code (as a proxy in front of the
// daemon answers), "reset" (the connection is reset unanswered) or
// "close" (closed unanswered). It returns the HTTPConfig that reaches it.
func pollDaemon(t *testing.T, steps ...string) HTTPConfig {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/main/basebackup/abc" {
			http.NotFound(w, r)
			return
		}
		step := steps[0]
		if len(steps) > 1 {
			steps = steps[1:]
		}
		switch {
		case strings.HasPrefix(step, "{"):
			_, _ = io.WriteString(w, step)
		case step == "reset", step == "close":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			if step == "reset" {
				_ = conn.(*net.TCPConn).SetLinger(0) // close sends RST
			}
			_ = conn.Close()
		default:
			code, _ := strconv.Atoi(step)
			http.Error(w, http.StatusText(code), code)
		}
	}))
	t.Cleanup(srv.Close)
	return HTTPConfig{Address: "127.0.0.1", Port: srv.Listener.Addr().(*net.TCPAddr).Port}
}

// TestWaitBackup_Transient: polls that fail as a proxy in front of the
// daemon or a dropped connection fails them are asked again, each failure
// reported to OnRetry, and the wait ends as the daemon's answer says;
// failures for longer than RetryFor in a row end it naming the request,
// the last state seen and what to do.
func TestWaitBackup_Transient(t *testing.T) {
	ctx := context.Background()
	const running = `{"id":"abc","site":"main","state":"running"}`
	t.Run("OK", func(t *testing.T) {
		h := pollDaemon(t, running, "502", "reset", running, "503", "close", "504", "500",
			`{"id":"abc","site":"main","state":"stored","backup":"b1"}`)
		var retried []string
		st, err := WaitBackup(ctx, h, "main", "abc", WaitOptions{Interval: time.Millisecond,
			OnRetry: func(err error, _ time.Duration) { retried = append(retried, err.Error()) }})
		if err != nil || st.State != RequestStored || st.Backup != "b1" {
			t.Fatalf("WaitBackup after transient failures = %+v, %v, want stored b1", st, err)
		}
		if len(retried) != 6 || !strings.Contains(retried[0], "502 Bad Gateway") || !strings.Contains(retried[2], "503") {
			t.Errorf("OnRetry saw %q, want the 6 failures in turn", retried)
		}
	})
	t.Run("ErrGaveUp", func(t *testing.T) {
		h := pollDaemon(t, running, "503")
		start := time.Now()
		st, err := WaitBackup(ctx, h, "main", "abc", WaitOptions{Interval: time.Millisecond, RetryFor: 200 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "gave up waiting for basebackup request abc") ||
			!strings.Contains(err.Error(), "last state seen: running") ||
			!strings.Contains(err.Error(), "the daemon may go on with it; see hoard list") || !strings.Contains(err.Error(), "503") {
			t.Fatalf("WaitBackup with a daemon answering 503 for good = %+v, %v, want it to give up saying so", st, err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("gave up after %v, before RetryFor", d)
		}
		if st.State != RequestRunning {
			t.Errorf("WaitBackup returned %+v, want the last status seen (running)", st)
		}
	})
}

// TestWaitBackup_NotTransient: an answer that says no for good ends the
// wait at the first poll, as before: wrong credentials (401), an id the
// daemon does not know (404: it restarted), a daemon without the API
// (501), nothing listening (the daemon is gone).
func TestWaitBackup_NotTransient(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		step, want string
		is         error
	}{
		{"401", "401 Unauthorized", nil},
		{"404", "the daemon no longer knows it", ErrUnknownRequest},
		{"501", "501 Not Implemented", nil},
	} {
		t.Run(tc.step, func(t *testing.T) {
			h := pollDaemon(t, tc.step)
			retries := 0
			_, err := WaitBackup(ctx, h, "main", "abc", WaitOptions{Interval: time.Millisecond, OnRetry: func(error, time.Duration) { retries++ }})
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) || retries != 0 {
				t.Errorf("WaitBackup = %v after %d retries, want %q at once", err, retries, tc.want)
			}
		})
	}
	t.Run("ErrNoDaemon", func(t *testing.T) {
		h := HTTPConfig{Address: "127.0.0.1", Port: testio.FreePort(t)}
		retries := 0
		_, err := WaitBackup(ctx, h, "main", "abc", WaitOptions{Interval: time.Millisecond, OnRetry: func(error, time.Duration) { retries++ }})
		if !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "stopped answering") || retries != 0 {
			t.Errorf("WaitBackup with nothing listening = %v after %d retries, want ErrNoDaemon at once", err, retries)
		}
	})
}

// TestWaitBackup_Hang: a daemon that accepts the connection and never
// answers holds no poll past PollTimeout, and the wait gives up once
// RetryFor has passed, instead of waiting for good.
func TestWaitBackup_Hang(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				<-done
				return
			}
			conns = append(conns, c) // read nothing, answer nothing
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); close(done); wg.Wait() })
	h := HTTPConfig{Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	retries := 0
	_, err = WaitBackup(ctx, h, "main", "abc", WaitOptions{Interval: time.Millisecond, PollTimeout: 100 * time.Millisecond,
		RetryFor: 500 * time.Millisecond, OnRetry: func(error, time.Duration) { retries++ }})
	if ctx.Err() != nil || err == nil || !strings.Contains(err.Error(), "gave up waiting") || retries == 0 {
		t.Fatalf("WaitBackup against a daemon that never answers = %v after %d retries (test's deadline: %v), want it to give up after RetryFor", err, retries, ctx.Err())
	}
}

// TestTransient tells the failures WaitBackup asks again after from
// those that end it.
func TestTransient(t *testing.T) {
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		code int
		err  error
		want bool
	}{
		{"502", http.StatusBadGateway, errors.New("the daemon answered 502"), true},
		{"503", http.StatusServiceUnavailable, errors.New("the daemon answered 503"), true},
		{"429", http.StatusTooManyRequests, errors.New("the daemon answered 429"), true},
		{"ECONNRESET", 0, &url.Error{Op: "Get", Err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}}, true},
		{"EOF", 0, &url.Error{Op: "Get", Err: io.EOF}, true},
		{"BodyCut", http.StatusOK, fmt.Errorf("read the daemon's answer: %w", io.ErrUnexpectedEOF), true},
		{"Timeout", 0, &url.Error{Op: "Get", Err: context.DeadlineExceeded}, true},
		{"DialTimeout", 0, fmt.Errorf("%w on x: %w", ErrNoDaemon, timeout), true},
		{"ErrRefused", 0, fmt.Errorf("%w on x: %w", ErrNoDaemon, refused), false},
		{"Err401", http.StatusUnauthorized, errors.New("the daemon answered 401"), false},
		{"Err404", http.StatusNotFound, ErrUnknownRequest, false},
		{"Err501", http.StatusNotImplemented, errors.New("the daemon answered 501"), false},
		{"ErrBadJSON", http.StatusOK, fmt.Errorf("the daemon's answer: %w", &json.SyntaxError{}), false},
		{"ErrCertificate", 0, &url.Error{Op: "Get", Err: errors.New("the daemon's certificate is not the one in http_tls_cert_file")}, false},
	} {
		if got := transient(tc.code, tc.err); got != tc.want {
			t.Errorf("%s: transient(%d, %v) = %v, want %v", tc.name, tc.code, tc.err, got, tc.want)
		}
	}
}
