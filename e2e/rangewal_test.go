package e2e

import (
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// TestRestore_RangeWALFetchedOnce: hoard restore downloads and checks the
// WAL from the backup's start to its end while it writes the data
// directory, and keeps it in pg_wal/hoard-prefetch (restore_prefetch
// 3). PostgreSQL, started on the directory with hoard wal-fetch as its
// restore_command, then recovers every row, and the storage (counted at
// a proxy in front of it) served the backup's start segment to the
// restore and not again to wal-fetch, while it served the segments after
// the range to wal-fetch.
func TestRestore_RangeWALFetchedOnce(t *testing.T) {
	minio := storetest.MinIO(t)
	proxy := newStallProxy(t, minio)
	s := newS3Site(t, proxy.config(minio))
	s.editConfig(func(cfg map[string]any) { cfg["restore_prefetch"] = 3 })
	src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: s.clusterConf()})
	s.use(src)
	src.Exec(t, "create table t (id int primary key)")
	src.Exec(t, "insert into t select generate_series(1, 100)")
	s.mustHoard("basebackup", "--fast")
	for i := 1; i <= 3; i++ {
		src.Exec(t, fmt.Sprintf("insert into t select generate_series(%d, %d)", i*100+1, (i+1)*100))
		switchAndWaitArchived(t, src)
	}
	want := tableRows(t, src)

	// The GETs of each WAL object, by phase: the restore, then
	// recovery. (One download may take more than one GET.)
	var mu sync.Mutex
	gets := map[string]int{}
	proxy.stallOn(func(r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/xlog/") && !r.URL.Query().Has("list-type") {
			mu.Lock()
			gets[path.Base(r.URL.Path)]++
			mu.Unlock()
		}
		return false
	})
	dir := filepath.Join(pgtest.TempDir(t), "data")
	out := s.mustHoard("restore", "--target-dir", dir)
	m := regexp.MustCompile(`WAL is archived from ([0-9A-F]{24}) `).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "1 kept in pg_wal/hoard-prefetch") {
		t.Fatalf("restore's summary names no start segment, or not one segment kept for wal-fetch:\n%s", out)
	}
	start := m[1]
	mu.Lock()
	restored := gets[start]
	clear(gets)
	mu.Unlock()
	if restored == 0 {
		t.Errorf("the restore did not download %s, the backup's start segment", start)
	}
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, c); got != want {
		t.Errorf("restored rows %s, want %s", got, want)
	}
	if !strings.Contains(c.Log(), `restored log file "`+start+`" from archive`) {
		t.Errorf("recovery did not take %s through restore_command:\n%s", start, c.Log())
	}
	mu.Lock()
	defer mu.Unlock()
	if n := gets[start]; n != 0 {
		t.Errorf("recovery's wal-fetch downloaded %s (%d GETs), which the restore had checked and kept: %v", start, n, gets)
	}
	if len(gets) == 0 {
		t.Errorf("recovery downloaded no WAL: the count sees nothing")
	}
}
