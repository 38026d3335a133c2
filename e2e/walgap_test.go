package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreWALGap deletes one archived segment after a backup, with
// later WAL still stored. A restore to the end of the archive must refuse,
// naming the missing segment and the LSN recovery would reach, and touch
// nothing; with --stop-at-gap it restores, says where recovery stops, and
// the restored cluster holds exactly the rows written before the gap.
func TestRestoreWALGap(t *testing.T) {
	onMajors(t, testRestoreWALGap)
}

func testRestoreWALGap(t *testing.T, major int) {
	s := newSite(t, siteOptions{})
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	s.use(src)
	src.Exec(t, "create table t (id int primary key)")
	s.mustHoard("basebackup", "--fast")
	rows := func(c *pgtest.Cluster) string {
		return c.QueryString(t, "select count(*)::text || ': ' || coalesce(string_agg(id::text, ',' order by id), '-') from t")
	}
	var segs []string
	var before string
	for i := 1; i <= 3; i++ {
		src.Exec(t, "insert into t values ("+strconv.Itoa(i)+")")
		segs = append(segs, switchAndWaitArchived(t, src))
		if i == 1 {
			before = rows(src)
		}
	}
	gap := segs[1]
	for _, f := range []string{gap, gap + ".metadata"} {
		if err := os.Remove(filepath.Join(s.storeDir, s.name, "xlog", f)); err != nil {
			t.Fatal(err)
		}
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, errOut, err := s.hoard("restore", "--target-dir", dir)
	if code := exitCode(err); code != 1 {
		t.Fatalf("restore across a WAL gap: exit %d, want 1\n%s", code, errOut)
	}
	for _, want := range []string{gap + " missing", segs[2] + " and later stored", "recovery stops at LSN", "--stop-at-gap"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("restore error does not say %q:\n%s", want, errOut)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("refused restore touched %s (stat: %v)", dir, err)
	}

	out := s.mustHoard("restore", "--target-dir", dir, "--stop-at-gap")
	if !strings.Contains(out, "WAL GAP: recovery will stop at LSN") || !strings.Contains(out, gap) {
		t.Errorf("restore --stop-at-gap summary does not say where recovery stops:\n%s", out)
	}
	restored := pgtest.StartDataDir(t, major, dir, noArchiving)
	restored.WaitRecoveryDone(t, 3*time.Minute)
	if got := rows(restored); got != before {
		t.Errorf("restored rows %q, want %q (the rows before the gap)", got, before)
	}
}

// TestRestoreWALGapDamaged: as TestRestoreWALGap, but the gap's segment
// is not deleted: in the site's local store a FIFO stands under its name,
// its .metadata sidecar kept. The gap and the refusal are the same; the
// refusal and the summary of the restore --stop-at-gap accepts name the
// object as stored damaged with what is there, where the summary called
// it missing.
func TestRestoreWALGapDamaged(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, _ := s.startBackedUp(t)
	var segs []string
	for i := 2; i <= 4; i++ {
		src.Exec(t, "insert into t values ("+strconv.Itoa(i)+")")
		segs = append(segs, switchAndWaitArchived(t, src))
	}
	src.Stop(t)
	gap := segs[1]
	key := s.name + "/xlog/" + gap
	p := filepath.Join(s.storeDir, filepath.FromSlash(key))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, errOut, err := s.hoard("restore", "--target-dir", dir)
	if code := exitCode(err); code != 1 {
		t.Fatalf("restore across a WAL gap: exit %d, want 1\n%s", code, errOut)
	}
	for _, want := range []string{key + " is stored damaged", "is a FIFO", "--stop-at-gap"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("restore error does not say %q:\n%s", want, errOut)
		}
	}
	out := s.mustHoard("restore", "--target-dir", dir, "--stop-at-gap")
	for _, want := range []string{"WAL GAP: recovery will stop at LSN", gap + " is stored damaged", "STORED DAMAGED: WAL segment " + key + " is stored damaged", "is a FIFO"} {
		if !strings.Contains(out, want) {
			t.Errorf("restore --stop-at-gap summary does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "missing") {
		t.Errorf("restore --stop-at-gap summary calls the stored damaged segment missing:\n%s", out)
	}
}
