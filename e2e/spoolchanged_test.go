package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestore_SpooledWALChangedOnDisk: a segment hoard restore checked
// and kept in pg_wal/hoard-prefetch for wal-fetch, whose bytes on disk
// then changed (a failing disk flipped a bit of its checkpoint record) is
// not handed to PostgreSQL: wal-fetch took a spooled segment whose first
// page header and size fit, and PostgreSQL, reading a checkpoint record
// whose CRC fails, stopped ("could not locate a valid checkpoint record").
// wal-fetch downloads the segment again, and recovery restores every row;
// its warning, naming the segment, is in PostgreSQL's log (which takes
// restore_command's stderr): the operator hears of the disk.
func TestRestore_SpooledWALChangedOnDisk(t *testing.T) {
	s, src, proxy := newPrefetchSite(t)
	src.Exec(t, "insert into t select generate_series(1, 100)")
	s.mustHoard("basebackup", "--fast")
	src.Exec(t, "insert into t select generate_series(101, 200)")
	switchAndWaitArchived(t, src)
	want := tableRows(t, src)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	start := restoreKeepingStart(t, s, dir, "kept")
	spooled := filepath.Join(dir, "pg_wal", archive.SpoolDirName, start)
	if _, err := os.Stat(spooled); err != nil {
		t.Fatalf("the backup's start segment is not in the spool: %v", err)
	}
	// The checkpoint record recovery reads first, at backup_label's
	// CHECKPOINT LOCATION: one bit of its body flipped in place.
	label, err := os.ReadFile(filepath.Join(dir, "backup_label"))
	if err != nil {
		t.Fatal(err)
	}
	lm := regexp.MustCompile(`CHECKPOINT LOCATION: ([0-9A-F]+/[0-9A-F]+)`).FindSubmatch(label)
	if lm == nil {
		t.Fatalf("backup_label has no checkpoint location:\n%s", label)
	}
	ckpt, err := pglogrepl.ParseLSN(string(lm[1]))
	if err != nil {
		t.Fatal(err)
	}
	segSize, err := strconv.ParseInt(src.QueryString(t, "select setting from pg_settings where name = 'wal_segment_size'"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, spooled, int64(ckpt)%segSize+40)

	g := countWALGets(proxy)
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, c); got != want {
		t.Errorf("restored rows %s, want %s", got, want)
	}
	if gets := g.take(); gets[start] == 0 {
		t.Errorf("wal-fetch did not download %s again, whose spooled copy changed on disk: %v", start, gets)
	}
	warned := false
	for line := range strings.Lines(c.Log()) {
		warned = warned || strings.Contains(line, "spooled wal segment changed on disk") && strings.Contains(line, start)
	}
	if !warned {
		t.Errorf("PostgreSQL's log holds no warning of wal-fetch naming %s, whose spooled copy changed on disk:\n%s", start, c.Log())
	}
}

// flipByte flips a bit of the byte at off of path, in place.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
