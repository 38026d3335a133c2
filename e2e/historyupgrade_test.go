package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/wal"
)

// TestUpgradedTimeline1_History: the shape a pg_upgrade into the same
// site leaves when the old cluster had failed over. The old cluster
// reaches timeline 2 (oldOnTimeline2: 00000002.history is stored bound
// to its system); then a cluster of a new system identifier on timeline 1
// (what pg_upgrade of PostgreSQL 15 gives; here a new initdb, not
// archiving: its timeline 1 segments would collide with the old one's)
// is the site's node. hoard check fails naming the old system's history
// file on timeline 2, the node's timeline 1 and system, and the prefix to
// set; wal-fetch of 00000002.history into the new cluster's pg_wal (what
// a standby's recovery to the latest timeline asks for) treats it as
// absent (exit 1) with a warning saying the same, as the new system has
// no WAL on timeline 2 or later, and delivers nothing. Once the archive
// holds the new system's WAL on timeline 3, wal-fetch refuses it (exit
// 255), naming that WAL: the old system's file stands where the new
// one's own 00000002.history would be. In a site without keys the same
// holds, by the system the history file's metadata claims (its
// writer's), and the messages say that it is a claim.
func TestUpgradedTimeline1_History(t *testing.T) {
	testio.WithAndWithoutKeys(t, testUpgradedTimeline1History)
}

func testUpgradedTimeline1History(t *testing.T, keys bool) {
	a := newSite(t, siteOptions{Encrypt: keys})
	sysOld := a.oldOnTimeline2(t)

	nc := pgtest.Start(t, pgtest.Options{Major: 15, Conf: noArchiving})
	a.use(nc)
	sysNew, err := archive.ClusterSystemID(nc.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if tli, err := archive.ClusterTimeline(nc.DataDir); err != nil || tli != 1 || sysNew == sysOld {
		t.Fatalf("new cluster: timeline %d (%v), system %d (old %d); want timeline 1 and another system", tli, err, sysNew, sysOld)
	}
	wantReplayStart(t, nc)
	claim := "by its metadata's claim (not authenticated: this site has no keys)"
	errOut := a.wantUpgradeRefusals(t, nc, sysOld, sysNew)
	if !keys && !strings.Contains(errOut, claim) {
		t.Errorf("wal-fetch's warning in a site without keys does not say %q:\n%s", claim, errOut)
	}

	// WAL of the new system on timeline 3 (its first segment, relabelled
	// to timeline 3: what a cluster that reached it would have stored):
	// the old 00000002.history stands where its own was, and is refused.
	own := a.pushRelabelled(t, nc, 3)
	errOut = a.wantHistoryFetch(t, nc, 255, "timeline/00000002.history", strconv.FormatUint(sysOld, 10), strconv.FormatUint(sysNew, 10),
		"after pg_upgrade", "backup_sites.<site>.prefix", own)
	if !keys && !strings.Contains(errOut, claim) {
		t.Errorf("wal-fetch's refusal in a site without keys does not say %q:\n%s", claim, errOut)
	}
}

// wantReplayStart checks that archive.ClusterReplayStart, wal-fetch's
// bound on where c's recovery starts, reads c's pg_control as the server
// reports it: its segment size, and its latest checkpoint's REDO location
// or a later one (a checkpoint may come between the query and the read),
// not beyond the WAL written after the read.
func wantReplayStart(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	row := c.QueryRow(t, "SELECT redo_lsn::text, (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')"+
		" FROM pg_control_checkpoint()")
	redo, err := pglogrepl.ParseLSN(row[0].(string))
	if err != nil {
		t.Fatal(err)
	}
	segSize, err := strconv.ParseUint(row[1].(string), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.ClusterReplayStart(c.DataDir)
	end, perr := pglogrepl.ParseLSN(c.QueryRow(t, "SELECT pg_current_wal_insert_lsn()::text")[0].(string))
	if perr != nil {
		t.Fatal(perr)
	}
	if err != nil || r.LSN < redo || r.LSN > end || r.SegmentSize != segSize {
		t.Errorf("ClusterReplayStart = %+v, %v; want REDO %s or later, up to %s, segment size %d", r, err, redo, end, segSize)
	}
}

// wantUpgradeRefusals checks what nc, the site's node, a cluster of
// system sysNew on timeline 1, gets from s, which holds 00000002.history
// bound to (without keys: claiming) sysOld and no WAL of sysNew on
// timeline 2 or later: hoard check exits 1 with the line naming both
// systems and the prefix to set, and wal-fetch of 00000002.history into
// nc's pg_wal (what a standby's recovery to the latest timeline asks for)
// exits 1, as for a file not archived, with a warning saying the same,
// and delivers nothing. It returns wal-fetch's standard error.
func (s *site) wantUpgradeRefusals(t *testing.T, nc *pgtest.Cluster, sysOld, sysNew uint64) string {
	t.Helper()
	old10, new10 := strconv.FormatUint(sysOld, 10), strconv.FormatUint(sysNew, 10)

	out, errOut, err := s.hoard("check")
	t.Logf("hoard check:\n%s%s", out, errOut)
	if code := exitCode(err); code != 1 {
		t.Errorf("hoard check: exit %d, want 1", code)
	}
	wantCheckLines(t, out, "FAILED   postgresql node 0: the site holds timeline history files of database system "+old10+
		" on timeline 2, above timeline 1 of this cluster (system "+new10+")")
	if !strings.Contains(out, "backup_sites.<site>.prefix") {
		t.Errorf("hoard check does not name the prefix to set:\n%s", out)
	}
	return s.wantHistoryFetch(t, nc, 1, "timeline/00000002.history", old10, new10, "treated as absent", "pg_upgrade",
		"backup_sites.<site>.prefix")
}

// wantHistoryFetch runs wal-fetch of 00000002.history into nc's pg_wal
// and wants exit code (1: treated as absent, 255: refused), a message
// saying each of want, and nothing delivered. It returns wal-fetch's
// standard error.
func (s *site) wantHistoryFetch(t *testing.T, nc *pgtest.Cluster, code int, want ...string) string {
	t.Helper()
	dest := filepath.Join(nc.DataDir, "pg_wal", "RECOVERYHISTORY")
	_, errOut, err := s.hoard("wal-fetch", "00000002.history", dest)
	if got := exitCode(err); got != code {
		t.Errorf("wal-fetch 00000002.history for the new cluster: exit %d, want %d\n%s", got, code, errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("wal-fetch 00000002.history for the new cluster does not say %s:\n%s", w, errOut)
		}
	}
	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Errorf("wal-fetch did not deliver 00000002.history but left %s: %v", dest, err)
	}
	return errOut
}

// pushRelabelled stores, with hoard wal-push, c's first WAL segment with
// its name's and first page's timeline set to tli, and returns its key.
func (s *site) pushRelabelled(t *testing.T, c *pgtest.Cluster, tli uint32) string {
	t.Helper()
	first := "000000010000000000000001"
	data := readFile(t, filepath.Join(c.DataDir, "pg_wal", first))
	h, err := wal.DecodePageHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	h.Timeline = tli
	copy(data, h.Encode(nil))
	name := fmt.Sprintf("%08X", tli) + first[8:]
	path := filepath.Join(pgtest.TempDir(t), name)
	s.writeFile(path, data)
	s.mustHoard("wal-push", path)
	return s.name + "/xlog/" + name
}
