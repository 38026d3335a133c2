package e2e

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestDaemonReload changes the compression of new uploads in the
// configuration file and sends SIGHUP: the same process goes on, segments
// stored after the reload carry the new compression-algorithm, and no
// segment is missing across it. Then an invalid configuration and SIGHUP:
// the daemon logs the error and keeps streaming with the configuration it
// has.
func TestDaemonReload(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hoard daemon against PostgreSQL and MinIO")
	}
	s := newMinIOStreamSite(t)
	src := s.startSource(pgtest.Options{})

	d := s.startDaemon()
	pid := d.cmd.Process.Pid
	d.waitFirstBackup(s.name, 2*time.Minute, false)
	first := s.switchAndWaitStored(d, src, time.Minute)
	if got := s.compressionOf(first); got != "snappy" {
		t.Fatalf("%s stored with compression %q before the reload, want snappy", first, got)
	}

	// A valid change: new uploads use zstd.
	s.editConfig(func(cfg map[string]any) {
		cfg["compression"] = map[string]any{"algorithm": "zstd"}
	})
	d.hup("configuration reloaded")
	if !strings.Contains(d.out.String(), "reload: site configuration changed; restarting it") {
		t.Errorf("the reload did not restart the changed site\n%s", tailLines(d.out.String(), 20))
	}
	d.waitFor("streaming after the reload", time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].WAL != nil && st.Sites[s.name].WAL.Connected
	})
	second := s.switchAndWaitStored(d, src, time.Minute)
	if got := s.compressionOf(second); got != "zstd" {
		t.Errorf("%s stored with compression %q after the reload, want zstd", second, got)
	}

	// An invalid configuration is refused; streaming goes on as before.
	valid, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	s.writeFile(s.config, []byte(`{"backup_sites": {`))
	d.hup("reload failed; keeping the running configuration")
	third := s.switchAndWaitStored(d, src, time.Minute)
	if got := s.compressionOf(third); got != "zstd" {
		t.Errorf("%s stored with compression %q after the refused reload, want zstd", third, got)
	}
	s.writeFile(s.config, valid)

	if d.cmd.Process.Pid != pid {
		t.Fatalf("daemon pid changed from %d to %d", pid, d.cmd.Process.Pid)
	}
	if code := d.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0", code)
	}
	checkContiguous(t, s, first, third, 1<<20, "")
}

// hup sends SIGHUP and waits until the daemon logs want (a message after
// this signal: the log is searched from its current end).
func (d *daemonProc) hup(want string) {
	d.t.Helper()
	from := len(d.out.String())
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		d.t.Fatalf("SIGHUP: %v", err)
	}
	d.waitFor("log "+want, time.Minute, func() bool {
		return strings.Contains(d.out.String()[from:], want)
	})
}

// compressionOf returns the compression-algorithm metadata of the stored
// segment name.
func (s *streamSite) compressionOf(name string) string {
	s.t.Helper()
	o, err := s.store.Stat(context.Background(), s.name+"/xlog/"+name)
	if err != nil {
		s.t.Fatalf("stat %s: %v", name, err)
	}
	return o.Metadata["compression-algorithm"]
}
