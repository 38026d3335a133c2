package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRecoveryRefusesOtherSystemWAL: two clusters archive into two sites
// that share a key pair. Someone who can write the first site's storage
// but holds no key copies the second cluster's segment of the same name
// (object and metadata) over the segment that holds the first cluster's
// last rows: its page header fits its name, position and timeline, and
// its envelope verifies. PostgreSQL would read it as the end of the WAL
// ("WAL file is from different database system") and promote without
// those rows; wal-fetch must refuse it (exit 255) so that recovery stops,
// and hoard verify --full must report it.
func TestRecoveryRefusesOtherSystemWAL(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	backup, seg, want := s.rowsInASegment(t)

	// The other cluster: the same configuration but for its storage.
	cfg, site := s.readConfig()
	otherStore := filepath.Join(s.dir, "other-store")
	site["object_storage"] = map[string]any{"storage_type": "local", "directory": otherStore}
	otherConfig := filepath.Join(s.dir, "other.json")
	s.writeConfig(otherConfig, cfg)
	other := pgtest.Start(t, pgtest.Options{Major: 15, Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("'%s' --config '%s' wal-push %%p", hoardBin, otherConfig),
	}})
	for last := ""; last < seg; {
		last = switchAndWaitArchived(t, other)
	}
	other.Stop(t)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	key := filepath.Join(s.name, "xlog", seg)
	for _, suffix := range []string{"", ".metadata"} {
		s.writeFile(filepath.Join(s.storeDir, key+suffix), readFile(t, filepath.Join(otherStore, key+suffix)))
	}
	// hoard verify --full, which reports the archive sound or not, names it.
	out, errOut, verr := s.hoard("verify", "--full")
	if verr == nil || !strings.Contains(out+errOut, seg) || !strings.Contains(out+errOut, "another database system") {
		t.Errorf("hoard verify --full after the swap: %v, want a failure naming %s as another system's:\n%s%s", verr, seg, out, errOut)
	}
	// A backup planted beside it (a copy of its control object, HMAC
	// stripped) whose metadata names another system must not make
	// verify take the segment for one two systems share, and skip it.
	st := storage.NewLocal(s.storeDir)
	l := archive.Layout{Prefix: s.name}
	archivetest.PlantCopy(t, st, l.BackupKey(backup), l.BackupKey("2099-01-01_00-00_0"), func(md storage.Metadata) {
		md[archive.MetaSystemID] = "1"
		delete(md, archive.MetaBackupMAC)
	})
	pgtest.Chown(t, s.storeDir)
	out, errOut, verr = s.hoard("verify", "--full")
	if verr == nil || !strings.Contains(out+errOut, seg) || !strings.Contains(out+errOut, "another database system") {
		t.Errorf("hoard verify --full after the swap, with a planted backup of system 1: %v, want a failure naming %s as another system's:\n%s%s", verr, seg, out, errOut)
	}
	c, err := pgtest.TryStartDataDir(t, 15, dir, noArchiving)
	log := refusedRecovery(t, c, err, countRows(t), want)
	if log != "" && (!strings.Contains(log, "WAL of another database system") || !strings.Contains(log, seg)) {
		t.Errorf("recovery failed, but the log does not show wal-fetch refusing %s:\n%s", seg, log)
	}
}

// rowsInASegment starts a cluster with table t (one row) and a backup,
// writes rows 2 to 1000 into a segment of their own (seg), archives the
// segment after it too, and stops the cluster. want is the rows it had
// (countRows).
func (s *site) rowsInASegment(t *testing.T) (backup, seg, want string) {
	t.Helper()
	src, backup := s.startBackedUp(t)
	switchAndWaitArchived(t, src)
	src.Exec(t, "insert into t select generate_series(2, 1000)")
	seg = switchAndWaitArchived(t, src)
	src.Exec(t, "select pg_logical_emit_message(false, 'hoard-e2e', 'more')")
	switchAndWaitArchived(t, src)
	want = countRows(t)(src)
	src.Stop(t)
	return backup, seg, want
}

// countRows returns a function that counts a cluster's rows of table t.
func countRows(t *testing.T) func(*pgtest.Cluster) string {
	return func(c *pgtest.Cluster) string { return c.QueryString(t, "select count(*) from t") }
}
