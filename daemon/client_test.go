package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
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
	if _, err := RequestBackup(context.Background(), h, "main"); err != nil {
		t.Fatal(err)
	}
	if want := "POST /main/basebackup u:p"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	if err := NoteBackupStored(context.Background(), h, "main"); err != nil {
		t.Fatal(err)
	}
	if want := "POST /main/backup-stored u:p"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}

	// Nothing listening: ErrNoDaemon, so the caller takes the backup.
	srv.Close()
	if _, err := RequestBackup(context.Background(), h, "main"); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("no daemon: err %v, want ErrNoDaemon", err)
	}
	if err := NoteBackupStored(context.Background(), h, "main"); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("no daemon: err %v, want ErrNoDaemon", err)
	}
}

// TestRequestBackup_Refused: a daemon's refusal names its status and
// reason.
func TestRequestBackup_Refused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "site main: basebackup already requested or running", http.StatusConflict)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	h := HTTPConfig{Address: host}
	h.Port, _ = strconv.Atoi(port)
	_, err := RequestBackup(context.Background(), h, "main")
	if want := "the daemon answered 409 Conflict: site main: basebackup already requested or running"; err == nil || err.Error() != want {
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
