package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hoardbackup/hoard/config"
)

// TestBasebackup_ViaDaemon checks that hoard basebackup asks a daemon that
// answers on the configured HTTP port instead of taking a second backup
// itself, and that --local skips the daemon.
func TestBasebackup_ViaDaemon(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var requests []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})

	dir := t.TempDir()
	cfg := filepath.Join(dir, "hoard.json")
	port := ln.Addr().(*net.TCPAddr).Port
	// The node points at a closed port: a backup taken here would fail.
	js := fmt.Sprintf(`{"backup_location": %q, "http_port": %d,
		"backup_sites": {"db1": {"nodes": [{"host": "127.0.0.1", "port": 1}],
		"object_storage": {"storage_type": "local", "directory": %q}}}}`, dir, port, filepath.Join(dir, "store"))
	if err := os.WriteFile(cfg, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}

	app := App("test")
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, io.Discard
	if err := app.RunContext(context.Background(), []string{"hoard", "--config", cfg, "basebackup"}); err != nil {
		t.Fatalf("basebackup with a daemon running: %v", err)
	}
	mu.Lock()
	got := strings.Join(requests, ",")
	mu.Unlock()
	if got != "POST /db1/basebackup" {
		t.Errorf("daemon got %q, want one POST /db1/basebackup", got)
	}
	if !strings.Contains(out.String(), "requested from the running daemon") {
		t.Errorf("output does not say the daemon takes the backup: %q", out.String())
	}

	t.Run("ErrLocalSkipsDaemon", func(t *testing.T) {
		if code := run(t, "--config", cfg, "basebackup", "--local"); code != ExitFailure {
			t.Errorf("basebackup --local against a closed port: exit %d, want %d", code, ExitFailure)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(requests) != 1 {
			t.Errorf("--local still asked the daemon: %v", requests)
		}
	})
}

// TestBasebackupParallel: basebackup_threads workers, at most
// basebackup_chunks_in_progress only when that is set: its PGHoard default
// no longer caps a host with many cores at 5.
func TestBasebackupParallel(t *testing.T) {
	for _, tc := range []struct{ threads, chunks, want int }{
		{16, 0, 16},
		{16, 5, 5},
		{2, 5, 2},
		{1, 0, 1},
	} {
		site := &config.Site{BasebackupThreads: tc.threads, BasebackupChunksInProgress: tc.chunks}
		if got := basebackupParallel(site); got != tc.want {
			t.Errorf("basebackup_threads %d, basebackup_chunks_in_progress %d: %d chunks in flight, want %d", tc.threads, tc.chunks, got, tc.want)
		}
	}
}
