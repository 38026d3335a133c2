package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// pitrPoints are what the source cluster recorded while writing rows in
// three steps after the basebackup: step n inserts ids (n-1)*100+1 to n*100.
type pitrPoints struct {
	afterStep1 string // a time after step 1 committed and before step 2 did
	xidStep2   string // the xid of step 2's transaction
	lsnStep2   string // an LSN after step 2's commit, before step 3's
}

// TestPITR archives a cluster through hoard wal-push, takes a basebackup
// with hoard basebackup, then restores it for each kind of recovery target
// and checks that the restored cluster holds exactly the rows committed
// before that target.
func TestPITR(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("PG%d", major), func(t *testing.T) { testPITR(t, major) })
	}
}

func testPITR(t *testing.T, major int) {
	s := newSite(t, siteOptions{Encrypt: true, Compression: "zstd"})
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	s.use(src)
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")

	s.mustHoard("basebackup", "--fast")
	if bs := s.listBackups(); len(bs) != 1 {
		t.Fatalf("hoard list: %d backups, want 1: %+v", len(bs), bs)
	}

	src.Exec(t, "create table t (id int primary key, step int not null)")
	src.Exec(t, "insert into t select g, 1 from generate_series(1, 100) g")
	var p pitrPoints
	p.afterStep1 = clusterTime(t, src)
	src.Exec(t, "select pg_create_restore_point('after_step1')")
	time.Sleep(20 * time.Millisecond) // commit timestamps of step 2 fall strictly after afterStep1
	p.xidStep2 = src.QueryString(t, "with ins as (insert into t select g, 2 from generate_series(101, 200) g) select txid_current()::text")
	p.lsnStep2 = src.QueryString(t, "select pg_current_wal_lsn()::text")
	src.Exec(t, "insert into t select g, 3 from generate_series(201, 300) g")
	switchAndWaitArchived(t, src)

	cases := []struct {
		name  string
		args  []string
		steps int // rows of steps 1..steps are visible; -1: table t does not exist yet
	}{
		{"latest", []string{"--archive-mode", "off"}, 3},
		{"time", []string{"--target-time", p.afterStep1}, 1},
		{"name", []string{"--target-name", "after_step1"}, 1},
		{"xid", []string{"--target-xid", p.xidStep2}, 2},
		{"lsn", []string{"--target-lsn", p.lsnStep2}, 2},
		{"immediate", []string{"--target-immediate"}, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(pgtest.TempDir(t), "data")
			s.mustHoard(append([]string{"restore", "--target-dir", dir}, tc.args...)...)
			conf := noArchiving
			if slices.Contains(tc.args, "--archive-mode") {
				conf = nil // hoard restore --archive-mode off must do it
			}
			c := pgtest.StartDataDir(t, major, dir, conf)
			c.WaitRecoveryDone(t, 3*time.Minute)
			if conf == nil {
				if got := c.QueryString(t, "show archive_mode"); got != "off" {
					t.Errorf("restored with --archive-mode off: archive_mode = %s", got)
				}
			}
			checkPgbench(t, c)
			checkSteps(t, c, tc.steps)
			c.Stop(t)
		})
	}
}

// checkPgbench compares the restored pgbench tables with what pgbench -i
// -s 1 creates: they were loaded before the basebackup and never changed.
func checkPgbench(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	got := c.QueryString(t, "select count(*) || '/' || sum(abalance) || '/' || sum(aid) from pgbench_accounts")
	if want := "100000/0/5000050000"; got != want {
		t.Errorf("pgbench_accounts count/sum(abalance)/sum(aid) = %s, want %s", got, want)
	}
}

// checkSteps checks that table t holds exactly the rows of steps 1..steps.
func checkSteps(t *testing.T, c *pgtest.Cluster, steps int) {
	t.Helper()
	exists := c.QueryString(t, "select (to_regclass('public.t') is not null)::text")
	if steps < 0 {
		if exists != "false" {
			t.Errorf("table t exists; it was created after the backup ended")
		}
		return
	}
	if exists != "true" {
		t.Fatalf("table t does not exist; want rows of steps 1..%d", steps)
	}
	got := c.QueryString(t, "select coalesce(string_agg(id || ':' || step, ',' order by id), '') from t")
	var want []string
	for id := 1; id <= steps*100; id++ {
		want = append(want, fmt.Sprintf("%d:%d", id, (id-1)/100+1))
	}
	if w := strings.Join(want, ","); got != w {
		t.Errorf("rows of t differ from steps 1..%d: got %d rows (%.80s...)", steps, strings.Count(got, ",")+1, got)
	}
}
