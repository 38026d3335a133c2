package command

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/restore"
)

// restoredSummary is printRestored's text for a restored directory dir.
func restoredSummary(dir string) string {
	var buf bytes.Buffer
	printRestored(&buf, restore.Options{TargetDir: dir}, &restore.Result{Backup: &archive.BackupInfo{Name: "b1"}}, nil)
	return buf.String()
}

// restoredWithPort is a restored directory whose postgresql.conf sets
// port, overridden by postgresql.auto.conf when auto is not 0.
func restoredWithPort(t *testing.T, port, auto int) string {
	t.Helper()
	files := map[string]string{"postgresql.conf": "listen_addresses = 'localhost'\nport = " + strconv.Itoa(port) + "  # (change requires restart)\n"}
	if auto != 0 {
		files["postgresql.auto.conf"] = "port = '" + strconv.Itoa(auto) + "'\n"
	}
	return restoredWithConf(t, files)
}

// restoredWithConf is a restored directory with files (name: content)
// beside empty pg_hba.conf and pg_ident.conf.
func restoredWithConf(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range serverConfigFiles {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// listen holds a real listener on addr ("tcp" or "unix") until the test ends.
func listen(t *testing.T, network, addr string) {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

var suggestedPort = regexp.MustCompile(`pg_ctl -D \S+ -o "-p ([0-9]+)" start`)

// wantOtherPort checks that the summary says port is in use and suggests
// a free port other than it in the start command.
func wantOtherPort(t *testing.T, got string, port int) {
	t.Helper()
	if strings.Contains(got, `\n`) {
		t.Errorf("the summary prints an escaped line break:\n%s", got)
	}
	if !strings.Contains(got, "port "+strconv.Itoa(port)+" is in use") {
		t.Errorf("port %d is in use, the summary does not say so:\n%s", port, got)
	}
	m := suggestedPort.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("port %d is in use, the start command sets no other port:\n%s", port, got)
	}
	other, _ := strconv.Atoi(m[1])
	if other == port {
		t.Fatalf("suggested port %d, the one in use:\n%s", other, got)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+m[1])
	if err != nil {
		t.Fatalf("suggested port %d is not free: %v", other, err)
	}
	l.Close()
}

// TestPrintRestored_PortInUse: the restored cluster's configured port is
// taken on this host (by the original cluster, most often), where pg_ctl
// start fails ("could not bind ... Address already in use", or "lock file
// ... already exists" for the socket): the summary says so and starts it
// on a free port with -o "-p PORT". A free port gets the plain command.
func TestPrintRestored_PortInUse(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		port := testio.FreePort(t)
		got := restoredSummary(restoredWithPort(t, port, 0))
		if strings.Contains(got, "-o ") || strings.Contains(got, "in use") {
			t.Errorf("port %d is free, the summary says otherwise:\n%s", port, got)
		}
	})
	t.Run("TCP", func(t *testing.T) {
		port := testio.FreePort(t)
		listen(t, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		wantOtherPort(t, restoredSummary(restoredWithPort(t, port, 0)), port)
	})
	t.Run("AutoConfWins", func(t *testing.T) {
		free, taken := testio.FreePort(t), testio.FreePort(t)
		listen(t, "tcp", "127.0.0.1:"+strconv.Itoa(taken))
		wantOtherPort(t, restoredSummary(restoredWithPort(t, free, taken)), taken)
	})
	t.Run("Socket", func(t *testing.T) {
		// A server listening only on its Unix socket, in /tmp where
		// PostgreSQL's default unix_socket_directories puts it.
		port := testio.FreePort(t)
		sock := filepath.Join("/tmp", ".s.PGSQL."+strconv.Itoa(port))
		if _, err := os.Lstat(sock); err == nil {
			t.Skipf("%s exists", sock)
		}
		listen(t, "unix", sock)
		t.Cleanup(func() { os.Remove(sock) })
		wantOtherPort(t, restoredSummary(restoredWithPort(t, port, 0)), port)
	})
	t.Run("StaleSocket", func(t *testing.T) {
		// A socket file no server listens on (left by a crash): PostgreSQL
		// removes it when it starts, so the port is free.
		port := testio.FreePort(t)
		sock := filepath.Join("/tmp", ".s.PGSQL."+strconv.Itoa(port))
		if _, err := os.Lstat(sock); err == nil {
			t.Skipf("%s exists", sock)
		}
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close()
		t.Cleanup(func() { os.Remove(sock) })
		if got := restoredSummary(restoredWithPort(t, port, 0)); strings.Contains(got, "-o ") {
			t.Errorf("only a stale socket file for port %d, the summary takes it as in use:\n%s", port, got)
		}
	})
}

// socketDir is a new directory for Unix sockets, with a path short enough
// for one (t.TempDir's may be too long), removed when the test ends.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hoard-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// wantFree checks that the summary says nothing of port being in use.
func wantFree(t *testing.T, got string, port int) {
	t.Helper()
	if strings.Contains(got, "-o ") || strings.Contains(got, "in use") {
		t.Errorf("port %d is free where the restored cluster listens, the summary says otherwise:\n%s", port, got)
	}
}

// TestPrintRestored_PortInUseWhereItListens: the check probes where the
// restored configuration says the cluster listens (listen_addresses,
// unix_socket_directories, port, include files included), not loopback
// and the usual socket directories.
func TestPrintRestored_PortInUseWhereItListens(t *testing.T) {
	conf := func(port int, listen, sockets string) string {
		return "port = " + strconv.Itoa(port) + "\nlisten_addresses = '" + listen + "'\nunix_socket_directories = '" + sockets + "'\n"
	}
	for _, tc := range []struct{ name, listen string }{
		{"OtherAddress", "127.0.0.2"},
		// '*' binds every address: a listener on any one is in the way.
		{"Wildcard", "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testio.FreePort(t)
			listen(t, "tcp", "127.0.0.2:"+strconv.Itoa(port))
			wantOtherPort(t, restoredSummary(restoredWithConf(t, map[string]string{"postgresql.conf": conf(port, tc.listen, "")})), port)
		})
	}
	t.Run("NotWhereItListens", func(t *testing.T) {
		port := testio.FreePort(t)
		listen(t, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		wantFree(t, restoredSummary(restoredWithConf(t, map[string]string{"postgresql.conf": conf(port, "127.0.0.2", "")})), port)
	})
	t.Run("NoTCP", func(t *testing.T) {
		// listen_addresses '': only the socket, in a directory where nothing listens.
		port := testio.FreePort(t)
		listen(t, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		wantFree(t, restoredSummary(restoredWithConf(t, map[string]string{"postgresql.conf": conf(port, "", socketDir(t))})), port)
	})
	t.Run("SocketDirs", func(t *testing.T) {
		// A comma list, the second entry quoted; the running server
		// listens only on its socket there.
		port := testio.FreePort(t)
		dir := socketDir(t)
		listen(t, "unix", filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(port)))
		sockets := socketDir(t) + `, "` + dir + `"`
		got := restoredSummary(restoredWithConf(t, map[string]string{"postgresql.conf": conf(port, "", sockets)}))
		wantOtherPort(t, got, port)
		if !strings.Contains(got, dir) {
			t.Errorf("the summary does not name the socket in %s:\n%s", dir, got)
		}
	})
	t.Run("Include", func(t *testing.T) {
		// The port set by an included file, then by postgresql.auto.conf,
		// where hoard writes its own settings.
		free, taken := testio.FreePort(t), testio.FreePort(t)
		listen(t, "tcp", "127.0.0.1:"+strconv.Itoa(taken))
		files := map[string]string{
			"postgresql.conf": "port = " + strconv.Itoa(free) + "\ninclude 'extra.conf'\n",
			"extra.conf":      "port = " + strconv.Itoa(taken) + "\n",
		}
		wantOtherPort(t, restoredSummary(restoredWithConf(t, files)), taken)
		files["postgresql.auto.conf"] = "port = '" + strconv.Itoa(free) + "'\n"
		wantFree(t, restoredSummary(restoredWithConf(t, files)), free)
	})
	t.Run("ErrUnreadable", func(t *testing.T) {
		got := restoredSummary(restoredWithConf(t, map[string]string{"postgresql.conf": "include 'gone.conf'\n"}))
		if !strings.Contains(got, "configuration cannot be read") || !strings.Contains(got, "gone.conf") {
			t.Errorf("an include of a missing file, the summary does not say the configuration cannot be read:\n%s", got)
		}
	})
}

// TestPrintRestored_SocketDirMissing: the restored configuration's
// unix_socket_directories names a directory this host does not have (the
// original host's, restored elsewhere), where PostgreSQL stops at start
// (FATAL: could not create lock file ".../.s.PGSQL.<port>.lock": No such
// file or directory): the summary names it and what to do before the
// start command. A directory that exists, relative entries under the data
// directory that exist, and the built-in default (no setting) get no
// such note.
func TestPrintRestored_SocketDirMissing(t *testing.T) {
	conf := func(sockets string) map[string]string {
		return map[string]string{"postgresql.conf": "port = " + strconv.Itoa(testio.FreePort(t)) + "\nlisten_addresses = ''\nunix_socket_directories = '" + sockets + "'\n"}
	}
	t.Run("ErrMissing", func(t *testing.T) {
		gone := filepath.Join(t.TempDir(), "gone")
		got := restoredSummary(restoredWithConf(t, conf(socketDir(t)+", "+gone)))
		for _, want := range []string{"unix_socket_directories names " + gone + ", which does not exist on this host",
			"could not create lock file", `-o "-k DIR"`} {
			if !strings.Contains(got, want) {
				t.Errorf("the summary does not say %q:\n%s", want, got)
			}
		}
		if strings.Contains(got, `\n`) {
			t.Errorf("the summary prints an escaped line break:\n%s", got)
		}
		if i, j := strings.Index(got, gone), strings.Index(got, "pg_ctl -D"); i < 0 || j < i {
			t.Errorf("the note on %s does not come before the start command:\n%s", gone, got)
		}
	})
	t.Run("ErrMissingRelative", func(t *testing.T) {
		dir := restoredWithConf(t, conf("sockets"))
		got := restoredSummary(dir)
		if want := filepath.Join(dir, "sockets") + ", which does not exist"; !strings.Contains(got, want) {
			t.Errorf("the summary does not say %q:\n%s", want, got)
		}
	})
	t.Run("OK", func(t *testing.T) {
		dir := restoredWithConf(t, conf(socketDir(t)+", sockets"))
		if err := os.Mkdir(filepath.Join(dir, "sockets"), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{dir, restoredWithConf(t, map[string]string{"postgresql.conf": "port = 5432\n"})} {
			if got := restoredSummary(d); strings.Contains(got, "does not exist") {
				t.Errorf("every socket directory exists, the summary says otherwise:\n%s", got)
			}
		}
	})
}
