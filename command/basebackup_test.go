package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/daemon"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
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
	var requests, dests []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.Path)
		dests = append(dests, r.URL.Query().Get("destination"))
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
	// Where this configuration stores the site, for a daemon of another
	// configuration on the same port to refuse the request.
	if len(dests) != 1 || len(dests[0]) != 32 {
		t.Errorf("request's destination %q, want a digest", dests)
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

// TestBasebackup_Wait runs basebackup --wait against a scripted daemon
// that names the request (Location) and answers GET
// /db1/basebackup/<id> with running, then the case's final state: stored
// prints the summary of the backup as the archive lists it (exit 0);
// failed, dropped, a stored backup the archive does not list, and a
// daemon that names no request (older than --wait) exit 1 saying why.
// Transient: polls that fail as a proxy or a dropped connection fails
// them (a 502 and a 503, a reset connection) are asked again, and the
// wait ends as the daemon's answer says.
func TestBasebackup_Wait(t *testing.T) {
	var mu sync.Mutex
	var final, location string
	var fails []string
	var polls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/db1/basebackup":
			if location != "" {
				w.Header().Set("Location", location)
			}
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodGet && r.URL.Path == "/db1/basebackup/abc" && len(fails) > 0:
			fail := fails[0]
			fails = fails[1:]
			failPoll(t, w, fail)
		case r.Method == http.MethodGet && r.URL.Path == "/db1/basebackup/abc":
			polls++
			state := `{"id":"abc","site":"db1","state":"running"}`
			if polls > 1 {
				state = final
			}
			_, _ = io.WriteString(w, state)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	cfg := filepath.Join(dir, "hoard.json")
	js := fmt.Sprintf(`{"backup_location": %q, "http_port": %d,
		"backup_sites": {"db1": {"nodes": [{"host": "127.0.0.1", "port": 1}],
		"object_storage": {"storage_type": "local", "directory": %q}}}}`, dir, srv.Listener.Addr().(*net.TCPAddr).Port, store)
	if err := os.WriteFile(cfg, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	// The archive holds backup 2026-12-06_01-00_0 only.
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Type: "local", Directory: store})
	if err != nil {
		t.Fatal(err)
	}
	info := &archive.BackupInfo{Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000002",
		StartTime: time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC), EndTime: time.Date(2026, 12, 6, 1, 1, 0, 0, time.UTC)}
	a := &archive.Archive{Store: st, Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "db1"}}
	body := []byte("control")
	if _, err := a.Codec.Put(ctx, st, a.Layout.BackupKey("2026-12-06_01-00_0"), bytes.NewReader(body), int64(len(body)), info.ToMetadata()); err != nil {
		t.Fatal(err)
	}
	st.Close()

	for _, tc := range []struct {
		name, location, final string
		wantErr, wantOut      string // wantErr "": exit 0
		fails                 []string
	}{
		{"OK", "/db1/basebackup/abc", `{"id":"abc","site":"db1","state":"stored","backup":"2026-12-06_01-00_0"}`, "", "basebackup 2026-12-06_01-00_0 stored", nil},
		{"Transient", "/db1/basebackup/abc", `{"id":"abc","site":"db1","state":"stored","backup":"2026-12-06_01-00_0"}`, "", "basebackup 2026-12-06_01-00_0 stored",
			[]string{"502", "reset"}},
		{"ErrFailed", "/db1/basebackup/abc", `{"id":"abc","site":"db1","state":"failed","error":"connect: connection refused (the daemon retries in 1m0s)"}`,
			"failed: connect: connection refused (the daemon retries in 1m0s)", "", nil},
		{"ErrDropped", "/db1/basebackup/abc", `{"id":"abc","site":"db1","state":"dropped","error":"the site stopped (shutdown or reload)"}`,
			"the daemon dropped basebackup request abc: the site stopped (shutdown or reload)", "", nil},
		{"ErrNotListed", "/db1/basebackup/abc", `{"id":"abc","site":"db1","state":"stored","backup":"2026-12-06_02-00_0"}`,
			"the archive lists no such backup", "", nil},
		{"ErrOldDaemon", "", "", "names no request to wait for", "", nil},
		{"ErrUnauthorized", "/db1/basebackup/abc", "", "401 Unauthorized", "", []string{"401"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			final, location, polls, fails = tc.final, tc.location, 0, tc.fails
			mu.Unlock()
			app := App("test")
			var out bytes.Buffer
			app.Writer, app.ErrWriter = &out, io.Discard
			err := app.RunContext(ctx, []string{"hoard", "--config", cfg, "basebackup", "--wait"})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("basebackup --wait: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || ExitCode(err) != ExitFailure):
				t.Fatalf("basebackup --wait = %v (exit %d), want exit %d with %q", err, ExitCode(err), ExitFailure, tc.wantErr)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("output %q lacks %q", out.String(), tc.wantOut)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(fails) != 0 {
				t.Errorf("the daemon's failures %v were never met: the wait ended before", fails)
			}
		})
	}
}

// failPoll fails an HTTP request as fail says: a status code (as a proxy
// in front of the daemon answers), or "reset" (the connection is reset,
// with no answer).
func failPoll(t testing.TB, w http.ResponseWriter, fail string) {
	t.Helper()
	switch fail {
	case "reset":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		_ = conn.(*net.TCPConn).SetLinger(0) // close sends RST
		_ = conn.Close()
	default:
		var code int
		if _, err := fmt.Sscan(fail, &code); err != nil {
			t.Errorf("failure %q: %v", fail, err)
		}
		http.Error(w, "<html><body>"+http.StatusText(code)+"</body></html>", code)
	}
}

// TestBasebackup_DamagedPage: a damaged data page does not fail hoard
// basebackup, in local-tar mode (hoard verifies the pages) as in basic
// mode (the server does, and ends BASE_BACKUP with XX001 after sending all
// of it): both exit 0, the summary warns, and hoard list --json shows the
// count in the backup's metadata.
func TestBasebackup_DamagedPage(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true, DataChecksums: true})
	c.DamagePage(t)

	for mode, source := range map[string]string{"local-tar": basebackup.SourceDataDirectory, "basic": basebackup.SourceBaseBackup} {
		t.Run(mode, func(t *testing.T) {
			site := checkSite(t, storetest.Local(t), "archive_command", clusterNode(c))
			site["basebackup_mode"] = mode
			site["pg_data_directory"] = c.DataDir
			cfg := writeDBSiteConfigWith(t, site, map[string]any{"http_port": testio.FreePort(t)})
			code, out := runOutput(t, "--config", cfg, "basebackup", "--local", "--fast", "--no-wait")
			if code != ExitOK {
				t.Fatalf("basebackup: exit %d, want %d:\n%s", code, ExitOK, out)
			}
			if want := "WARNING   1 data pages failed their checksum"; !strings.Contains(out, want) {
				t.Errorf("summary lacks %q:\n%s", want, out)
			}
			code, js := runOutput(t, "--config", cfg, "basebackup", "--local", "--fast", "--no-wait", "--json")
			if got := jsonWarnings(t, js); code != ExitOK || len(got) != 1 || !strings.HasPrefix(got[0], "1 data pages failed their checksum") {
				t.Errorf("basebackup --json: exit %d, warnings %q; want %d and the checksum warning", code, got, ExitOK)
			}
			code, out = runOutput(t, "--config", cfg, "list", "--json")
			if code != ExitOK || !strings.Contains(out, `"hoard-checksum-failures": "1"`) {
				t.Errorf("list --json: exit %d, want the checksum failures in the metadata:\n%s", code, out)
			}
			if want := `"hoard-source": "` + source + `"`; !strings.Contains(out, want) {
				t.Errorf("list --json lacks %s:\n%s", want, out)
			}
		})
	}
}

// runOutput runs hoard with args and returns its exit status and what it
// printed on stdout, then the error.
func runOutput(t *testing.T, args ...string) (int, string) {
	t.Helper()
	app := App("test")
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, io.Discard
	full := append([]string{"hoard"}, args...)
	err := app.RunContext(context.Background(), OrderArgs(app, full))
	if err != nil {
		fmt.Fprintf(&out, "error: %v\n", err)
	}
	return ExitCode(PostgresStatus(app, full, err)), out.String()
}

// TestBasebackup_NoWALArchiver: a backup of a primary taken here on a site
// whose WAL the daemon streams (active_backup_mode pg_receivexlog or
// walreceiver, no archive_command), with no daemon answering, is stored,
// but nothing archives the WAL it needs to be consistent: the summary
// says so, names the end segment and what to do. With archive_command
// (the server archives it; pg_backup_stop waits for it) it does not.
func TestBasebackup_NoWALArchiver(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true})
	for _, mode := range []string{config.ModePGReceiveXLog, config.ModeWALReceiver, config.ModeArchiveCommand} {
		t.Run(mode, func(t *testing.T) {
			site := checkSite(t, storetest.Local(t), mode, clusterNode(c))
			cfg := writeDBSiteConfigWith(t, site, map[string]any{"http_port": testio.FreePort(t)})
			// No daemon answers on http_port: the command takes the backup.
			code, out := runOutput(t, "--config", cfg, "basebackup", "--fast")
			t.Logf("hoard basebackup:\n%s", out)
			if code != ExitOK {
				t.Fatalf("basebackup: exit %d, want %d", code, ExitOK)
			}
			warned := strings.Contains(out, "WARNING   its WAL is not archived")
			if want := mode != config.ModeArchiveCommand; warned != want {
				t.Fatalf("summary warns that the WAL is not archived: %v, want %v", warned, want)
			}
			// --json: the warning is in the output, for automation, not
			// only on stderr.
			code, js := runOutput(t, "--config", cfg, "basebackup", "--fast", "--json")
			if code != ExitOK {
				t.Fatalf("basebackup --json: exit %d, want %d:\n%s", code, ExitOK, js)
			}
			if got := jsonWarnings(t, js); warned && (len(got) != 1 || !strings.HasPrefix(got[0], "its WAL is not archived")) || !warned && len(got) != 0 {
				t.Errorf("basebackup --json: warnings %q, want the WAL warning: %v", got, warned)
			}
			if !warned {
				return
			}
			for _, want := range []string{"hoard daemon", "hoard archive-sync"} {
				if !strings.Contains(out, want) {
					t.Errorf("warning does not name %q", want)
				}
			}
		})
	}
}

// TestSiteDestination_Spellings: the daemon's configuration and the
// command's may spell the same site's place differently (a trailing
// slash, a relative directory, a prefix with its slashes, an endpoint's
// default port, a symbolic link to the directory): they have one
// destination, so the daemon does not
// refuse the command's request as another configuration's (421), while
// other places still have other destinations.
func TestSiteDestination_Spellings(t *testing.T) {
	t.Chdir(t.TempDir())
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"real", "other"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(cwd, "real"), "link"); err != nil {
		t.Fatal(err)
	}
	site := func(prefix string, sc storage.Config) *config.Site {
		return &config.Site{Prefix: prefix, ObjectStorage: config.ObjectStorage{Config: sc}}
	}
	local := func(dir, prefix string) storage.Config {
		return storage.Config{Type: storage.TypeLocal, Directory: dir, Prefix: prefix}
	}
	s3 := func(port int, prefix string) storage.Config {
		return storage.Config{Type: storage.TypeS3, BucketName: "b", Region: "r", Host: "s3.example.com", Port: port, IsSecure: true, Prefix: prefix}
	}
	for _, tc := range []struct {
		name string
		a, b *config.Site
		same bool
	}{
		{"LocalTrailingSlash", site("db", local("/srv/hoard", "")), site("db", local("/srv/hoard/", "")), true},
		{"LocalRelative", site("db", local(filepath.Join(cwd, "store"), "")), site("db", local("store", "")), true},
		{"LocalPrefix", site("db", local("/srv/hoard", "p")), site("db", local("/srv/hoard", "/p/")), true},
		{"SitePrefixSlash", site("db", local("/srv/hoard", "")), site("db/", local("/srv/hoard", "")), true},
		{"ErrSitePrefixSlashes", site("db/", local("/srv/hoard", "")), site("db//", local("/srv/hoard", "")), false},
		{"ErrSitePrefixRoot", site("", local("/srv/hoard", "")), site("/", local("/srv/hoard", "")), false},
		{"S3DefaultPort", site("db", s3(0, "p")), site("db", s3(443, "p/")), true},
		// A directory reached through a link (the daemon's configuration
		// names /srv/hoard, the command's the link /backups to it), the
		// directory existing or not yet made below the link.
		{"LocalLink", site("db", local(filepath.Join(cwd, "real"), "")), site("db", local(filepath.Join(cwd, "link"), "")), true},
		{"LocalLinkNotMade", site("db", local(filepath.Join(cwd, "real", "new", "store"), "")),
			site("db", local(filepath.Join(cwd, "link", "new", "store"), "")), true},
		{"LocalLinkRelative", site("db", local(filepath.Join(cwd, "real"), "")), site("db", local("link/", "")), true},
		{"ErrLocalLinkOther", site("db", local(filepath.Join(cwd, "other"), "")), site("db", local(filepath.Join(cwd, "link"), "")), false},
		{"ErrOtherDirectory", site("db", local("/srv/hoard", "")), site("db", local("/srv/other", "")), false},
		{"ErrOtherSitePrefix", site("db", local("/srv/hoard", "")), site("db2", local("/srv/hoard", "")), false},
		{"ErrOtherPort", site("db", s3(0, "p")), site("db", s3(8443, "p")), false},
		{"ErrOtherPrefix", site("db", s3(0, "p")), site("db", s3(0, "q")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := siteDestination("db", tc.a), siteDestination("db", tc.b)
			if (a == b) != tc.same {
				t.Errorf("destinations %q and %q: same %v, want %v", a, b, a == b, tc.same)
			}
		})
	}
	// Spelled so already, a site's destination is what an earlier hoard
	// (b7854ba) sends or compares: a daemon and a command of two versions
	// still agree on it.
	got := siteDestination("db", site("db", local("/srv/hoard", "")))
	if want := `local directory="/srv/hoard" site-prefix="db" site="db"`; got != want {
		t.Errorf("destination %q, want the earlier spelling %q", got, want)
	}
}

// TestBasebackup_ViaDaemonOtherSpelling: a daemon whose configuration
// spells the site's directory and prefix otherwise than the command's
// (a trailing slash, a relative path, the site prefix's slash) stores the
// site in the same place: it takes the command's request, instead of
// refusing it (421) as another configuration's and failing the command.
func TestBasebackup_ViaDaemonOtherSpelling(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	daemonSite := &config.Site{Prefix: "db", ObjectStorage: config.ObjectStorage{Config: storage.Config{
		Type: storage.TypeLocal, Directory: filepath.Join(dir, "store")}}}
	var mu sync.Mutex
	var requested int
	port := startDaemonHTTP(t, daemon.HTTPOptions{
		RequestBackup: func(string) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			requested++
			return "r1", nil
		},
		Destination: func(string) string { return siteDestination("db", daemonSite) },
	})
	cfg := writeDBSiteConfigWith(t, map[string]any{
		"prefix":         "db/",
		"nodes":          []any{closedNode},
		"object_storage": map[string]any{"storage_type": "local", "directory": "./store/"},
	}, map[string]any{"http_port": port})
	code, out := runOutput(t, "--config", cfg, "basebackup")
	if code != ExitOK || !strings.Contains(out, "requested from the running daemon") {
		t.Errorf("basebackup with the daemon of the same place: exit %d, want %d and the request taken:\n%s", code, ExitOK, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if requested != 1 {
		t.Errorf("the daemon queued %d requests, want 1", requested)
	}
}

// startDaemonHTTP serves the daemon's HTTP API with o on a free loopback
// port until the test ends, and returns the port.
func startDaemonHTTP(t *testing.T, o daemon.HTTPOptions) int {
	t.Helper()
	o.Address, o.Logger = "127.0.0.1", zerolog.Nop()
	addrc := make(chan net.Addr, 1)
	o.Listening = func(a net.Addr) { addrc <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.ServeHTTP(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	})
	select {
	case a := <-addrc:
		return a.(*net.TCPAddr).Port
	case err := <-done:
		t.Fatalf("ServeHTTP: %v", err)
	}
	return 0
}

// TestBasebackup_NoWALArchiverDaemon: a backup of a primary taken here on
// a site whose WAL the daemon streams tells the daemon answering on
// http_port of the backup (POST /<site>/backup-stored). OK: the daemon of
// this configuration takes the note; it streams the WAL, and the summary
// warns of nothing. ErrOtherConfiguration: the daemon answering there is
// another configuration's (its site of that name stored elsewhere): it
// refuses the note (421) and the summary warns that nothing archives the
// WAL, instead of taking that daemon's 202 for one streaming this site.
func TestBasebackup_NoWALArchiverDaemon(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true})
	for _, tc := range []struct {
		name  string
		other bool
	}{{"OK", false}, {"ErrOtherConfiguration", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sc := storetest.Local(t)
			daemonSC := sc
			if tc.other {
				daemonSC = storetest.Local(t)
			}
			daemonSite := &config.Site{Prefix: "db", ObjectStorage: config.ObjectStorage{Config: daemonSC}}
			var mu sync.Mutex
			var told int
			port := startDaemonHTTP(t, daemon.HTTPOptions{
				BackupStored: func(site string) error {
					mu.Lock()
					defer mu.Unlock()
					told++
					return nil
				},
				Destination: func(string) string { return siteDestination("db", daemonSite) },
			})
			site := checkSite(t, sc, config.ModePGReceiveXLog, clusterNode(c))
			cfg := writeDBSiteConfigWith(t, site, map[string]any{"http_port": port})
			code, out := runOutput(t, "--config", cfg, "basebackup", "--local", "--fast")
			t.Logf("hoard basebackup:\n%s", out)
			if code != ExitOK {
				t.Fatalf("basebackup: exit %d, want %d", code, ExitOK)
			}
			warned := strings.Contains(out, "WARNING   its WAL is not archived")
			if warned != tc.other {
				t.Errorf("summary warns that the WAL is not archived: %v, want %v", warned, tc.other)
			}
			if tc.other && !strings.Contains(out, "421") {
				t.Errorf("warning does not give the daemon's refusal (421)")
			}
			mu.Lock()
			defer mu.Unlock()
			if want := map[bool]int{false: 1, true: 0}[tc.other]; told != want {
				t.Errorf("the daemon was told of %d backups, want %d", told, want)
			}
		})
	}
}

// TestBasebackup_NoWALArchiverStored: a backup of a primary taken here on
// a site whose WAL the daemon streams, with no daemon answering, whose
// WAL the archive already holds through the backup's end (a daemon on
// another host streamed it) needs nothing more: the summary warns of
// nothing, and --json's warnings are empty.
func TestBasebackup_NoWALArchiverStored(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true})
	sc := storetest.Local(t)
	st, err := storage.Open(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a := &archive.Archive{Store: st, Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "db"}, Site: "db"}
	row := c.QueryRow(t, `SELECT pg_walfile_name(pg_current_wal_lsn()), (SELECT system_identifier FROM pg_control_system()),
		(SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')`)
	current, system, segSize := row[0].(string), uint64(row[1].(int64)), uint64(row[2].(int64))
	// The WAL from the current segment on, past where the backup ends
	// (its checkpoint and pg_backup_stop's switch take a segment or two).
	seg, err := wal.ParseSegmentName(current, segSize)
	if err != nil {
		t.Fatal(err)
	}
	for no := seg.No; no <= seg.No+8; no++ {
		name := wal.Segment{Timeline: seg.Timeline, No: no}.Name(segSize)
		archivetest.PushWAL(t, a, name, waltest.SegmentOf(t, name, segSize, 0, system), system)
	}
	site := checkSite(t, sc, config.ModePGReceiveXLog, clusterNode(c))
	cfg := writeDBSiteConfigWith(t, site, map[string]any{"http_port": testio.FreePort(t)})
	code, out := runOutput(t, "--config", cfg, "basebackup", "--fast")
	t.Logf("hoard basebackup:\n%s", out)
	if code != ExitOK {
		t.Fatalf("basebackup: exit %d, want %d", code, ExitOK)
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("summary warns, with the WAL stored through the backup's end")
	}
	code, out = runOutput(t, "--config", cfg, "basebackup", "--fast", "--json")
	if code != ExitOK {
		t.Fatalf("basebackup --json: exit %d, want %d:\n%s", code, ExitOK, out)
	}
	var got struct {
		EndWALSegment string `json:"end_wal_segment"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("basebackup --json: %v:\n%s", err, out)
	}
	if end, _ := wal.ParseSegmentName(got.EndWALSegment, segSize); end.No > seg.No+8 {
		t.Fatalf("the backup ended in %s, past the WAL stored for it: make the test store more", got.EndWALSegment)
	}
	if w := jsonWarnings(t, out); len(w) != 0 {
		t.Errorf("basebackup --json: warnings %q, want none", w)
	}
}

// jsonWarnings returns the warnings of hoard basebackup --json's output
// js, failing the test when it is not JSON or has no warnings field.
func jsonWarnings(t *testing.T, js string) []string {
	t.Helper()
	var got struct {
		Warnings *[]string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatalf("basebackup --json: %v:\n%s", err, js)
	}
	if got.Warnings == nil {
		t.Fatalf("basebackup --json: no warnings field:\n%s", js)
	}
	return *got.Warnings
}
