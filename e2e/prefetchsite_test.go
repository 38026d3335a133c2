package e2e

import (
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// newPrefetchSite starts what the tests of restore's WAL spool share: a
// site on MinIO behind a stallProxy, with restore_prefetch 3, and a
// PostgreSQL 15 cluster archiving into it, holding an empty table t.
func newPrefetchSite(t *testing.T) (*site, *pgtest.Cluster, *stallProxy) {
	t.Helper()
	minio := storetest.MinIO(t)
	proxy := newStallProxy(t, minio)
	s := newS3Site(t, proxy.config(minio))
	s.editConfig(func(cfg map[string]any) { cfg["restore_prefetch"] = 3 })
	src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: s.clusterConf()})
	s.use(src)
	src.Exec(t, "create table t (id int primary key)")
	return s, src, proxy
}

// walGets counts the GETs of each WAL object through a stallProxy,
// stalling none. (One download may take more than one GET.)
type walGets struct {
	mu sync.Mutex
	n  map[string]int
}

// countWALGets makes proxy count the GETs of WAL objects in the returned
// walGets.
func countWALGets(proxy *stallProxy) *walGets {
	g := &walGets{n: map[string]int{}}
	proxy.stallOn(func(r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/xlog/") && !r.URL.Query().Has("list-type") {
			g.mu.Lock()
			g.n[path.Base(r.URL.Path)]++
			g.mu.Unlock()
		}
		return false
	})
	return g
}

// take returns the counts so far and starts counting again.
func (g *walGets) take() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.n
	g.n = map[string]int{}
	return n
}

// restoreKeepingStart runs hoard restore into dir and returns the
// backup's start segment, which its summary must say it kept in
// pg_wal/hoard-prefetch (kept: the summary's words for how many).
func restoreKeepingStart(t *testing.T, s *site, dir, kept string) string {
	t.Helper()
	out := s.mustHoard("restore", "--target-dir", dir)
	m := regexp.MustCompile(`WAL is archived from ([0-9A-F]{24}) `).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, kept+" in pg_wal/hoard-prefetch") {
		t.Fatalf("restore's summary names no start segment, or not %q in pg_wal/hoard-prefetch:\n%s", kept, out)
	}
	return m[1]
}
