package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRetention_PlantedBackupPublicKeyOnly: someone who can write the
// bucket but holds no key copies a real backup's control object and chunks
// under two later names, with metadata that says they started in 2099 at
// a segment far ahead, one with the real backup's metadata HMAC and one
// without. hoard retention with the public key only (as the
// daemon runs it) and basebackup_count 1 must not count it: the real
// backup and the WAL it needs stay, and a restore with the private key
// (which selects the newest backup whose metadata authenticates)
// recovers every row. Then, with the HMAC stripped from the real backup
// as well, retention still deletes nothing.
func TestRetention_PlantedBackupPublicKeyOnly(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	src, _ := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, src)
	want := tableRows(t, src)
	real := s.listBackups()[0]

	ctx := context.Background()
	st := storage.NewLocal(s.storeDir)
	l := archive.Layout{Prefix: s.name}
	copyObject := func(from, to string, edit func(storage.Metadata)) { archivetest.PlantCopy(t, st, from, to, edit) }
	var chunkKeys []string
	err := st.List(ctx, l.Dir(archive.BasebackupChunkDir)+real.Name+"/", func(o storage.Object) error {
		chunkKeys = append(chunkKeys, o.Key)
		return nil
	})
	if err != nil || len(chunkKeys) == 0 {
		t.Fatalf("chunks of %s: %v %v", real.Name, chunkKeys, err)
	}
	// One copies the real backup's metadata HMAC, the other strips it.
	fakes := map[string]bool{"2099-01-01_00-00_0": true, "2099-01-02_00-00_0": false}
	for fake, keepMAC := range fakes {
		for _, k := range chunkKeys {
			copyObject(k, strings.Replace(k, real.Name, fake, 1), func(storage.Metadata) {})
		}
		copyObject(l.BackupKey(real.Name), l.BackupKey(fake), func(md storage.Metadata) {
			md[archive.MetaStartTime] = strings.Replace(fake, "_00-00_0", "T00:00:00+00:00", 1)
			md[archive.MetaStartWALSegment] = "000000010000001000000000"
			md[archive.MetaEndWALSegment] = "000000010000001000000001"
			delete(md, archive.MetaStartLSN)
			delete(md, archive.MetaEndLSN)
			if !keepMAC {
				delete(md, archive.MetaBackupMAC)
			}
		})
	}
	pgtest.Chown(t, s.storeDir)

	private := s.publicKeyOnly(t)
	s.setSiteKey("basebackup_count", 1)
	out := s.mustHoard("retention")
	if _, err := st.Stat(ctx, l.BackupKey(real.Name)); err != nil {
		t.Fatalf("retention deleted the real backup %s on the strength of planted ones: %v\n%s", real.Name, err, out)
	}
	for _, seg := range []string{real.StartWALSegment, real.EndWALSegment} {
		if _, err := st.Stat(ctx, l.WALKey(seg)); errors.Is(err, storage.ErrNotFound) {
			t.Errorf("retention deleted WAL %s, which %s needs\n%s", seg, real.Name, out)
		}
	}
	for fake := range fakes {
		if !strings.Contains(out, "authenticate") || !strings.Contains(out, fake) {
			t.Errorf("retention output does not name %s as not authenticated:\n%s", fake, out)
		}
	}

	private()
	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
	restored.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, restored); got != want {
		t.Errorf("restored: rows %q, want %q", got, want)
	}

	// The HMAC stripped from the real backup too, so that none
	// authenticates: the site's signed-backups marker, which the writer
	// cannot delete, keeps retention from deleting anything.
	copyObject(l.BackupKey(real.Name), l.BackupKey(real.Name), func(md storage.Metadata) {
		delete(md, archive.MetaBackupMAC)
	})
	pgtest.Chown(t, s.storeDir)
	s.publicKeyOnly(t)
	out = s.mustHoard("retention")
	if _, err := st.Stat(ctx, l.BackupKey(real.Name)); err != nil {
		t.Fatalf("retention deleted the real backup %s once no backup authenticated: %v\n%s", real.Name, err, out)
	}
	if !strings.Contains(out, l.SignedMarkerKey()) {
		t.Errorf("retention output does not name %s:\n%s", l.SignedMarkerKey(), out)
	}
}

// publicKeyOnly removes the private key from the site's configuration, as
// on a host that backs up but cannot read the archive, and returns what
// puts it back.
func (s *site) publicKeyOnly(t *testing.T) (restore func()) {
	t.Helper()
	cfg, siteCfg := s.readConfig()
	keyID := siteCfg["encryption_key_id"].(string)
	key := siteCfg["encryption_keys"].(map[string]any)[keyID].(map[string]any)
	private := key["private"]
	delete(key, "private")
	s.writeConfig("", cfg)
	return func() {
		t.Helper()
		s.editConfig(func(cfg map[string]any) {
			site := cfg["backup_sites"].(map[string]any)[s.name].(map[string]any)
			site["encryption_keys"].(map[string]any)[keyID].(map[string]any)["private"] = private
		})
	}
}
