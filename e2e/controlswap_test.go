package e2e

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRestore_ControlObjectSwapped: someone who can write the storage but
// holds no key copies the control object of an older backup A over the
// newer backup B's, keeping B's metadata. In a site with keys both are
// authentic: the body is A's encrypted tar, and B's metadata HMAC binds
// B's name and metadata, not the body. The body names A's chunks (which
// are authentic too) and holds A's backup_label, so a restore of B
// restored A: with --target-immediate the cluster started with A's rows
// only, B's row 2 gone, and nothing said so. restore must refuse B,
// naming its control object, before it writes anything, and verify must
// report B; A still restores.
func TestRestore_ControlObjectSwapped(t *testing.T) {
	for _, keys := range []bool{true, false} {
		name := "NoKeys"
		if keys {
			name = "Keys"
		}
		t.Run(name, func(t *testing.T) { testControlObjectSwapped(t, keys) })
	}
}

func testControlObjectSwapped(t *testing.T, keys bool) {
	s := newSite(t, siteOptions{Encrypt: keys})
	_, older, newer := s.twoBackups(t)
	st := storage.NewLocal(s.storeDir)
	l := archive.Layout{Prefix: s.name}
	_, own := storetest.Read(t, st, l.BackupKey(newer))
	archivetest.PlantCopy(t, st, l.BackupKey(older), l.BackupKey(newer), func(md storage.Metadata) {
		clear(md)
		maps.Copy(md, own.Metadata)
	})
	pgtest.Chown(t, s.storeDir)
	if keys {
		out := s.mustHoard("list", "--json")
		if !strings.Contains(out, `"metadata_auth": "authenticated"`) && !strings.Contains(out, `"metadata_auth":"authenticated"`) {
			t.Fatalf("hoard list --json: no backup's metadata authenticates after the copy:\n%s", out)
		}
	}

	for _, args := range [][]string{{"--basebackup", newer}, nil} {
		dir := filepath.Join(pgtest.TempDir(t), "data")
		full := append([]string{"restore", "--target-dir", dir, "--target-immediate"}, args...)
		_, errOut, err := s.hoard(full...)
		if err == nil {
			c := pgtest.StartDataDir(t, 15, dir, noArchiving)
			c.WaitRecoveryDone(t, 3*time.Minute)
			t.Fatalf("hoard %s: restored %s holding %s's control object; the cluster has rows %s, backup %s had 1,2",
				strings.Join(full, " "), newer, older, tableRows(t, c), newer)
		}
		if got := exitCode(err); got != 1 {
			t.Errorf("hoard %s: exit %d, want 1", strings.Join(full, " "), got)
		}
		if !strings.Contains(errOut, l.BackupKey(newer)) || !strings.Contains(errOut, "not this backup's") {
			t.Errorf("hoard %s: the error does not name the control object %s as not the backup's:\n%s",
				strings.Join(full, " "), l.BackupKey(newer), errOut)
		}
		if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("hoard %s left %s/global/pg_control (err %v)", strings.Join(full, " "), dir, err)
		}
	}

	out, _, err := s.hoard("verify")
	if exitCode(err) != 1 || !strings.Contains(out, newer) || !strings.Contains(out, "not this backup's") {
		t.Errorf("hoard verify: exit %d, want 1 naming %s's control object as not its own:\n%s", exitCode(err), newer, out)
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir, "--target-immediate", "--basebackup", older)
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got, want := tableRows(t, c), "1: 1"; got != want {
		t.Errorf("backup %s restored with rows %s, want %s", older, got, want)
	}
}

// TestRestore_StaleListing: a storage whose listings leave out the newest
// backup's main object (a stale cache, a lying gateway; HEAD answers 404
// for it, GET still serves it), in a site with keys. restore without
// --basebackup cannot know of a backup it is not shown: it restores the
// older one, and its log names it with its end time. That loses nothing:
// recovery replays the archived WAL from the older backup's start, which
// restore checked is all stored, and the restored cluster has every row
// the source has, as the newest backup would give it.
func TestRestore_StaleListing(t *testing.T) {
	minio := storetest.MinIO(t)
	p := newLyingProxy(t, minio)
	s := newSite(t, siteOptions{Encrypt: true, ObjectStorage: s3Storage(p.config(minio))})
	src, older, newer := s.twoBackups(t)
	want := tableRows(t, src)
	p.hide(archive.Layout{Prefix: s.name}.BackupKey(newer))
	if bs := s.listBackups(); len(bs) != 1 || bs[0].Name != older {
		t.Fatalf("hoard list behind the proxy: %+v, want %s alone", bs, older)
	}

	s.restoreChosenHas(t, older, want, "the listing hid "+newer)
}

// restoreChosenHas restores without --basebackup, which must choose
// backup, then recovers to the end of the archive with hoard wal-fetch
// and fails the test unless the table rows are want (tableRows); why
// says why backup is the one chosen. It returns restore's summary.
func (s *site) restoreChosenHas(t *testing.T, backup, want, why string) string {
	t.Helper()
	dir := filepath.Join(pgtest.TempDir(t), "data")
	out := s.restoreChoosing(t, dir, backup)
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, c); got != want {
		t.Errorf("restored %s (%s): rows %s, want %s", backup, why, got, want)
	}
	return out
}

// TestRestore_BackupHistoryPlanted: someone who can write the storage
// but holds no key copies the older backup's backup history file
// (<segment>.<offset>.backup, authentic, encrypted with the site's key)
// over the newer backup's, which would point recovery at the older
// backup's start if anything took it for the newer backup's. Nothing
// does: PostgreSQL recovers from the backup_label restored from the
// control object (which restore checks against the backup's metadata)
// and never asks restore_command for a .backup file, and restore chooses
// and checks WAL by the backup's metadata. The newer backup restores,
// recovery with hoard wal-fetch ends with every row the source has.
func TestRestore_BackupHistoryPlanted(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	src, _, newer := s.twoBackups(t)
	want := tableRows(t, src)
	files, err := filepath.Glob(filepath.Join(s.storeDir, s.name, "xlog", "*.backup"))
	if err != nil || len(files) != 2 {
		t.Fatalf("backup history files: %q %v, want 2", files, err)
	}
	slices.Sort(files)
	st := storage.NewLocal(s.storeDir)
	key := func(p string) string { return s.name + "/xlog/" + filepath.Base(p) }
	_, own := storetest.Read(t, st, key(files[1]))
	archivetest.PlantCopy(t, st, key(files[0]), key(files[1]), func(md storage.Metadata) {
		clear(md)
		maps.Copy(md, own.Metadata)
	})
	pgtest.Chown(t, s.storeDir)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.restoreChoosing(t, dir, newer)
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, c); got != want {
		t.Errorf("restored %s with %s's backup history file over its own: rows %s, want %s", newer, filepath.Base(files[0]), got, want)
	}
	if strings.Contains(c.Log(), ".backup") {
		t.Errorf("recovery asked for a backup history file:\n%s", c.Log())
	}
}
