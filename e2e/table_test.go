package e2e

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// startWithTable starts PostgreSQL 15 archiving into s as the site's
// node, with a table t holding the row 1: the source of the restore
// tests that compare table t's rows.
func (s *site) startWithTable(t *testing.T) *pgtest.Cluster {
	t.Helper()
	src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: s.clusterConf()})
	s.use(src)
	src.Exec(t, "create table t (id int primary key)")
	src.Exec(t, "insert into t values (1)")
	return src
}

// startBackedUp is startWithTable followed by a basebackup, whose name
// it returns with the cluster.
func (s *site) startBackedUp(t *testing.T) (*pgtest.Cluster, string) {
	t.Helper()
	src := s.startWithTable(t)
	s.mustHoard("basebackup", "--fast")
	return src, s.listBackups()[0].Name
}

// restoreChoosing runs hoard restore into dir with args and fails the
// test unless it succeeds having chosen backup (its log names it); it
// returns the summary restore printed.
func (s *site) restoreChoosing(t *testing.T, dir, backup string, args ...string) string {
	t.Helper()
	args = append([]string{"restore", "--target-dir", dir}, args...)
	out, errOut, err := s.hoard(args...)
	if err != nil {
		t.Fatalf("hoard %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	if !strings.Contains(errOut, "backup="+backup) {
		t.Fatalf("hoard %s did not choose %s:\n%s", strings.Join(args, " "), backup, errOut)
	}
	return out
}

// tableRows is c's table t as "count: id,id,...", what a restored cluster
// is compared by.
func tableRows(t testing.TB, c *pgtest.Cluster) string {
	t.Helper()
	return c.QueryString(t, "select count(*)::text || ': ' || string_agg(id::text, ',' order by id) from t")
}

// clusterTime is c's clock now, in UTC, as a --target-time.
func clusterTime(t testing.TB, c *pgtest.Cluster) string {
	t.Helper()
	return c.QueryString(t, `select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)
}
