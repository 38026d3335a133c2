package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestNetFail_Restore restores a real backup from MinIO through a proxy
// that cuts every connection three times in the middle of the download,
// and fetches a WAL segment through a connection cut in the
// middle of its body. The restore retries the chunks that were cut and
// restores the source's rows; a wal-fetch cut in the middle exits 255
// and leaves no file for PostgreSQL, then one that is not cut delivers
// the segment whole. Nothing is ever taken from a truncated download.
func TestNetFail_Restore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hoard against PostgreSQL and MinIO")
	}
	minio := storetest.MinIO(t)
	via, proxy := storetest.Proxied(t, minio)
	s := newS3Site(t, via)
	src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: s.clusterConf()})
	s.use(src)
	// Rows that compress little, so that chunks and segments are large.
	src.Exec(t, "create table t (id int primary key, note text)")
	src.Exec(t, "insert into t select g, md5(g::text) || md5((g * 7)::text) from generate_series(1, 60000) g")
	s.mustHoard("basebackup", "--fast")
	switchAndWaitArchived(t, src)
	rows := func(c *pgtest.Cluster) string {
		return c.QueryString(t, "select count(*)::text || ' ' || md5(string_agg(id::text || '=' || note, ',' order by id)) from t")
	}
	want := rows(src)

	t.Run("Restore", func(t *testing.T) {
		dst := filepath.Join(pgtest.TempDir(t), "restored")
		// Every connection is cut three times, in the middle of the
		// 1 MiB chunks: a chunk in flight at each cut still has a try
		// left (restore.DefaultRetries re-downloads), so the restore
		// must complete.
		cuts := proxy.Cuts()
		proxy.CutEvery(1500<<10, 3)
		_, errOut, err := s.hoard("restore", "--target-dir", dst)
		proxy.CutAfter(0)
		t.Logf("%d cuts", proxy.Cuts()-cuts)
		if proxy.Cuts()-cuts < 2 {
			t.Fatalf("the proxy cut the restore's connections %d times, want several", proxy.Cuts()-cuts)
		}
		if err != nil {
			// Whatever the reason, it must say which chunk and leave
			// nothing PostgreSQL could start on.
			if !strings.Contains(errOut, "basebackup_chunk") {
				t.Errorf("the failed restore does not name the chunk:\n%s", errOut)
			}
			for _, f := range []string{"global/pg_control", "recovery.signal"} {
				if _, serr := os.Stat(filepath.Join(dst, f)); serr == nil {
					t.Errorf("the failed restore wrote %s", f)
				}
			}
			t.Fatalf("restore with cut connections: %v", err)
		}
		if !strings.Contains(errOut, "retrying chunk") {
			t.Errorf("the restore did not say it retried a chunk:\n%s", errOut)
		}
		restored := pgtest.StartDataDir(t, 15, dst, noArchiving)
		restored.WaitRecoveryDone(t, 3*time.Minute)
		if got := rows(restored); got != want {
			t.Errorf("restored rows %q, want %q", got, want)
		}
	})

	t.Run("WALFetch", func(t *testing.T) {
		seg, size := largestSegment(t, minio, s.name)
		dir := pgtest.TempDir(t)
		fetch := func(cuts int) (string, string, error) {
			t.Helper()
			dest := filepath.Join(dir, fmt.Sprintf("cut%d", cuts))
			before := proxy.Cuts()
			proxy.CutEvery(size/2, cuts)
			_, errOut, err := s.hoard("wal-fetch", seg, dest)
			proxy.CutAfter(0)
			if got := proxy.Cuts() - before; got != cuts {
				t.Errorf("the proxy cut wal-fetch's connections %d times, want %d", got, cuts)
			}
			return dest, errOut, err
		}
		whole, _, err := fetch(0)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(whole)
		if err != nil {
			t.Fatal(err)
		}
		// One cut in the middle of the body: read again, delivered whole.
		dest, errOut, err := fetch(1)
		if err != nil {
			t.Fatalf("wal-fetch of %s (%d bytes stored) cut once: %v\n%s", seg, size, err, errOut)
		}
		if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, want) {
			t.Errorf("wal-fetch cut once delivered %d bytes (%v), not the %d of an uncut fetch", len(got), err, len(want))
		}
		// Every try cut: exit 255 naming the segment, and no file.
		dest, errOut, err = fetch(3)
		if code := exitCode(err); code != 255 {
			t.Errorf("wal-fetch of %s cut on every try: exit %d, want 255", seg, code)
		}
		if !strings.Contains(errOut, seg) || !strings.Contains(errOut, "s3 bucket") {
			t.Errorf("wal-fetch's error does not name %s and the bucket:\n%s", seg, errOut)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Errorf("wal-fetch cut on every try left %s", dest)
		}
	})
}

// largestSegment returns the WAL segment of site whose stored object is
// the largest in the store c, and that size.
func largestSegment(t *testing.T, c storage.Config, site string) (string, int64) {
	t.Helper()
	st, err := storage.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var name string
	var size int64
	err = st.List(context.Background(), site+"/xlog/", func(o storage.Object) error {
		if o.Size > size {
			name, size = filepath.Base(o.Key), o.Size
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if size < 1<<20 {
		t.Fatalf("the largest segment stored, %q, has %d bytes: too few to cut in the middle", name, size)
	}
	return name, size
}
