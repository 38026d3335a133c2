package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// BenchmarkWALPush runs `hoard wal-push` as PostgreSQL's archive_command
// does: one process per segment, on real 16 MiB segments of a pgbench
// load, into a local store, with and without encryption. It reports
// segments per second and MB/s of WAL: the rate of WAL a server may write
// while one archiver process keeps up. Each iteration pushes every
// segment into a fresh store, so the "already archived" shortcut never
// applies.
func BenchmarkWALPush(b *testing.B) {
	walDir := pgtest.TempDir(b)
	src := pgtest.Start(b, pgtest.Options{Major: 15, Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": "cp %p " + walDir + "/%f",
	}})
	pgtest.Pgbench(b, src, "-i", "-s", "5", "-q")
	for range 2 {
		switchAndWaitArchived(b, src)
	}
	segs, err := filepath.Glob(filepath.Join(walDir, "0000000100000000000000??"))
	if err != nil || len(segs) < 4 {
		b.Fatalf("want at least 4 archived segments, have %v (%v)", segs, err)
	}
	for _, enc := range []bool{false, true} {
		b.Run(fmt.Sprintf("snappy/encrypted=%v", enc), func(b *testing.B) {
			s := newSite(b, siteOptions{Encrypt: enc})
			var bytes int64
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				store := filepath.Join(s.dir, fmt.Sprintf("store-%d", i))
				s.rewriteStore(store)
				b.StartTimer()
				for _, seg := range segs {
					cmd := exec.Command(hoardBin, "--config", s.config, "--log-level", "warn", "wal-push", seg)
					cmd.Env = minimalEnv()
					pgtest.RunAs(cmd)
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("wal-push %s: %v\n%s", seg, err, out)
					}
					bytes += 16 << 20
				}
				b.StopTimer()
				os.RemoveAll(store)
				b.StartTimer()
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*len(segs))/sec, "segments/s")
			b.ReportMetric(float64(bytes)/sec/1e6, "MB/s")
		})
	}
}
