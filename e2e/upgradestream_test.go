package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestPgUpgrade_Streaming runs a real pg_upgrade (Debian's PostgreSQL 15,
// 15 to 15, 1 MiB segments) under a running hoard daemon that streams the
// cluster's WAL through its physical slot. The old cluster is backed up,
// commits rows (the last one only in its final, unfinished segment) and
// stops while the daemon runs; it is upgraded and the new cluster starts
// on the same port (no slot, a new system identifier, timeline 1, WAL
// beyond the old one's). The daemon must keep running, store the old
// cluster's final segment as a .partial (pg_waldump finds the shutdown
// checkpoint pg_controldata names in what wal-fetch returns of it), log
// once at error level that the node's system changed, naming pg_upgrade
// and the prefix to set, stream the new cluster (its slot created again)
// and back it up. Then the docs' fix: a new prefix and SIGHUP; the daemon
// backs up and streams the new cluster there, exits 0 on SIGTERM, and a
// restore from the new prefix brings back the new cluster's rows and
// system. A restore of the old prefix's old backup is refused, naming
// the gap from the .partial's segment to the new cluster's WAL, and with
// --stop-at-gap brings back the old cluster's rows up to its last
// complete segment: the last row is only in the .partial.
func TestPgUpgrade_Streaming(t *testing.T) {
	s := newLocalStreamSite(t)
	old := pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})
	s.use(old)
	old.Exec(t, "create table t (id int primary key)")
	old.Exec(t, "insert into t values (1)")
	d := s.startDaemon()
	waitBackups(d, s, 1)
	old.Exec(t, "insert into t values (2)")
	s.switchAndWaitStored(d, old, 2*time.Minute)
	// Row 3 is only in the old cluster's last segment, which it never
	// finishes: its shutdown checkpoint follows it there.
	old.Exec(t, "insert into t values (3)")
	last := old.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	old.Stop(t)
	checkpoint := controlField(t, old.DataDir, "Latest checkpoint location")
	sysOld, err := archive.ClusterSystemID(old.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	oldBackups := s.listBackups()

	nc := pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})
	nc.Stop(t)
	pgUpgrade(t, old, nc)
	sysNew, err := archive.ClusterSystemID(nc.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	nc.Port = old.Port // the node the daemon streams from, upgraded in place
	nc.Start(t)
	if got, want := tableRows(t, nc), "3: 1,2,3"; got != want {
		t.Fatalf("upgraded cluster: rows %q, want %q", got, want)
	}
	if first := nc.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())"); first <= last {
		t.Fatalf("upgraded cluster writes %s, not beyond the old cluster's last segment %s", first, last)
	}

	d.waitFor("the old cluster's "+last+".partial stored", 2*time.Minute, func() bool { return s.stored(last + ".partial") })
	d.waitFor("a backup of the upgraded cluster", 3*time.Minute, func() bool {
		for _, b := range s.listBackups() {
			if b.SystemID == strconv.FormatUint(sysNew, 10) {
				return true
			}
		}
		return false
	})
	nc.Exec(t, "insert into t values (10)")
	s.switchAndWaitStored(d, nc, 2*time.Minute)
	if s.stored(last) {
		t.Errorf("the old cluster's unfinished %s is stored as a complete segment", last)
	}
	logged := d.out.String()
	changed := regexp.MustCompile(`(?m)^.*database system changed.*$`).FindAllString(logged, -1)
	if len(changed) != 1 {
		t.Errorf("the daemon logged the node's system change %d times, want once:\n%s", len(changed), tailLines(logged, 40))
	}
	for _, w := range []string{" ERR ", "pg_upgrade", "backup_sites.<site>.prefix", strconv.FormatUint(sysOld, 10), strconv.FormatUint(sysNew, 10)} {
		if len(changed) > 0 && !strings.Contains(changed[0], w) {
			t.Errorf("the daemon's line on the system change does not say %s:\n%s", w, changed[0])
		}
	}
	if n := strings.Count(logged, "streaming interrupted"); n > 20 {
		t.Errorf("the daemon logged %d reconnections, want a backoff, not a loop", n)
	}

	// The docs' fix: a configuration file of the old prefix to restore
	// the old cluster, a new prefix for the upgraded one, SIGHUP.
	oldSite := *s.site
	oldSite.config = filepath.Join(s.dir, "old-cluster.json")
	cfg, site := s.readConfig()
	site["prefix"], site["active"] = s.name, false
	s.writeConfig(oldSite.config, cfg)
	s.setSiteKey("prefix", s.name+"-upgraded")
	d.hup("configuration reloaded")
	upgraded := *s.site
	upgraded.name = s.name + "-upgraded"
	newPrefix := *s
	newPrefix.site = &upgraded
	d.waitFor("a backup in the new prefix", 3*time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[s.name].Backups >= 1 && !st.Sites[s.name].BackupRunning
	})
	nc.Exec(t, "insert into t values (11)")
	want := tableRows(t, nc)
	newPrefix.switchAndWaitStored(d, nc, 2*time.Minute)
	if code := d.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}

	// The old cluster's last WAL, through its shutdown checkpoint, as
	// stored: not at the end of the old prefix (the new cluster's WAL
	// follows it), so wal-fetch does not deliver it; read the object.
	walDir := pgtest.TempDir(t)
	rc, _, err := (&archive.Codec{}).Open(t.Context(), s.store, s.name+"/xlog/"+last+".partial")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("decode %s.partial: %v", last, err)
	}
	data = append(data, make([]byte, max(0, 1<<20-len(data)))...)
	if err := os.WriteFile(filepath.Join(walDir, last), data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(pgtest.Tool(t, "pg_waldump"), "--path", walDir, last, last).CombinedOutput()
	// pg_waldump writes an LSN's low half with 8 digits, pg_controldata
	// without leading zeros.
	hi, lo, _ := strings.Cut(checkpoint, "/")
	waldumpLSN := hi + "/" + strings.Repeat("0", max(0, 8-len(lo))) + lo
	if !regexp.MustCompile(`lsn: ` + regexp.QuoteMeta(waldumpLSN) + `, .*CHECKPOINT_SHUTDOWN`).Match(out) {
		t.Errorf("pg_waldump of the stored %s.partial has no shutdown checkpoint at %s (pg_controldata's):\n%s", last, checkpoint, tailLines(string(out), 10))
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	nr := pgtest.StartDataDir(t, 15, dir, noArchiving)
	nr.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, nr); got != want {
		t.Errorf("restore of the upgraded cluster from the new prefix: rows %q, want %q", got, want)
	}
	if sys, err := archive.ClusterSystemID(dir); err != nil || sys != sysNew {
		t.Errorf("restored cluster: system %d (%v), want the upgraded cluster's %d", sys, err, sysNew)
	}
	nr.Stop(t)

	// The old cluster's backup in the old prefix: its WAL ends with the
	// .partial, which the new cluster's WAL follows there, so restore
	// sees a gap up to the new cluster's first segment and refuses to
	// restore silently short of the stored WAL; --stop-at-gap restores
	// up to the last complete segment.
	oldDir := filepath.Join(pgtest.TempDir(t), "old")
	_, errOut, err := oldSite.hoard("restore", "--target-dir", oldDir, "--basebackup", oldBackups[len(oldBackups)-1].Name)
	if err == nil || !strings.Contains(errOut, "gap") || !strings.Contains(errOut, last) {
		t.Errorf("restore of the old cluster from the old prefix: %v, want it refused naming the gap from %s\n%s", err, last, errOut)
	}
	if err := os.RemoveAll(oldDir); err != nil {
		t.Fatal(err)
	}
	oldSite.mustHoard("restore", "--target-dir", oldDir, "--basebackup", oldBackups[len(oldBackups)-1].Name, "--stop-at-gap")
	oc := pgtest.StartDataDir(t, 15, oldDir, noArchiving)
	oc.WaitRecoveryDone(t, 3*time.Minute)
	if got, want := tableRows(t, oc), "2: 1,2"; got != want {
		t.Errorf("restore of the old cluster from the old prefix up to the gap: rows %q, want %q", got, want)
	}
	if sys, err := archive.ClusterSystemID(oldDir); err != nil || sys != sysOld {
		t.Errorf("restored old cluster: system %d (%v), want the old cluster's %d", sys, err, sysOld)
	}
	oc.Stop(t)
}

// waitBackups waits until the daemon lists at least n backups and takes
// none.
func waitBackups(d *daemonProc, s *streamSite, n int) {
	d.t.Helper()
	d.waitFor("basebackups", 3*time.Minute, func() bool {
		st, ok := d.status()
		site := st.Sites[s.name]
		return ok && site.Backups >= n && !site.BackupRunning && site.WAL != nil && site.WAL.Connected
	})
}

// controlField returns the value of field in Debian's pg_controldata of
// the stopped cluster's data directory.
func controlField(t *testing.T, dataDir, field string) string {
	t.Helper()
	cmd := exec.Command(pgtest.Tool(t, "pg_controldata"), "-D", dataDir)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(field) + `:\s*(\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("pg_controldata has no %q:\n%s", field, out)
	}
	return string(m[1])
}
