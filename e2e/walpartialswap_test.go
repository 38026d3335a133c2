package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
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
// the user metadata copied too), with the copy cut in the middle of the
// segment; and on local storage with a full segment's copy cut inside its
// last page, in a record that ends in the segment (LastPage: on main
// PostgreSQL 15 promoted with 1 row of 201000).
func TestRecoveryRefusesPartialAsSegment(t *testing.T) {
	t.Run("Local", func(t *testing.T) {
		s := newSite(t, siteOptions{Encrypt: true})
		partialAsSegment(t, s, storage.NewLocal(s.storeDir), s.rowsInASegment, cutHalf)
	})
	t.Run("S3", func(t *testing.T) {
		minio := storetest.MinIO(t)
		st, err := storage.Open(context.Background(), minio)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		s := newSite(t, siteOptions{Encrypt: true, ObjectStorage: s3Storage(minio)})
		partialAsSegment(t, s, st, s.rowsInASegment, cutHalf)
	})
	t.Run("LastPage", func(t *testing.T) {
		s := newSite(t, siteOptions{Encrypt: true})
		partialAsSegment(t, s, storage.NewLocal(s.storeDir), s.rowsOverASegment, cutInLastPage)
	})
}

// partialAsSegment runs TestRecoveryRefusesPartialAsSegment on site s,
// whose objects st writes: rows writes the WAL and returns the segment
// to cut and the rows a full recovery gives; cut returns where the early
// copy of the segment's plain bytes ends.
func partialAsSegment(t *testing.T, s *site, st storage.Store, rows func(*testing.T) (backup, seg, want string), cut func(t *testing.T, seg string, data []byte) int) {
	_, seg, want := rows(t)
	key := s.pushCutCopy(t, seg, cut)
	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	s.plantCutCopy(t, st, key)
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

// pushCutCopy stores an early copy of segment seg, as the daemon stores
// it while the segment grows: its WAL up to where cut says, zeros after,
// as the segment's .partial. It returns the segment's key.
func (s *site) pushCutCopy(t *testing.T, seg string, cut func(t *testing.T, seg string, data []byte) int) string {
	t.Helper()
	key := archive.Layout{Prefix: s.name}.WALKey(seg)
	plain := filepath.Join(s.dir, "plain-"+seg)
	if err := os.Remove(plain); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	s.mustHoard("object", "get", key, "-o", plain)
	data := readFile(t, plain)
	clear(data[cut(t, seg, data):])
	walDir := filepath.Join(s.dir, "partial")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, walDir)
	s.writeFile(filepath.Join(walDir, seg+".partial"), data)
	s.mustHoard("wal-push", filepath.Join(walDir, seg+".partial"))
	return key
}

// plantCutCopy copies the .partial pushCutCopy stored (object and
// metadata) under the complete segment's key, as someone who can write
// the storage but holds no key can.
func (s *site) plantCutCopy(t *testing.T, st storage.Store, key string) {
	t.Helper()
	archivetest.CopyObject(t, st, key+".partial", key)
	if s.storeDir != "" {
		pgtest.Chown(t, s.storeDir)
	}
}

// cutHalf cuts a segment's WAL in the middle.
func cutHalf(_ *testing.T, _ string, data []byte) int { return len(bytes.TrimRight(data, "\x00")) / 2 }

// rowsOverASegment writes, after a backup, rows whose WAL fills a
// segment and goes on in the next, then more rows in a transaction of
// their own; it returns the backup, that full segment (no WAL switch in
// it) and the rows a recovery to the end gives.
func (s *site) rowsOverASegment(t *testing.T) (backup, seg, want string) {
	t.Helper()
	src, backup := s.startBackedUp(t)
	switchAndWaitArchived(t, src)
	src.Exec(t, "insert into t values (2)")
	seg = src.QueryString(t, "select pg_walfile_name(pg_current_wal_insert_lsn())")
	src.Exec(t, "insert into t select generate_series(3, 200000)")
	if now := src.QueryString(t, "select pg_walfile_name(pg_current_wal_insert_lsn())"); now <= seg {
		t.Fatalf("WAL still in %s after 200000 rows, want it past %s", now, seg)
	}
	src.Exec(t, "insert into t select generate_series(200001, 201000)")
	switchAndWaitArchived(t, src)
	want = countRows(t)(src)
	src.Stop(t)
	return backup, seg, want
}

// walRecord is a line of pg_waldump's: where a record starts and its
// length.
var walRecord = regexp.MustCompile(`len \(rec/tot\): *\d+/ *(\d+), tx: *\d+, lsn: ([0-9A-F]+)/([0-9A-F]+),`)

// cutInLastPage returns a position in the middle of the last record that
// starts in the last page of data, the whole segment seg, and ends in it, as
// pg_waldump (Debian's PostgreSQL 15, an oracle apart from hoard's own
// walk) lists the records: a cut there loses WAL that a record ending in
// the segment holds.
func cutInLastPage(t *testing.T, seg string, data []byte) int {
	t.Helper()
	dir := t.TempDir()
	h, err := wal.DecodePageHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, seg), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// pg_waldump fails at the end, where the last record goes on in the
	// next segment, which is not there: the records before it are listed.
	out, _ := exec.Command(pgtest.Tool(t, "pg_waldump"), "--path", dir, seg).Output()
	size, last := uint64(len(data)), uint64(len(data))-uint64(h.BlockSize)
	cut := -1
	for _, m := range walRecord.FindAllStringSubmatch(string(out), -1) {
		tot, _ := strconv.ParseUint(m[1], 10, 32)
		hi, _ := strconv.ParseUint(m[2], 16, 32)
		lo, _ := strconv.ParseUint(m[3], 16, 32)
		off := (hi<<32 | lo) % size
		if off >= last && off+tot <= size {
			cut = int(off + tot/2)
		}
	}
	if cut < 0 {
		t.Fatalf("pg_waldump lists no record that starts and ends in the last page of %s:\n%s", seg, tailLines(string(out), 20))
	}
	return cut
}
