package e2e

import (
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
