package basebackup

import (
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// processCPU returns the CPU time (user and system) this process has used:
// hoard's side of a backup, without the server's walsender.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStream takes BASE_BACKUP backups (ModeStream), encrypted, into a
// local store, of a PostgreSQL 15 cluster with data checksums holding
// pgbench data and random bytes, like scripts/bench-basebackup.sh's, and
// reports hoard's CPU seconds per GB of the server's tar (this process
// only: the walsender's CPU is not in it) next to MB/s. HOARD_BENCH_SCALE
// sets pgbench's scale (default 10) and HOARD_BENCH_RANDOM_MB the random
// bytes (default 32). Run it with -cpuprofile to see where the CPU goes.
//
//	HOARD_TEST_STRICT=1 go test -run '^$' -bench BenchmarkStream -benchtime 3x ./basebackup/
func BenchmarkStream(b *testing.B) {
	scale, randomMB := 10, 32
	if s := os.Getenv("HOARD_BENCH_SCALE"); s != "" {
		scale, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("HOARD_BENCH_RANDOM_MB"); s != "" {
		randomMB, _ = strconv.Atoi(s)
	}
	c := pgtest.Start(b, pgtest.Options{Major: 15, DataChecksums: true, Conf: map[string]string{"max_wal_size": "4GB"}})
	pgtest.Pgbench(b, c, "-i", "-q", "-s", strconv.Itoa(scale))
	// 1 kB of random bytes a row (64 random UUIDs, 122 random bits each):
	// stored inline, incompressible like the benchmark script's table.
	c.Exec(b, "create table random_bytes as select g as id, "+
		"(select decode(string_agg(replace(gen_random_uuid()::text, '-', ''), ''), 'hex') from generate_series(1, 64) where g > 0) as b "+
		"from generate_series(1, $1) g", randomMB*1024)
	c.Exec(b, "vacuum (freeze, analyze)")
	c.Exec(b, "checkpoint")
	for _, alg := range []string{compress.LZ4, compress.Zstd, compress.Snappy} {
		b.Run(alg, func(b *testing.B) {
			var plain int64
			start := processCPU(b)
			began := time.Now()
			for range b.N {
				a := encryptedArchive(b, alg) // a new store each time
				info, err := Run(testContext(b), Options{
					ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true,
					Mode: ModeStream, Logger: zerolog.Nop(),
				})
				if err != nil {
					b.Fatal(err)
				}
				plain += info.TotalSizePlain
			}
			cpu := processCPU(b) - start
			el := time.Since(began)
			b.ReportMetric(cpu.Seconds()/(float64(plain)/1e9), "cpu-s/GB")
			b.ReportMetric(float64(plain)/1e6/el.Seconds(), "MB/s")
		})
	}
}
