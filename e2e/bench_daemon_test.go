package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// BenchmarkDaemonStreaming runs `hoard daemon` streaming WAL from a PG 15
// cluster into a local store while pgbench writes as fast as this machine
// lets it, and reports, over each run of pgbench:
//
//   - max-lag-segments: the largest distance, in 16 MiB segments, between
//     the server's current WAL position and the end of the last WAL the
//     daemon had stored (sampled every 100 ms); it includes the segment
//     the server is still writing, which is stored when it is complete;
//   - max-unstored-segments: the most complete segments not yet stored at
//     any sample, and mean-unstored-segments, their mean over the samples;
//   - max-rss-MiB: the daemon's largest resident memory (VmRSS, sampled
//     with the lag) while it streams (basebackup_interval_hours is null,
//     so it takes no basebackup);
//   - wal-MB/s: the WAL rate pgbench produced.
func BenchmarkDaemonStreaming(b *testing.B) {
	src := pgtest.Start(b, pgtest.Options{Major: 15, Conf: map[string]string{"max_wal_size": "1GB"}})
	pgtest.Pgbench(b, src, "-i", "-s", "10", "-q")

	dir := pgtest.TempDir(b)
	s := &streamSite{
		site:     &site{t: b, name: "bench", dir: dir, config: filepath.Join(dir, "hoard.json"), storeDir: filepath.Join(dir, "store")},
		httpPort: testio.FreePort(b),
	}
	s.use(src)
	cfg := map[string]any{
		"backup_location":      filepath.Join(dir, "state"),
		"json_state_file_path": filepath.Join(dir, "state", "hoard_state.json"),
		"alert_file_dir":       filepath.Join(dir, "alerts"),
		"http_port":            s.httpPort,
		"compression":          map[string]any{"algorithm": "snappy"},
		"backup_sites": map[string]any{s.name: map[string]any{
			"active_backup_mode":        "pg_receivexlog",
			"basebackup_interval_hours": nil,
			"object_storage":            map[string]any{"storage_type": "local", "directory": s.storeDir},
		}},
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s.writeFile(s.config, data)
	d := s.startDaemon()
	d.waitFor("WAL receiver connected", time.Minute, func() bool {
		st, ok := d.status()
		w := st.Sites[s.name].WAL
		return ok && w != nil && w.Connected
	})

	var maxLag, maxUnstored, meanUnstored, maxRSS, walRate float64
	for b.Loop() {
		startLSN := currentLSN(b, src)
		began := time.Now()
		done := make(chan struct{})
		var wg sync.WaitGroup
		var lag, rss, unstored, unstoredSum, samples float64
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				st, ok := d.status()
				w := st.Sites[s.name].WAL
				if !ok || w == nil {
					continue
				}
				up, err := pglogrepl.ParseLSN(w.Uploaded)
				if err != nil {
					continue
				}
				cur := currentLSN(b, src)
				lag = max(lag, float64(cur-up)/(16<<20))
				n := float64(uint64(cur)/(16<<20)) - float64(uint64(up)/(16<<20))
				unstored = max(unstored, n)
				unstoredSum += n
				samples++
				rss = max(rss, rssMiB(b, d.cmd.Process.Pid, "VmRSS:"))
			}
		}()
		pgtest.Pgbench(b, src, "-T", "15", "-c", "4", "-j", "2", "-N")
		close(done)
		wg.Wait()
		walRate = float64(currentLSN(b, src)-startLSN) / time.Since(began).Seconds() / 1e6
		maxLag = max(maxLag, lag)
		maxUnstored = max(maxUnstored, unstored)
		if samples > 0 {
			meanUnstored = max(meanUnstored, unstoredSum/samples)
		}
		maxRSS = max(maxRSS, rss)
	}
	b.ReportMetric(maxLag, "max-lag-segments")
	b.ReportMetric(maxUnstored, "max-unstored-segments")
	b.ReportMetric(meanUnstored, "mean-unstored-segments")
	b.ReportMetric(maxRSS, "max-rss-MiB")
	b.ReportMetric(walRate, "wal-MB/s")
	d.stop(15, time.Minute) // SIGTERM
}

func currentLSN(t testing.TB, c *pgtest.Cluster) pglogrepl.LSN {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(c.QueryString(t, "select pg_current_wal_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// rssMiB reads a memory figure of a process (field "VmRSS:" or "VmHWM:"
// of /proc/PID/status) in MiB.
func rssMiB(t testing.TB, pid int, field string) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
