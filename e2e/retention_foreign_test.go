package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestRetention_ForeignSystem: two clusters, A and B, back up into two
// sites of the same name that share a key pair (one hoard create-keys for
// both). Someone who can write A's storage and read B's, holding no key,
// copies B's backups (control objects and chunks, names unchanged) into
// A's site, where their metadata authenticates. A's daemon must still
// take a backup of its own at once (A has none), report it as the
// newest, and keep it and its WAL; then, with newer backups of B copied
// in, hoard retention (basebackup_count 2, A's node reachable) must keep
// A's backup and its WAL, and name B's as another system's.
func TestRetention_ForeignSystem(t *testing.T) {
	a := newSite(t, siteOptions{Encrypt: true})
	srcA := a.startWithTable(t)
	switchAndWaitArchived(t, srcA)
	sysA := srcA.QueryString(t, "select system_identifier::text from pg_control_system()")

	b, srcB := a.sharingKeys(t)
	planted := b.foreignBackups(t, srcB, a, 2)

	a.editConfig(func(cfg map[string]any) {
		cfg["http_port"] = testio.FreePort(t)
		cfg["json_state_file_path"] = filepath.Join(a.dir, "state", "hoard_state.json")
		cfg["backup_sites"].(map[string]any)[a.name].(map[string]any)["basebackup_count"] = 2
		cfg["backup_sites"].(map[string]any)[a.name].(map[string]any)["basebackup_interval_hours"] = 24
	})
	acfg, _ := a.readConfig()
	d := (&streamSite{site: a, httpPort: int(acfg["http_port"].(float64))}).startDaemon()
	var own backupJSON
	d.waitFor("a basebackup of A's own, reported as the newest", 90*time.Second, func() bool {
		st, ok := d.status()
		if !ok || st.Sites[a.name].LastBackup == nil || st.Sites[a.name].BackupRunning {
			return false
		}
		for _, bk := range a.listBackups() {
			if bk.SystemID == sysA && st.Sites[a.name].LastBackup.Name == bk.Name {
				own = bk
				return true
			}
		}
		return false
	})
	// The daemon runs retention right after a backup.
	d.waitFor("a retention run", time.Minute, func() bool {
		st, ok := d.status()
		return ok && st.Sites[a.name].LastRetention != nil
	})
	d.stop(syscall.SIGTERM, 30*time.Second)
	a.assertKept(t, own, "the daemon's retention")

	// B's newer backups copied in: four backups of B, one of A, whose
	// WAL B's starts are past.
	planted = append(planted, b.foreignBackups(t, srcB, a, 2)...)
	out := a.mustHoard("retention")
	a.assertKept(t, own, "hoard retention")
	for _, name := range planted {
		if !strings.Contains(out, name) {
			t.Errorf("hoard retention does not name %s:\n%s", name, out)
		}
	}
	if !strings.Contains(out, "another database system") {
		t.Errorf("hoard retention does not say B's backups are another system's:\n%s", out)
	}

	// hoard check names them and compares the node with A's backup;
	// restore's automatic choice, with no node to ask, warns.
	out, _, _ = a.hoard("check")
	if !strings.Contains(out, "backups of another database system") || !strings.Contains(out, "same cluster as the newest backup "+own.Name) {
		t.Errorf("hoard check does not name B's backups and compare the node with %s:\n%s", own.Name, out)
	}
	_, errOut, _ := a.hoard("restore", "--target-dir", filepath.Join(pgtest.TempDir(t), "data"))
	if !strings.Contains(errOut, "more than one database system") || !strings.Contains(errOut, sysA) {
		t.Errorf("hoard restore does not warn that the backups are of more than one system:\n%s", errOut)
	}
}

// sharingKeys returns site B, of s's name and configuration, key pair
// included, but with a store of its own, and B's cluster (PostgreSQL 15,
// archiving into B's store), which B's commands connect to.
func (s *site) sharingKeys(t *testing.T) (*site, *pgtest.Cluster) {
	t.Helper()
	cfg, _ := s.readConfig()
	b := &site{t: t, name: s.name, dir: s.dir, config: filepath.Join(s.dir, "b.json"), storeDir: filepath.Join(s.dir, "b-store")}
	b.writeConfig("", cfg)
	b.rewriteStore(b.storeDir)
	c := pgtest.Start(t, pgtest.Options{Major: 15, Conf: b.clusterConf()})
	b.use(c)
	return b, c
}

// foreignBackups takes n backups of c with s's configuration whose names
// are free in the site of to, copies them there (control objects with
// their metadata, chunks), and returns their names.
func (s *site) foreignBackups(t *testing.T, c *pgtest.Cluster, to *site, n int) []string {
	t.Helper()
	ctx := context.Background()
	src, dst := storage.NewLocal(s.storeDir), storage.NewLocal(to.storeDir)
	l := archive.Layout{Prefix: s.name}
	var names []string
	for len(names) < n {
		switchAndWaitArchived(t, c)
		before := s.listBackups()
		s.mustHoard("basebackup", "--fast")
		var name string
		for _, b := range s.listBackups() {
			if !slices.ContainsFunc(before, func(o backupJSON) bool { return o.Name == b.Name }) {
				name = b.Name
			}
		}
		if _, err := dst.Stat(ctx, l.BackupKey(name)); err == nil {
			continue // taken in the same minute as one of to's
		}
		names = append(names, name)
		keys := []string{l.BackupKey(name)}
		err := src.List(ctx, l.Dir(archive.BasebackupChunkDir)+name+"/", func(o storage.Object) error {
			keys = append(keys, o.Key)
			return nil
		})
		if err != nil || len(keys) < 2 {
			t.Fatalf("chunks of %s: %v %v", name, keys, err)
		}
		archivetest.CopyTo(t, src, dst, keys...)
	}
	pgtest.Chown(t, to.storeDir)
	return names
}

// assertKept fails the test unless backup b and the WAL segments it
// starts and ends in are still in the site.
func (s *site) assertKept(t *testing.T, b backupJSON, by string) {
	t.Helper()
	var names []string
	for _, bk := range s.listBackups() {
		names = append(names, bk.Name)
	}
	if !slices.Contains(names, b.Name) {
		t.Errorf("%s deleted backup %s of this cluster (left: %v)", by, b.Name, names)
	}
	for _, seg := range []string{b.StartWALSegment, b.EndWALSegment} {
		if _, err := os.Stat(filepath.Join(s.storeDir, s.name, "xlog", seg)); err != nil {
			t.Errorf("%s deleted WAL %s, which backup %s needs: %v", by, seg, b.Name, err)
		}
	}
}
