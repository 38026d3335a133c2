package basebackup

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// BenchmarkDelta compares a delta backup with a full one after 1% of a
// pgbench database changed, on each PostgreSQL major under test
// (HOARD_PG_VERSIONS, e.g. "all"): a delta backup (which stores every
// large file), an update of 1% of pgbench_accounts' rows, a full
// local-tar backup of that state, an update of the next 1%, then a delta
// backup, which stores only the large files whose bytes changed (and
// bundles the small ones again), then one more delta backup with nothing
// changed, which reuses every large file. It reports the bytes each
// stored (what the store holds more after it), its seconds and this
// process's CPU seconds (hoard's side: not the server's), the changed
// delta's bytes and seconds as percentages of the full's, and the test
// process's peak RSS.
// HOARD_BENCH_SCALE sets pgbench's scale (default 50, about 750 MB);
// HOARD_BENCH_SPREAD=1 updates every 100th row instead of a contiguous 1%.
//
//	HOARD_PG_VERSIONS=all go test -run '^$' -bench BenchmarkDelta -benchtime 1x ./basebackup/
func BenchmarkDelta(b *testing.B) {
	ch := benchChangeFromEnv()
	for _, major := range pgtest.Versions() {
		b.Run(fmt.Sprintf("pg%d", major), func(b *testing.B) {
			c := pgtest.Start(b, pgtest.Options{Major: major, Conf: map[string]string{"max_wal_size": "4GB"}})
			pgtest.Pgbench(b, c, "-i", "-s", strconv.Itoa(ch.scale))
			a := localArchive(b)
			take := func(mode Mode) (stored int64, took, cpu time.Duration) {
				before := storedBytes(b, a)
				cpu0 := processCPU(b)
				start := time.Now()
				_, err := Run(testContext(b), Options{
					ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, PGData: c.DataDir,
					Mode: mode, TempDir: b.TempDir(), Logger: zerolog.Nop(),
				})
				if err != nil {
					b.Fatal(err)
				}
				took = time.Since(start)
				return storedBytes(b, a) - before, took, processCPU(b) - cpu0
			}
			for range b.N {
				take(ModeDelta)
				ch.update(b, c, 0)
				fullBytes, fullTime, fullCPU := take(ModeLocal)
				ch.update(b, c, 1)
				deltaBytes, deltaTime, deltaCPU := take(ModeDelta)
				sameBytes, sameTime, sameCPU := take(ModeDelta)
				reportAgainstFull(b, fullBytes, fullTime, "delta", deltaBytes, deltaTime)
				b.ReportMetric(fullCPU.Seconds(), "full-cpu-s")
				b.ReportMetric(deltaCPU.Seconds(), "delta-cpu-s")
				b.ReportMetric(float64(sameBytes), "same-bytes")
				b.ReportMetric(sameTime.Seconds(), "same-s")
				b.ReportMetric(sameCPU.Seconds(), "same-cpu-s")
			}
			// The test process's peak, every backup's so far and its own.
			var ru syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(ru.Maxrss)/1024, "peak-rss-MiB")
		})
	}
}

// storedBytes is the size of every object a's store holds.
func storedBytes(b testing.TB, a *archive.Archive) int64 {
	b.Helper()
	var n int64
	err := a.Store.List(context.Background(), "", func(o storage.Object) error {
		n += o.Size
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
