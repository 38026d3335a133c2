package basebackup

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// BenchmarkIncremental compares an incremental backup with a full one
// after 1% of a pgbench database changed, on PostgreSQL 17 and 18: a full
// backup, an update of 1% of pgbench_accounts' rows, then a full and an
// incremental backup of the same state, both over BASE_BACKUP. It reports
// each one's stored bytes and seconds and their ratios. HOARD_BENCH_SCALE
// sets pgbench's scale (default 50, about 750 MB); HOARD_BENCH_SPREAD=1
// updates every 100th row instead of a contiguous 1% (most pages change).
//
//	go test -run '^$' -bench BenchmarkIncremental -benchtime 1x ./basebackup/
func BenchmarkIncremental(b *testing.B) {
	ch := benchChangeFromEnv()
	for _, major := range []int{17, 18} {
		b.Run(fmt.Sprintf("pg%d", major), func(b *testing.B) {
			c := pgtest.Start(b, pgtest.Options{Major: major, Conf: map[string]string{"summarize_wal": "on", "max_wal_size": "4GB"}})
			pgtest.Pgbench(b, c, "-i", "-s", strconv.Itoa(ch.scale))
			a := localArchive(b)
			take := func(incremental bool) (stored int64, took time.Duration) {
				start := time.Now()
				info, err := Run(testContext(b), Options{
					ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true,
					Mode: ModeStream, Incremental: incremental, Logger: zerolog.Nop(),
				})
				if err != nil {
					b.Fatal(err)
				}
				return info.TotalSizeEnc + info.StoredSize, time.Since(start)
			}
			for range b.N {
				take(false)
				ch.update(b, c, 0)
				fullBytes, fullTime := take(false)
				// The incremental's parent is that second full backup's
				// state: take the changes again and back them up.
				ch.update(b, c, 1)
				incBytes, incTime := take(true)
				reportAgainstFull(b, fullBytes, fullTime, "incr", incBytes, incTime)
			}
		})
	}
}

// benchChange is the change BenchmarkIncremental and BenchmarkDelta make
// between backups: 1% of pgbench_accounts' rows of a database of pgbench
// scale scale, a contiguous range, or every 100th row when spread (then
// most pages change).
type benchChange struct {
	scale  int
	spread bool
}

// benchChangeFromEnv reads HOARD_BENCH_SCALE (default 50) and
// HOARD_BENCH_SPREAD=1.
func benchChangeFromEnv() benchChange {
	ch := benchChange{scale: 50, spread: os.Getenv("HOARD_BENCH_SPREAD") == "1"}
	if s := os.Getenv("HOARD_BENCH_SCALE"); s != "" {
		ch.scale, _ = strconv.Atoi(s)
	}
	return ch
}

// update changes the n-th 1% of the rows (every 100th row from aid n when
// spread) and checkpoints, so that the next backup sees the pages.
func (ch benchChange) update(b testing.TB, c *pgtest.Cluster, n int) {
	b.Helper()
	if ch.spread {
		c.Exec(b, "update pgbench_accounts set abalance = abalance + 1 where aid % 100 = $1", n)
	} else {
		rows := ch.scale * 100000 / 100
		c.Exec(b, "update pgbench_accounts set abalance = abalance + 1 where aid > $1 and aid <= $2", n*rows, (n+1)*rows)
	}
	c.Exec(b, "checkpoint")
}

// reportAgainstFull reports a full backup's and another's (named name)
// stored bytes and seconds, and the other's as a percentage of the full's.
func reportAgainstFull(b *testing.B, fullBytes int64, fullTime time.Duration, name string, bytes int64, took time.Duration) {
	b.ReportMetric(float64(fullBytes), "full-bytes")
	b.ReportMetric(fullTime.Seconds(), "full-s")
	b.ReportMetric(float64(bytes), name+"-bytes")
	b.ReportMetric(took.Seconds(), name+"-s")
	b.ReportMetric(100*float64(bytes)/float64(fullBytes), "bytes-%")
	b.ReportMetric(100*took.Seconds()/fullTime.Seconds(), "time-%")
}
