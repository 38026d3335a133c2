package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRecoveryRefusesPartialAsSegment: the daemon stores copies of the
// segment it is receiving as <segment>.partial, each encrypted with the
// site's key, and deletes the last one once the complete segment is
// stored. Someone who can write the storage but holds no key, and kept an
// early copy, puts it (object and metadata) under the complete segment's
// name. Its first page fits the name, its hash metadata fits its bytes and
// its envelope verifies, so wal-fetch delivered it, and PostgreSQL, which
// finds zeros where the segment's WAL went on, took them as the end of the
// WAL and promoted without the rows after the cut. wal-fetch must refuse
// it (exit 255) so that recovery stops, and hoard verify --full must
// report it. On local storage (the sidecar copied too) and on S3 (MinIO,
// the user metadata copied too).
func TestRecoveryRefusesPartialAsSegment(t *testing.T) {
	t.Run("Local", func(t *testing.T) {
		s := newSite(t, siteOptions{Encrypt: true})
		partialAsSegment(t, s, storage.NewLocal(s.storeDir))
	})
	t.Run("S3", func(t *testing.T) {
		minio := storetest.MinIO(t)
		st, err := storage.Open(context.Background(), minio)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		partialAsSegment(t, newSite(t, siteOptions{Encrypt: true, ObjectStorage: s3Storage(minio)}), st)
	})
}

// partialAsSegment runs TestRecoveryRefusesPartialAsSegment on site s,
// whose objects st writes.
func partialAsSegment(t *testing.T, s *site, st storage.Store) {
	_, seg, want := s.rowsInASegment(t)

	// An early copy of the segment, as the daemon stores it while the
	// segment grows: its first half of WAL, zeros after.
	key := archive.Layout{Prefix: s.name}.WALKey(seg)
	plain := filepath.Join(s.dir, "plain-"+seg)
	s.mustHoard("object", "get", key, "-o", plain)
	data := readFile(t, plain)
	end := len(bytes.TrimRight(data, "\x00"))
	clear(data[end/2:])
	walDir := filepath.Join(s.dir, "partial")
	if err := os.Mkdir(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, walDir)
	s.writeFile(filepath.Join(walDir, seg+".partial"), data)
	s.mustHoard("wal-push", filepath.Join(walDir, seg+".partial"))

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	archivetest.CopyObject(t, st, key+".partial", key)
	if s.storeDir != "" {
		pgtest.Chown(t, s.storeDir)
	}
	out, errOut, verr := s.hoard("verify", "--full")
	if verr == nil || !strings.Contains(out+errOut, seg) || !strings.Contains(out+errOut, "truncated") {
		t.Errorf("hoard verify --full after the copy: %v, want a failure naming %s as truncated:\n%s%s", verr, seg, out, errOut)
	}
	c, err := pgtest.TryStartDataDir(t, 15, dir, noArchiving)
	log := refusedRecovery(t, c, err, countRows(t), want)
	if log != "" && (!strings.Contains(log, "truncated") || !strings.Contains(log, seg)) {
		t.Errorf("recovery failed, but the log does not show wal-fetch refusing %s as truncated:\n%s", seg, log)
	}
}
