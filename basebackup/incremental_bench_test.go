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
	scale := 50
	if s := os.Getenv("HOARD_BENCH_SCALE"); s != "" {
		scale, _ = strconv.Atoi(s)
	}
	spread := os.Getenv("HOARD_BENCH_SPREAD") == "1"
	for _, major := range []int{17, 18} {
		b.Run(fmt.Sprintf("pg%d", major), func(b *testing.B) {
			c := pgtest.Start(b, pgtest.Options{Major: major, Conf: map[string]string{"summarize_wal": "on", "max_wal_size": "4GB"}})
			pgtest.Pgbench(b, c, "-i", "-s", strconv.Itoa(scale))
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
				rows := scale * 100000 / 100
				if spread {
					c.Exec(b, "update pgbench_accounts set abalance = abalance + 1 where aid % 100 = 0")
				} else {
					c.Exec(b, "update pgbench_accounts set abalance = abalance + 1 where aid <= $1", rows)
				}
				c.Exec(b, "checkpoint")
				fullBytes, fullTime := take(false)
				// The incremental's parent is that second full backup's
				// state: take the changes again and back them up.
				if spread {
					c.Exec(b, "update pgbench_accounts set abalance = abalance + 1 where aid % 100 = 1")
				} else {
					c.Exec(b, "update pgbench_accounts set abalance = abalance + 1 where aid > $1 and aid <= $2", rows, 2*rows)
				}
				c.Exec(b, "checkpoint")
				incBytes, incTime := take(true)
				b.ReportMetric(float64(fullBytes), "full-bytes")
				b.ReportMetric(fullTime.Seconds(), "full-s")
				b.ReportMetric(float64(incBytes), "incr-bytes")
				b.ReportMetric(incTime.Seconds(), "incr-s")
				b.ReportMetric(100*float64(incBytes)/float64(fullBytes), "bytes-%")
				b.ReportMetric(100*incTime.Seconds()/fullTime.Seconds(), "time-%")
			}
		})
	}
}
