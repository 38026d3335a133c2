package benchdata

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime returns the CPU time (user and system) this process has used.
func CPUTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPUPerGB reports the CPU seconds the benchmark's loop used per GB
// (10^9 bytes) when each iteration processes bytes, start being CPUTime
// before the loop: unlike MB/s, a figure other work on the machine hardly
// moves.
func ReportCPUPerGB(b *testing.B, start time.Duration, bytes int64) {
	b.Helper()
	b.ReportMetric((CPUTime(b)-start).Seconds()/(float64(bytes)*float64(b.N)/1e9), "cpu-s/GB")
}
