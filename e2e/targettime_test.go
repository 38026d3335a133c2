package e2e

import (
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreTargetTimeSubMicrosecond: PostgreSQL keeps commit times in
// microseconds, and recovery_target_time too. A --target-time with more
// digits (as Go programs and their logs print times) must stop where the
// operator's time says: with --target-inclusive=false before the first
// commit at or after it, so a commit in the same microsecond but before
// it is replayed; by default after the last commit at or before it, so
// one in the same microsecond but after it is not. The source runs in
// Asia/Kolkata, and the time is given at +05:30: the zone the operator
// writes decides, not the server's TimeZone.
func TestRestoreTargetTimeSubMicrosecond(t *testing.T) {
	s := newSite(t, siteOptions{})
	conf := maps.Clone(s.clusterConf())
	conf["track_commit_timestamp"] = "on"
	conf["timezone"] = "Asia/Kolkata"
	src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: conf})
	s.use(src)
	src.Exec(t, "create table t (id int primary key)")
	src.Exec(t, "insert into t values (1)")
	s.mustHoard("basebackup", "--fast")
	time.Sleep(20 * time.Millisecond)
	xid := src.QueryString(t, "with ins as (insert into t values (2)) select txid_current()::text")
	var commit time.Time
	src.Scan(t, "select pg_xact_commit_timestamp('"+xid+"'::xid)", &commit)
	if commit.Nanosecond()%1000 != 0 {
		t.Fatalf("commit time %v has nanoseconds", commit)
	}
	time.Sleep(20 * time.Millisecond)
	src.Exec(t, "insert into t values (3)")
	switchAndWaitArchived(t, src)

	kolkata := time.FixedZone("+05:30", 5*3600+1800)
	const layout = "2006-01-02T15:04:05.000000000Z07:00"
	cases := []struct {
		name string
		args []string
		want string
	}{
		// The commit of row 2 is 500ns before the target: it is replayed.
		{"exclusive", []string{"--target-time", commit.Add(500 * time.Nanosecond).In(kolkata).Format(layout), "--target-inclusive=false"}, "2: 1,2"},
		// The commit of row 2 is 500ns after the target: it is not.
		{"inclusive", []string{"--target-time", commit.Add(-500 * time.Nanosecond).In(kolkata).Format(layout)}, "1: 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(pgtest.TempDir(t), "data")
			s.mustHoard(append([]string{"restore", "--target-dir", dir}, tc.args...)...)
			c := pgtest.StartDataDir(t, 15, dir, noArchiving)
			c.WaitRecoveryDone(t, 3*time.Minute)
			if got := tableRows(t, c); got != tc.want {
				t.Errorf("restore %v (row 2 committed at %s): rows %q, want %q",
					tc.args, commit.UTC().Format(time.RFC3339Nano), got, tc.want)
			}
			c.Stop(t)
		})
	}
}
