package e2e

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestVerify_RestorePlantedBackup: someone who can write the bucket but
// holds no key plants a copy of the real backup's control object under a
// later name, without its metadata HMAC and claiming PostgreSQL 99. hoard
// verify --restore chooses its backup as restore does, among the backups
// whose metadata authenticates: it tests the real backup with
// PostgreSQL 15's binaries and passes, where it looked for PostgreSQL 99's
// binaries for the planted backup and failed.
func TestVerify_RestorePlantedBackup(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	_, real := s.startBackedUp(t)
	st := storage.NewLocal(s.storeDir)
	l := archive.Layout{Prefix: s.name}
	fake := "2099-01-01_00-00_0"
	archivetest.PlantCopy(t, st, l.BackupKey(real), l.BackupKey(fake), func(md storage.Metadata) {
		md[archive.MetaStartTime] = "2099-01-01T00:00:00+00:00"
		md[archive.MetaPGVersion] = "990000"
		delete(md, archive.MetaBackupMAC)
	})
	pgtest.Chown(t, s.storeDir)

	out := s.mustHoard("verify", "--restore")
	if !strings.Contains(out, "restore test PASSED: backup "+real+", PostgreSQL 15") {
		t.Errorf("verify --restore did not test %s with PostgreSQL 15:\n%s", real, out)
	}
}

// TestVerify_RestoreAlteredVersion: in a site without keys, whose backups
// cannot be authenticated, the bucket writer changes the real backup's
// pg-version to 14. The test restore picks PostgreSQL 14's binaries
// before downloading, but the restored PG_VERSION says 15: it runs
// PostgreSQL 15 and passes, where it started PostgreSQL 14 on a
// PostgreSQL 15 data directory and failed.
func TestVerify_RestoreAlteredVersion(t *testing.T) {
	pgtest.BinDir(t, 14, false)
	s := newSite(t, siteOptions{})
	_, real := s.startBackedUp(t)
	st := storage.NewLocal(s.storeDir)
	key := archive.Layout{Prefix: s.name}.BackupKey(real)
	archivetest.PlantCopy(t, st, key, key, func(md storage.Metadata) { md[archive.MetaPGVersion] = "140000" })
	pgtest.Chown(t, s.storeDir)

	out := s.mustHoard("verify", "--restore")
	if !strings.Contains(out, "restore test PASSED: backup "+real+", PostgreSQL 15") {
		t.Errorf("verify --restore did not test %s with PostgreSQL 15:\n%s", real, out)
	}
}
