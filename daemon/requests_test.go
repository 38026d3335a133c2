package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestServeHTTP_BackupRequest: POST /<site>/basebackup names the request
// (Location), GET /<site>/basebackup/<id> says it is queued, behind Basic
// auth; an unknown id is 404; a second request while one waits is 409,
// as before; a request the site's stop cuts short reads dropped, and
// WaitBackup fails saying so; a daemon gone while one waits fails the
// wait too.
func TestServeHTTP_BackupRequest(t *testing.T) {
	d, _, conn, arch := requestDaemon(t)
	s := newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn})
	d.sups["main"] = s
	srv := startHTTP(t, HTTPOptions{
		RequestBackup: d.requestBackup, BackupRequest: d.backupRequest,
		Username: "hoard", Password: "secret", Logger: zerolog.Nop(),
	})
	h := HTTPConfig{Address: "127.0.0.1", Port: srv.addr.(*net.TCPAddr).Port, Username: "hoard", Password: "secret"}
	ctx := context.Background()

	id, err := RequestBackup(ctx, h, "main", "")
	if err != nil || id == "" {
		t.Fatalf("RequestBackup = %q, %v, want a request id", id, err)
	}
	t.Run("Queued", func(t *testing.T) {
		st, err := BackupRequest(ctx, h, "main", id)
		if err != nil || st.State != RequestQueued || st.ID != id || st.Site != "main" {
			t.Errorf("BackupRequest = %+v, %v, want request %s of main queued", st, err, id)
		}
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		code, body, _ := srv.do(t, "GET", "/main/basebackup/"+id, "", "")
		if code != http.StatusUnauthorized {
			t.Errorf("GET without credentials = %d %q, want 401", code, body)
		}
	})
	t.Run("ErrUnknownRequest", func(t *testing.T) {
		for _, p := range [][2]string{{"main", "0123456789abcdef"}, {"other", id}} {
			_, err := BackupRequest(ctx, h, p[0], p[1])
			if !errors.Is(err, ErrUnknownRequest) || !strings.Contains(err.Error(), "404") {
				t.Errorf("BackupRequest(%s, %s) = %v, want 404 ErrUnknownRequest", p[0], p[1], err)
			}
		}
	})
	t.Run("ErrBackupPending", func(t *testing.T) {
		if id2, err := RequestBackup(ctx, h, "main", ""); !strings.Contains(err.Error(), "409") || id2 != "" {
			t.Errorf("a second request while one waits = %q, %v, want 409 (as before)", id2, err)
		}
		// The refusal says why (a request waits, not "or running": one
		// made while a backup runs is taken after it) and what to do.
		_, err := RequestBackup(ctx, h, "main", "")
		for _, want := range []string{"already waits", "ask again once it has started"} {
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "or running") {
				t.Errorf("a second request while one waits = %v, want it to say %q and not \"or running\"", err, want)
			}
		}
	})

	cctx, cancel := context.WithCancel(ctx)
	cancel() // the daemon stops before the loop sees the request
	if err := s.backups(cctx, arch); err != nil {
		t.Fatalf("backup loop: %v", err)
	}
	t.Run("Dropped", func(t *testing.T) {
		st, err := WaitBackup(ctx, h, "main", id, WaitOptions{Interval: 10 * time.Millisecond})
		if st.State != RequestDropped || err == nil || !strings.Contains(err.Error(), "dropped") ||
			!strings.Contains(err.Error(), "shutdown or reload") {
			t.Errorf("WaitBackup = %+v, %v, want dropped by the site's stop", st, err)
		}
	})
	t.Run("ErrNoDaemon", func(t *testing.T) {
		if err := srv.stop(); err != nil {
			t.Fatal(err)
		}
		_, err := WaitBackup(ctx, h, "main", id, WaitOptions{Interval: 10 * time.Millisecond})
		if !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "stopped answering") {
			t.Errorf("WaitBackup with the daemon gone = %v, want ErrNoDaemon saying it stopped answering", err)
		}
	})
}

// TestWaitBackup_Failed: the backup taken for a request fails (no server
// answers at the node's address): WaitBackup returns the daemon's error
// for it, while the daemon keeps the request and retries it.
func TestWaitBackup_Failed(t *testing.T) {
	d, _, conn, arch := requestDaemon(t)
	archiveCommandLoop(t, d, conn, arch)
	srv := startHTTP(t, HTTPOptions{RequestBackup: d.requestBackup, BackupRequest: d.backupRequest, Logger: zerolog.Nop()})
	h := HTTPConfig{Address: "127.0.0.1", Port: srv.addr.(*net.TCPAddr).Port}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := RequestBackup(ctx, h, "main", "")
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	st, err := WaitBackup(ctx, h, "main", id, WaitOptions{Interval: 20 * time.Millisecond, OnState: func(st RequestStatus) { states = append(states, st.State) }})
	if st.State != RequestFailed || err == nil || !strings.Contains(err.Error(), "failed") ||
		!strings.Contains(err.Error(), "connect") || !strings.Contains(err.Error(), "the daemon retries") {
		t.Fatalf("WaitBackup = %+v, %v, want failed with the backup's connect error and the retry", st, err)
	}
	if states[len(states)-1] != RequestFailed || slices.Contains(states, RequestStored) {
		t.Errorf("states seen %v, want failed last and never stored", states)
	}
}

// TestRun_WaitBackup: with a real cluster, a daemon that takes backups on
// request only answers the request's id; WaitBackup returns once the
// backup taken for it is stored, and that backup is listed in the
// archive.
func TestRun_WaitBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	site := streamingSiteTo(t, c.ConnString("postgres"), storage.NewLocal(t.TempDir()))
	site.Backup = basebackup.Options{Fast: true, ChunkSize: 1 << 20}
	arch, _, _ := site.OpenArchive(context.Background())
	port := testio.FreePort(t)
	runDaemon(t, Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port, Username: "hoard", Password: "pw"}})
	h := HTTPConfig{Address: "127.0.0.1", Port: port, Username: "hoard", Password: "pw"}

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var id string
	for {
		var err error
		if id, err = RequestBackup(ctx, h, "test", ""); err == nil {
			break
		} else if !errors.Is(err, ErrNoDaemon) || ctx.Err() != nil {
			t.Fatalf("RequestBackup: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the daemon is starting
	}
	var states []string
	st, err := WaitBackup(ctx, h, "test", id, WaitOptions{Interval: 100 * time.Millisecond, OnState: func(st RequestStatus) { states = append(states, st.State) }})
	if err != nil || st.State != RequestStored || st.Backup == "" {
		t.Fatalf("WaitBackup = %+v, %v (states %v), want stored with the backup's name", st, err, states)
	}
	backups, err := arch.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(backups, func(b *archive.BackupInfo) bool { return b.Name == st.Backup }) || len(backups) != 1 {
		t.Errorf("WaitBackup said %s stored; the archive lists %d backups: %v", st.Backup, len(backups), backups)
	}
}

// TestServeHTTP_BackupRequestOtherDestination: hoard basebackup asks the
// daemon answering on its configuration's http_address:http_port, and that
// can be another configuration's daemon (a second cluster's hoard on the
// same host, both with the default port 16000 and site "default"): it took
// a backup of its own cluster into its own archive (and applied its
// retention there), while the command said "basebackup of site default
// requested from the running daemon" and exited 0, and the requesting
// configuration's archive got nothing. A daemon whose site stores
// elsewhere than the request's configuration refuses it (421), saying
// why; the same destination is taken as before.
func TestServeHTTP_BackupRequestOtherDestination(t *testing.T) {
	d, _, conn, _ := requestDaemon(t)
	dest := `local /srv/a site-prefix="" site="main"`
	d.sups["main"] = newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn, Destination: dest})
	srv := startHTTP(t, HTTPOptions{
		RequestBackup: d.requestBackup, BackupRequest: d.backupRequest, Destination: d.destination, Logger: zerolog.Nop(),
	})
	h := HTTPConfig{Address: "127.0.0.1", Port: srv.addr.(*net.TCPAddr).Port}
	ctx := context.Background()

	id, err := RequestBackup(ctx, h, "main", `local /srv/b site-prefix="" site="main"`)
	if err == nil || !strings.Contains(err.Error(), "421") || !strings.Contains(err.Error(), "http_port") {
		t.Errorf("RequestBackup from another configuration = %q, %v; want 421 saying to give it its own http_port", id, err)
	}
	if id, err := RequestBackup(ctx, h, "main", dest); err != nil || id == "" {
		t.Errorf("RequestBackup from the daemon's configuration = %q, %v; want a request id", id, err)
	}
}

// TestServeHTTP_BackupStoredOtherDestination: hoard basebackup tells the
// daemon answering on its configuration's http_address:http_port of a
// backup it stored (POST /<site>/backup-stored), and takes its 202 as
// "a daemon streams this site's WAL": it then warns of nothing. A daemon
// of another configuration (another cluster's hoard on the same port,
// its site of that name stored elsewhere) answered 202 too, so a backup
// of a primary whose WAL nothing archives was reported without a word.
// Like a basebackup request, the note names its configuration's
// destination, and a daemon that stores the site elsewhere refuses it
// (421) without listing its own site; the same destination is taken.
func TestServeHTTP_BackupStoredOtherDestination(t *testing.T) {
	dest := `local /srv/a site-prefix="" site="main"`
	sites := &fakeSites{}
	srv := startHTTP(t, HTTPOptions{
		BackupStored: sites.BackupStored,
		Destination: func(site string) string {
			if site == "main" {
				return dest
			}
			return ""
		},
		Logger: zerolog.Nop(),
	})
	h := HTTPConfig{Address: "127.0.0.1", Port: srv.addr.(*net.TCPAddr).Port}
	ctx := context.Background()

	err := NoteBackupStored(ctx, h, "main", `local /srv/b site-prefix="" site="main"`)
	if err == nil || !strings.Contains(err.Error(), "421") || !strings.Contains(err.Error(), "http_port") {
		t.Errorf("NoteBackupStored from another configuration: %v; want 421 saying to give it its own http_port", err)
	}
	sites.mu.Lock()
	if len(sites.stored) != 0 {
		t.Errorf("the daemon listed its site for another configuration's backup: %v", sites.stored)
	}
	sites.mu.Unlock()
	if err := NoteBackupStored(ctx, h, "main", dest); err != nil {
		t.Errorf("NoteBackupStored from the daemon's configuration: %v, want nil", err)
	}
	sites.mu.Lock()
	defer sites.mu.Unlock()
	if len(sites.stored) != 1 {
		t.Errorf("the daemon listed its site %d times for its own configuration's backup, want 1", len(sites.stored))
	}
}
