package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRecoveryRefusesEarlierCopyOfAccepted: an operator accepted a cut
// segment by name (hoard restore --accept-truncated-wal), and the restore
// read it and said where recovery ends. Someone who can write the storage
// and kept an earlier copy of that segment (the daemon's .partial of it,
// authentic, cut before) puts it in place after the restore. wal-fetch
// refuses it, naming the end the restore accepted, and PostgreSQL stops
// instead of ending recovery earlier than the restore's summary said.
func TestRecoveryRefusesEarlierCopyOfAccepted(t *testing.T) {
	ctx := context.Background()
	s := newSite(t, siteOptions{Encrypt: true})
	_, seg, _ := s.rowsInASegment(t)
	st := storage.NewLocal(s.storeDir)
	// The earlier copy, which the writer keeps aside; then the later one,
	// which the operator accepts.
	key := s.pushCutCopy(t, seg, cutQuarter)
	kept := s.name + "/kept/" + seg
	archivetest.CopyObject(t, st, key+".partial", kept)
	if err := st.Delete(ctx, key+".partial"); err != nil {
		t.Fatal(err)
	}
	s.pushCutCopy(t, seg, cutHalf)
	s.plantCutCopy(t, st, key)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	out := s.mustHoard("restore", "--target-dir", dir, "--accept-truncated-wal", seg)
	summary := regexp.MustCompile(`ACCEPTED TRUNCATED: wal-fetch delivers ` + seg + ` although its WAL ends at LSN (\S+),`).FindStringSubmatch(out)
	if summary == nil {
		t.Fatalf("the restore's summary does not list %s as accepted with where its WAL ends:\n%s", seg, out)
	}
	archivetest.CopyObject(t, st, kept, key)
	pgtest.Chown(t, s.storeDir)

	c, err := pgtest.TryStartDataDir(t, 15, dir, noArchiving)
	if err == nil && waitRecoveryEnd(t, c, 3*time.Minute) {
		t.Fatalf("PostgreSQL promoted through an earlier copy of %s than the one accepted (its WAL ending at %s):\n%s", seg, summary[1], tailLines(c.Log(), 40))
	}
	log := c.Log()
	if err != nil {
		log = err.Error()
	}
	if want := "accepts only a copy whose WAL ends at " + summary[1]; !strings.Contains(log, want) || !strings.Contains(log, seg) {
		t.Errorf("recovery stopped, but the log does not show wal-fetch refusing %s as not the copy accepted (%q):\n%s", seg, want, tailLines(log, 40))
	}
}

// cutQuarter cuts a segment's WAL at a quarter, before cutHalf does.
func cutQuarter(_ *testing.T, _ string, data []byte) int {
	return len(bytes.TrimRight(data, "\x00")) / 4
}
