package e2e

import (
	"io"
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
// system. A restore of the old prefix's old backup, whose WAL ends in
// the .partial that the new cluster's WAL follows, is no gap: it says
// so, naming pg_upgrade, and brings back every row of the old cluster,
// the last one, only in the .partial, included (before: refused as a
// gap, and --stop-at-gap lost that row).
func TestPgUpgrade_Streaming(t *testing.T) {
	s := newLocalStreamSite(t)
	u := streamUpgrade(t, s)
	d, nc, last, sysOld, sysNew, oldBackups := u.d, u.nc, u.last, u.sysOld, u.sysNew, u.oldBackups
	u.startUpgraded(t)

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
	// The upgraded cluster's new slot leaves nothing behind: the old
	// cluster no longer runs.
	if strings.Contains(logged, formerSlotWarning) {
		t.Errorf("after pg_upgrade the daemon warns of a slot left behind:\n%s", tailLines(logged, 40))
	}

	// The docs' fix: a configuration file of the old prefix to restore
	// the old cluster, a new prefix for the upgraded one, SIGHUP.
	oldSite := s.oldPrefixSite()
	newPrefix := s.useNewPrefix(d)
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
	u.checkShutdownPartial(t, s)

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
	// .partial, which the new cluster's WAL follows there. That is the
	// end of the old system's WAL, not a gap: restore says so, and
	// wal-fetch delivers the .partial to the old cluster's recovery,
	// which replays it to the shutdown checkpoint: every row, the last
	// one included.
	oldDir := filepath.Join(pgtest.TempDir(t), "old")
	out, errOut, err := oldSite.hoard("restore", "--target-dir", oldDir, "--basebackup", oldBackups[len(oldBackups)-1].Name)
	if err != nil {
		t.Fatalf("restore of the old cluster from the old prefix: %v\n%s", err, errOut)
	}
	for _, w := range []string{last + ".partial", "another system's WAL follows", "pg_upgrade", strconv.FormatUint(sysNew, 10)} {
		if !strings.Contains(out, w) {
			t.Errorf("restore of the old cluster does not say %s:\n%s", w, out)
		}
	}
	oc := pgtest.StartDataDir(t, 15, oldDir, noArchiving)
	oc.WaitRecoveryDone(t, 3*time.Minute)
	if got, want := tableRows(t, oc), "3: 1,2,3"; got != want {
		t.Errorf("restore of the old cluster from the old prefix: rows %q, want %q", got, want)
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

// TestPgUpgrade_StreamingNewPrefixFirst is a pg_upgrade under a streaming
// daemon (wal_partial_upload_interval 0) in the order the docs give: the
// old cluster stops, pg_upgrade runs, the new prefix is set and the
// daemon reloaded (SIGHUP) before the upgraded cluster starts. The old
// cluster's last segment, which holds its last committed row and its
// shutdown checkpoint, is stored as a .partial in the OLD prefix when
// the old server ends the stream (before: only once the daemon reached
// the upgraded cluster, into the prefix set then, the new one), before
// the reload takes effect (the test does not wait for it), and a
// restore with the configuration file of the old prefix brings back that
// row and the old system. The upgraded cluster is backed up and streamed
// into the new prefix.
func TestPgUpgrade_StreamingNewPrefixFirst(t *testing.T) {
	s := newLocalStreamSite(t)
	u := streamUpgrade(t, s)
	// No wait for the daemon's line on the stored copy: a reload takes
	// effect only once the old prefix holds it.
	oldSite := s.oldPrefixSite()
	newPrefix := s.useNewPrefix(u.d)
	if !s.stored(u.last + ".partial") {
		t.Errorf("the reload to the new prefix took effect before the old cluster's %s.partial was stored in the old prefix", u.last)
	}
	u.startUpgraded(t)
	u.d.waitFor("a backup of the upgraded cluster in the new prefix", 3*time.Minute, func() bool {
		for _, b := range newPrefix.listBackups() {
			if b.SystemID == strconv.FormatUint(u.sysNew, 10) {
				return true
			}
		}
		return false
	})
	u.nc.Exec(t, "insert into t values (10)")
	newPrefix.switchAndWaitStored(u.d, u.nc, 2*time.Minute)
	if code := u.d.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(u.d.out.String(), 30))
	}
	u.checkShutdownPartial(t, s)

	// The docs' configuration file of the old prefix restores the old
	// cluster through its last commit: the .partial ends the old prefix.
	oldDir := filepath.Join(pgtest.TempDir(t), "old")
	oldSite.mustHoard("restore", "--target-dir", oldDir)
	oc := pgtest.StartDataDir(t, 15, oldDir, noArchiving)
	oc.WaitRecoveryDone(t, 3*time.Minute)
	if got, want := tableRows(t, oc), "3: 1,2,3"; got != want {
		t.Errorf("restore of the old cluster from the old prefix: rows %q, want %q", got, want)
	}
	if sys, err := archive.ClusterSystemID(oldDir); err != nil || sys != u.sysOld {
		t.Errorf("restored old cluster: system %d (%v), want the old cluster's %d", sys, err, u.sysOld)
	}
	oc.Stop(t)
}

// streamedUpgrade is a pg_upgrade in place under a daemon that streamed
// the old cluster (streamUpgrade).
type streamedUpgrade struct {
	d       *daemonProc
	old, nc *pgtest.Cluster
	// last is the old cluster's last segment, which it never finished;
	// checkpoint its shutdown checkpoint (pg_controldata's).
	last, checkpoint string
	sysOld, sysNew   uint64
	oldBackups       []backupJSON
}

// streamUpgrade starts Debian's PostgreSQL 15 (1 MiB segments) as s's
// node and a daemon that streams it, which backs it up; the cluster
// commits rows 1 and 2 into complete segments and row 3 only into its
// last segment, stops, and is upgraded by pg_upgrade into a new cluster
// on its port, not started yet (startUpgraded).
func streamUpgrade(t *testing.T, s *streamSite) *streamedUpgrade {
	t.Helper()
	u := &streamedUpgrade{old: pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})}
	old := u.old
	s.use(old)
	old.Exec(t, "create table t (id int primary key)")
	old.Exec(t, "insert into t values (1)")
	u.d = s.startDaemon()
	waitBackups(u.d, s, 1)
	old.Exec(t, "insert into t values (2)")
	s.switchAndWaitStored(u.d, old, 2*time.Minute)
	// Row 3 is only in the old cluster's last segment, which it never
	// finishes: its shutdown checkpoint follows it there.
	old.Exec(t, "insert into t values (3)")
	u.last = old.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	old.Stop(t)
	u.checkpoint = pgtest.ControlField(t, old.DataDir, "Latest checkpoint location")
	var err error
	if u.sysOld, err = archive.ClusterSystemID(old.DataDir); err != nil {
		t.Fatal(err)
	}
	u.oldBackups = s.listBackups()

	u.nc = pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})
	u.nc.Stop(t)
	pgUpgrade(t, old, u.nc)
	if u.sysNew, err = archive.ClusterSystemID(u.nc.DataDir); err != nil {
		t.Fatal(err)
	}
	u.nc.Port = old.Port // the node the daemon streams from, upgraded in place
	return u
}

// startUpgraded starts the upgraded cluster and checks that it has the
// old cluster's rows and writes WAL beyond the old cluster's.
func (u *streamedUpgrade) startUpgraded(t *testing.T) {
	t.Helper()
	u.nc.Start(t)
	if got, want := tableRows(t, u.nc), "3: 1,2,3"; got != want {
		t.Fatalf("upgraded cluster: rows %q, want %q", got, want)
	}
	if first := u.nc.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())"); first <= u.last {
		t.Fatalf("upgraded cluster writes %s, not beyond the old cluster's last segment %s", first, u.last)
	}
}

// checkShutdownPartial checks that the old cluster's last segment is
// stored in s's prefix as a .partial that holds its shutdown checkpoint:
// pg_waldump finds it in the object, decoded.
func (u *streamedUpgrade) checkShutdownPartial(t *testing.T, s *streamSite) {
	t.Helper()
	rc, _, err := (&archive.Codec{}).Open(t.Context(), s.store, s.name+"/xlog/"+u.last+".partial")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("decode %s.partial: %v", u.last, err)
	}
	if ok, out := pgtest.WaldumpShutdownCheckpoint(t, u.last, data, 1<<20, u.checkpoint); !ok {
		t.Errorf("pg_waldump of the stored %s.partial has no shutdown checkpoint at %s (pg_controldata's):\n%s", u.last, u.checkpoint, out)
	}
}

// oldPrefixSite writes the docs' configuration file for restoring the
// old cluster after the site gets a new prefix (a copy with the site's
// prefix explicit and "active": false) and returns that site.
func (s *streamSite) oldPrefixSite() *site {
	s.t.Helper()
	old := *s.site
	old.config = filepath.Join(s.dir, "old-cluster.json")
	cfg, site := s.readConfig()
	site["prefix"], site["active"] = s.name, false
	s.writeConfig(old.config, cfg)
	return &old
}

// useNewPrefix sets the site's prefix to <site>-upgraded and reloads the
// daemon (SIGHUP), as the docs say after pg_upgrade; it returns the site
// as seen in the new prefix, for the test's own checks.
func (s *streamSite) useNewPrefix(d *daemonProc) *streamSite {
	s.t.Helper()
	s.setSiteKey("prefix", s.name+"-upgraded")
	d.hup("configuration reloaded")
	upgraded := *s.site
	upgraded.name = s.name + "-upgraded"
	np := *s
	np.site = &upgraded
	return &np
}
