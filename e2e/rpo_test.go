package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// partialEnd returns where the WAL of segment's stored .partial ends (0
// when none is stored), from its partial-data-size metadata.
func (s *streamSite) partialEnd(segment string, segSize uint64) pglogrepl.LSN {
	s.t.Helper()
	obj, err := s.store.Stat(context.Background(), s.name+"/xlog/"+segment+".partial")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(obj.Metadata[archive.MetaPartialDataSize], 10, 64)
	if err != nil {
		s.t.Fatalf("%s.partial: %s %q", segment, archive.MetaPartialDataSize, obj.Metadata[archive.MetaPartialDataSize])
	}
	log, _ := strconv.ParseUint(segment[8:16], 16, 32)
	no, _ := strconv.ParseUint(segment[16:24], 16, 32)
	return pglogrepl.LSN(log<<32 + no*segSize + n)
}

// waitStoredThrough waits until the archive holds the WAL of c up to
// lsn: the segment holding it complete, or its .partial reaching it. It
// fails when a stored .partial ever holds less than before (a copy going
// backwards), and returns the segment.
func (s *streamSite) waitStoredThrough(d *daemonProc, c *pgtest.Cluster, lsn string, seen *pglogrepl.LSN) string {
	s.t.Helper()
	seg := c.QueryString(s.t, "select pg_walfile_name($1::pg_lsn)", lsn)
	want, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		s.t.Fatal(err)
	}
	d.waitFor(lsn+" stored (segment "+seg+" or its .partial)", 2*time.Minute, func() bool {
		if s.stored(seg) {
			return true
		}
		end := s.partialEnd(seg, 1<<20)
		if end != 0 && end < *seen {
			s.t.Fatalf("%s.partial went backwards: %s after %s", seg, end, *seen)
		}
		*seen = max(*seen, end)
		return end >= want
	})
	return seg
}

// lostQuietPrimary is the scenario of the tests below: the loss of a
// quiet primary streamed by hoard daemon into MinIO, with a .partial copy
// stored every second.
type lostQuietPrimary struct {
	s     *streamSite
	major int
	// seg is the segment both rows are in, stored only as a .partial.
	seg string
	// between is a time after the commit of row 1 and before row 2's.
	between string
	// lsn2 is the server's WAL end after row 2.
	lsn2 string
	// want is the rows the primary committed.
	want string
}

// loseQuietPrimary commits two rows a few seconds apart into table rpo,
// each far from filling a segment, then the primary crashes (SIGKILL) and
// the daemon stops. The archive's newest WAL is the .partial copy the
// daemon stored every second. The daemon is also killed with SIGKILL
// between two copies: its restarted copies must never replace a longer
// one with a shorter one.
func loseQuietPrimary(t *testing.T) lostQuietPrimary {
	t.Helper()
	s := newMinIOStreamSite(t)
	s.setSiteKey("wal_partial_upload_interval", 1)
	src := s.startSource(pgtest.Options{})

	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, true)
	var seen pglogrepl.LSN

	src.Exec(t, "create table rpo (id int, at timestamptz default clock_timestamp())")
	src.Exec(t, "insert into rpo (id) values (1)")
	lsn1 := src.QueryString(t, "select pg_current_wal_lsn()::text")
	seg := s.waitStoredThrough(d, src, lsn1, &seen)

	// SIGKILL between copies; the restarted daemon streams the segment
	// again from its start, and its first copies hold less than the
	// stored one.
	d.stop(syscall.SIGKILL, 10*time.Second)
	d = s.startDaemon()
	between := src.QueryString(t, "select (clock_timestamp() + interval '500 milliseconds')::text")
	time.Sleep(1500 * time.Millisecond)
	src.Exec(t, "insert into rpo (id) values (2)")
	lsn2 := src.QueryString(t, "select pg_current_wal_lsn()::text")
	if seg2 := s.waitStoredThrough(d, src, lsn2, &seen); seg2 != seg || s.stored(seg) {
		t.Fatalf("rows in %s and %s (complete: %v): the test needs both in one segment stored as a .partial only", seg, seg2, s.stored(seg))
	}
	want := rowsOfRPO(t, src)

	// The primary is lost; the daemon stops after it.
	src.Kill(t)
	if code := d.stop(syscall.SIGTERM, 90*time.Second); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}
	if s.stored(seg) {
		t.Fatalf("%s stored complete: the test needs the archive to end in its .partial", seg)
	}
	return lostQuietPrimary{s: s, major: src.Major, seg: seg, between: between, lsn2: lsn2, want: want}
}

// TestDaemonPartialTail: after the loss of a quiet primary
// (loseQuietPrimary), a restore to the end of the archive must recover
// both rows from the newest .partial, and a restore to a time between
// them only the first.
func TestDaemonPartialTail(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	l := loseQuietPrimary(t)
	s, major, seg, between, lsn2, want := l.s, l.major, l.seg, l.between, l.lsn2, l.want

	// What the archive says about its end.
	list := s.mustHoard("list")
	if !strings.Contains(list, "Stored WAL ends at LSN") || !strings.Contains(list, seg+".partial") {
		t.Errorf("hoard list does not name the .partial end:\n%s", list)
	}
	rep := s.verifyReach()
	if rep.WALEnd == nil || !rep.WALEnd.Partial || rep.WALEnd.File != seg+".partial" || lsnOf(t, rep.WALEnd.LSN) < lsnOf(t, lsn2) {
		t.Errorf("verify --json wal_end %+v, want %s.partial reaching %s", rep.WALEnd, seg, lsn2)
	}
	if len(rep.Backups) == 0 || rep.Backups[0].Reach != seg+".partial" || lsnOf(t, rep.Backups[0].ReachLSN) < lsnOf(t, lsn2) {
		t.Errorf("verify --json backups %+v, want the reach in %s.partial past %s", rep.Backups, seg, lsn2)
	}

	// A restore to the end of the archive recovers both rows.
	dir := filepath.Join(pgtest.TempDir(t), "data")
	restored := s.mustHoard("restore", "--target-dir", dir)
	if !strings.Contains(restored, seg+".partial") {
		t.Errorf("restore does not say the archive ends in %s.partial:\n%s", seg, restored)
	}
	c := pgtest.StartDataDir(t, major, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := rowsOfRPO(t, c); got != want {
		t.Errorf("restored cluster has %s, the primary committed %s", got, want)
	}
	c.Stop(t)

	// A target time between the rows, inside the .partial: the first only.
	dir = filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir, "--target-time", between)
	c = pgtest.StartDataDir(t, major, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select string_agg(id::text, ',' order by id) from rpo"); got != "1" {
		t.Errorf("restored to %s: rows %s, want 1", between, got)
	}
}

// reachReport is the part of `hoard verify --json` about how far the
// stored WAL reaches.
type reachReport struct {
	Backups []struct {
		Name     string `json:"name"`
		Status   string `json:"status"`
		Reach    string `json:"reach_wal_segment"`
		ReachLSN string `json:"reach_lsn"`
	} `json:"backups"`
	WALEnd *struct {
		File    string `json:"file"`
		Partial bool   `json:"partial"`
		LSN     string `json:"lsn"`
	} `json:"wal_end"`
}

// verifyReach runs hoard verify --json and returns its report, whatever
// its exit.
func (s *streamSite) verifyReach() reachReport {
	s.t.Helper()
	rep, _, _ := s.verifyReachExit()
	return rep
}

// verifyReachExit runs hoard verify --json and returns its report, its
// output and how it exited.
func (s *streamSite) verifyReachExit() (reachReport, string, error) {
	s.t.Helper()
	out, _, err := s.hoard("verify", "--json")
	var rep reachReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		s.t.Fatalf("verify --json: %v\n%s", jerr, out)
	}
	return rep, out, err
}

// rowsOfRPO lists the ids of table rpo.
func rowsOfRPO(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	return c.QueryString(t, "select coalesce(string_agg(id::text, ',' order by id), '-') from rpo")
}

func lsnOf(t *testing.T, s string) pglogrepl.LSN {
	t.Helper()
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatalf("LSN %q: %v", s, err)
	}
	return l
}
