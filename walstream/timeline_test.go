package walstream

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_Run_TimelineSwitch streams from a standby that is then
// promoted: the Receiver follows it to timeline 2, uploads the old
// timeline's last segment as .partial and 00000002.history. Debian's
// pg_basebackup builds the standby, so this runs on PostgreSQL 15 only.
func TestReceiver_Run_TimelineSwitch(t *testing.T) {
	primary := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1})
	standby := startStandby(t, primary)
	segSize := segSizeOf(t, standby)

	s := newSink(t)
	rr := start(t, standby, t.TempDir(), s, Options{})
	first := rr.r.Status().Segment
	switchWAL(t, primary)
	last := switchWAL(t, primary)
	waitUploaded(t, s, waltest.Names(t, first, last, segSize)...)
	// Leave the switch point in the middle of a segment.
	primary.Exec(t, "insert into filler select generate_series(1, 1000)")
	target := lsn(t, primary, "select pg_current_wal_flush_lsn()")
	waitFor(t, "WAL received from the standby", func() bool { return rr.r.Status().Received >= target })

	standby.Promote(t)
	standby.WaitRecoveryDone(t, testTimeout)
	after := switchWAL(t, standby)
	if !strings.HasPrefix(after, "00000002") {
		t.Fatalf("segment %s after promotion", after)
	}
	waitUploaded(t, s, "00000002.history", after)
	if got := rr.r.Status().Timeline; got != 2 {
		t.Errorf("Status().Timeline = %d, want 2", got)
	}

	var partial string
	for _, u := range s.uploads() {
		if u.partial && strings.HasPrefix(u.name, "00000001") {
			partial = u.name
		}
		if !u.partial && strings.HasPrefix(u.name, "00000001") && u.name >= after[:8]+"00000001"+after[16:] {
			t.Errorf("timeline 1 segment %s uploaded as complete past the switch", u.name)
		}
	}
	if partial == "" {
		t.Fatalf("no timeline 1 .partial uploaded: %v", s.uploads())
	}
	history, err := os.ReadFile(filepath.Join(s.dir, "00000002.history"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(standby.DataDir, "pg_wal", "00000002.history"))
	if err != nil {
		t.Fatal(err)
	}
	if string(history) != string(want) {
		t.Errorf("history %q, want %q", history, want)
	}
	// The .partial holds timeline 1 up to the switch point. The server
	// began timeline 2's first segment with a copy of those bytes.
	h, err := wal.ParseHistory(2, history)
	if err != nil || len(h) != 2 {
		t.Fatalf("history %q: %v", history, err)
	}
	n := int64(uint64(h[1].Begin) % segSize)
	got := readPrefix(t, filepath.Join(s.dir, partial), n)
	wantPartial := readPrefix(t, filepath.Join(standby.DataDir, "pg_wal", "00000002"+partial[8:24]), n)
	if n == 0 || string(got) != string(wantPartial) {
		t.Errorf("uploaded %s differs from the server's in its first %d bytes", partial, n)
	}

	// The timeline 2 segments up to the one just switched, from the one
	// holding the switch point, equal the new primary's.
	firstTLI2 := "00000002" + partial[8:24]
	names := waltest.Names(t, firstTLI2, after, segSize)
	waitUploaded(t, s, names...)
	checkStreamed(t, standby, s, names)
	rr.stop(t)
}

// startStandby makes a streaming hot standby of primary (PostgreSQL 15:
// Debian's pg_basebackup -R copies it) and starts it.
func startStandby(t *testing.T, primary *pgtest.Cluster) *pgtest.Cluster {
	t.Helper()
	data := filepath.Join(pgtest.TempDir(t), "standby")
	cmd := exec.Command(pgtest.Tool(t, "pg_basebackup"), "-h", primary.Host, "-p", strconv.Itoa(primary.Port),
		"-U", "postgres", "-D", data, "-R", "-X", "stream", "-c", "fast")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	standby := pgtest.StartDataDir(t, primary.Major, data, nil)
	if standby.QueryString(t, "select pg_is_in_recovery()::text") != "true" {
		t.Fatal("standby is not in recovery")
	}
	return standby
}
