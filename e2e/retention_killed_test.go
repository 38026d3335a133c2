package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRetention_KilledMidDelete kills hoard retention with SIGKILL while
// MinIO holds its deletes, archive.RetentionDeletes of them in flight at
// once: in the middle of the WAL (the two older of three backups
// deleted), then, two backups later, in the middle of the oldest
// backup's chunks. After each kill the site lists only whole backups
// (hoard verify --full passes: every listed backup's chunks and WAL
// decode), and a restore of the newest backup recovers every row. The
// next run finishes the job and leaves the site whole: the WAL the first
// kill left, the backup the policy no longer keeps after the second;
// what that one leaves, the killed run's chunk folder (no main object,
// written in the last day), is the orphan sweep's after
// archive.OrphanMinAge, as it was when deletes ran one at a time.
func TestRetention_KilledMidDelete(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hoard against PostgreSQL and MinIO")
	}
	minio := storetest.MinIO(t)
	proxy := newStallProxy(t, minio)
	s := newSite(t, siteOptions{Encrypt: true, ChunkSize: 64 << 10, ObjectStorage: s3Storage(proxy.config(minio)),
		Site: map[string]any{"basebackup_count": 20}})
	src := s.startWithTable(t)
	row := 1
	// backups takes n backups, each followed by a row and WAL switches,
	// and returns the site's backups.
	backups := func(n int) []backupJSON {
		for range n {
			s.mustHoard("basebackup", "--fast")
			row++
			src.Exec(t, fmt.Sprintf("insert into t values (%d)", row))
			for range 8 {
				switchAndWaitArchived(t, src)
			}
		}
		return s.listBackups()
	}

	direct, err := storage.Open(context.Background(), minio)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	count := func(folder string) int {
		n := 0
		if err := direct.List(context.Background(), s.name+"/"+folder+"/", func(storage.Object) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	chunksOf := func(b backupJSON) int { return count(archive.BasebackupChunkDir + "/" + b.Name) }
	// deletesOf holds every DELETE of a key containing part from the
	// after+1-th on: the run is then killed with those in flight. The
	// first one held waits a little before it says so (the proxy takes
	// no other request meanwhile), so that the deletes passed before it
	// reach the server rather than be cut by the kill.
	deletesOf := func(part string, after int) func(*http.Request) bool {
		var mu sync.Mutex
		n := 0
		return func(r *http.Request) bool {
			if r.Method != http.MethodDelete || !strings.Contains(r.URL.Path, part) {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			n++
			if n == after+1 {
				time.Sleep(time.Second)
			}
			return n > after
		}
	}
	kill := func(t *testing.T, stall func(*http.Request) bool) {
		t.Helper()
		proxy.stallOn(stall)
		code, stderr := s.interrupt(proxy, syscall.SIGKILL, "retention")
		proxy.stallOn(nil)
		if code == 0 {
			t.Fatalf("hoard retention killed with SIGKILL exited 0:\n%s", stderr)
		}
	}
	// wholeSite checks that the site lists the backups names, passes
	// hoard verify --full, and restores the newest with every row.
	wholeSite := func(t *testing.T, names ...string) {
		t.Helper()
		var got []string
		for _, b := range s.listBackups() {
			got = append(got, b.Name)
		}
		if strings.Join(got, " ") != strings.Join(names, " ") {
			t.Fatalf("backups listed: %v, want %v", got, names)
		}
		if out, errOut, err := s.hoard("verify", "--full"); err != nil {
			t.Fatalf("verify --full: %v\n%s\n%s", err, out, errOut)
		}
		want := tableRows(t, src)
		dir := filepath.Join(pgtest.TempDir(t), "data")
		s.mustHoard("restore", "--target-dir", dir)
		restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
		restored.WaitRecoveryDone(t, 3*time.Minute)
		if got := tableRows(t, restored); got != want {
			t.Errorf("restored rows %q, want %q", got, want)
		}
		restored.Stop(t)
	}

	bs := backups(3)
	s.setSiteKey("basebackup_count", 1)

	t.Run("MidWAL", func(t *testing.T) {
		wal0 := count("xlog")
		kill(t, deletesOf("/xlog/", 4))
		left := count("xlog")
		t.Logf("killed: %d of %d WAL files left", left, wal0)
		if left == wal0 {
			t.Fatalf("the kill came before the WAL's deletion: all %d WAL files left", wal0)
		}
		for _, b := range bs[:2] {
			if n := chunksOf(b); n != 0 {
				t.Errorf("%d chunks of deleted backup %s left when the WAL's deletion started", n, b.Name)
			}
		}
		wholeSite(t, bs[2].Name)

		// The next run deletes the WAL the killed one left.
		s.mustHoard("retention")
		if out := s.mustHoard("retention", "--dry-run"); !strings.Contains(out, "Nothing to delete.") {
			t.Errorf("the run after the killed one left something to delete:\n%s", out)
		}
		t.Logf("%d WAL files after the next run", count("xlog"))
		wholeSite(t, bs[2].Name)
	})

	t.Run("MidChunks", func(t *testing.T) {
		s.setSiteKey("basebackup_count", 20)
		bs = backups(2)
		s.setSiteKey("basebackup_count", 1)
		if len(bs) != 3 {
			t.Fatalf("%d backups, want 3", len(bs))
		}
		chunks0, wal0 := chunksOf(bs[0]), count("xlog")
		if chunks0 < 3*archive.RetentionDeletes {
			t.Fatalf("the oldest backup has %d chunks, want several times %d", chunks0, archive.RetentionDeletes)
		}
		kill(t, deletesOf("/"+archive.BasebackupChunkDir+"/"+bs[0].Name+"/", archive.RetentionDeletes))
		left := chunksOf(bs[0])
		t.Logf("killed: %d of %d chunks of %s left", left, chunks0, bs[0].Name)
		if left == 0 || left == chunks0 {
			t.Fatalf("the kill came outside the chunks' deletion: %d of %d left", left, chunks0)
		}
		if got := chunksOf(bs[1]); got == 0 {
			t.Errorf("backup %s lost its chunks while the oldest backup's were deleted", bs[1].Name)
		}
		if got := count("xlog"); got < wal0 {
			t.Errorf("%d WAL files after a kill among the oldest backup's chunks, want all %d", got, wal0)
		}
		wholeSite(t, bs[1].Name, bs[2].Name)

		s.mustHoard("retention")
		if n := chunksOf(bs[1]); n != 0 {
			t.Errorf("%d chunks of deleted backup %s left after the next run", n, bs[1].Name)
		}
		wholeSite(t, bs[2].Name)
	})
}
