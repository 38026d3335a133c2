package e2e

import (
	"os"
	"path/filepath"
	"regexp"
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
	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir, "--accept-truncated-wal", seg)
	s.plantCutCopy(t, storage.NewLocal(s.storeDir), key)

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
	if !regexp.MustCompile(`(?m)^.* LOG: .* at ` + regexp.QuoteMeta(m[1]) + `\b`).MatchString(log) {
		t.Errorf("hoard says %s's WAL ends at %s; PostgreSQL's log names no invalid record there:\n%s", seg, m[1], tailLines(log, 40))
	}
}
