package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRecoveryAcceptsTruncatedByName: a segment wal-fetch refuses as
// truncated (TestRecoveryRefusesPartialAsSegment's cut copy) can be a
// legitimate archive's (a standby's end-of-timeline segment, PGHoard's
// walreceiver mode). The refusal names the way forward, and an operator
// who accepts the segment by name (hoard restore --accept-truncated-wal)
// gets a recovery that ends at the copy's end, with the rows committed
// before the cut, and a warning naming the segment and where its WAL
// ends.
func TestRecoveryAcceptsTruncatedByName(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	_, seg, _ := s.rowsInASegment(t)
	key := s.pushCutCopy(t, seg, cutHalf)
	s.plantCutCopy(t, storage.NewLocal(s.storeDir), key)
	dir := filepath.Join(pgtest.TempDir(t), "data")

	// A name that would accept nothing is refused before anything is
	// written: not in the archive (another timeline's name), or stored
	// and delivered whole (the segment after the cut copy).
	// (A fresh cluster's WAL is far from the end of a log file: adding
	// one to the name's last field is the next segment's name.)
	no, err := strconv.ParseUint(seg[16:], 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	next := fmt.Sprintf("%s%08X", seg[:16], no+1)
	for _, name := range []string{"00000002" + seg[8:], next} {
		_, errOut, err := s.hoard("restore", "--target-dir", dir, "--accept-truncated-wal", seg, "--accept-truncated-wal", name)
		if got := exitCode(err); got != 2 || !strings.Contains(errOut, name) {
			t.Errorf("hoard restore --accept-truncated-wal %s: exit %d, want 2 naming it:\n%s", name, got, errOut)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("hoard restore --accept-truncated-wal %s wrote %s (%v), want nothing written", name, dir, err)
		}
	}
	out := s.mustHoard("restore", "--target-dir", dir, "--accept-truncated-wal", seg)
	summary := regexp.MustCompile(`ACCEPTED TRUNCATED: wal-fetch delivers ` + seg + ` although its WAL ends at LSN (\S+),`).FindStringSubmatch(out)
	if summary == nil {
		t.Fatalf("the restore's summary does not list %s as accepted with where its WAL ends:\n%s", seg, out)
	}

	// Without the flag: refused (exit 255), and the refusal says how to
	// accept it and what that costs.
	dest := filepath.Join(s.dir, "fetched", "pg_wal", seg)
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, filepath.Join(s.dir, "fetched"))
	_, errOut, err := s.hoard("wal-fetch", seg, dest)
	if got := exitCode(err); got != 255 || !strings.Contains(errOut, "--accept-truncated "+seg) || !strings.Contains(errOut, "not restored") {
		t.Errorf("hoard wal-fetch %s of the cut copy: exit %d, want 255 with the flag that accepts it and what accepting costs:\n%s", seg, got, errOut)
	}

	// With it (hoard restore wrote it into restore_command): recovery
	// ends at the copy's end. The rows 2 to 1000 were committed after the
	// cut: only the backup's row is restored.
	c, err := pgtest.TryStartDataDir(t, 15, dir, noArchiving)
	if err != nil {
		t.Fatalf("start the restored cluster: %v", err)
	}
	if !waitRecoveryEnd(t, c, 3*time.Minute) {
		t.Fatalf("recovery did not end with the accepted segment:\n%s", c.Log())
	}
	if got, want := countRows(t)(c), "1"; got != want {
		t.Errorf("rows after recovery through the accepted cut copy: %s, want %s (those committed before the cut)", got, want)
	}
	// Where hoard says the WAL ends is where PostgreSQL (an oracle apart
	// from hoard's walk) found it end: its log names the invalid record.
	log := c.Log()
	m := regexp.MustCompile(`(?m)^.*accepted.*` + seg + `.*wal_end=(\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("the server log shows no warning naming %s as accepted and where its WAL ends:\n%s", seg, tailLines(log, 40))
	}
	if m[1] != summary[1] {
		t.Errorf("the restore's summary says %s's WAL ends at %s, wal-fetch at %s", seg, summary[1], m[1])
	}
	if !regexp.MustCompile(`(?m)^.* LOG: .* at ` + regexp.QuoteMeta(m[1]) + `\b`).MatchString(log) {
		t.Errorf("hoard says %s's WAL ends at %s; PostgreSQL's log names no invalid record there:\n%s", seg, m[1], tailLines(log, 40))
	}
}
