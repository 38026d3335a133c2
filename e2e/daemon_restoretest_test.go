package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// restoreTestStatus is the restore_test part of a site in GET /status.
type restoreTestStatus struct {
	Running  bool       `json:"running"`
	Finished *time.Time `json:"finished"`
	OK       *bool      `json:"ok"`
	Backup   string     `json:"backup"`
	Checks   []struct {
		Name, Status, Detail string
	} `json:"checks"`
	Error       string     `json:"error"`
	LastSuccess *time.Time `json:"last_success"`
}

// restoreTest fetches the site's restore_test from /status; nil while the
// daemon does not answer or shows none.
func (d *daemonProc) restoreTest() *restoreTestStatus {
	var st struct {
		Sites map[string]struct {
			RestoreTest *restoreTestStatus `json:"restore_test"`
		} `json:"backup_sites"`
	}
	if body, ok := d.get("/status"); ok && json.Unmarshal([]byte(body), &st) == nil {
		return st.Sites[d.s.name].RestoreTest
	}
	return nil
}

// get returns the body of a GET on the daemon's HTTP port.
func (d *daemonProc) get(path string) (string, bool) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", d.s.httpPort, path))
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err == nil && resp.StatusCode == http.StatusOK
}

// TestDaemonRestoreTest runs hoard daemon with restore_test_interval_hours
// at 18 s against a real cluster streaming into MinIO: the first scheduled
// test restore of the newest backup passes and shows in /status and
// /metrics with no alert file, and a real Prometheus scraping the daemon
// gets data for every query of the Grafana dashboard and evaluates the
// alerting rules, none firing (checkMonitoring); a second one, interrupted by SIGTERM while
// its server replays, leaves the daemon exiting 0 with that server stopped
// and no scratch directory.
func TestDaemonRestoreTest(t *testing.T) {
	s := newMinIOStreamSite(t)
	s.setSiteKey("restore_test_interval_hours", 0.005)
	src := s.startSource(pgtest.Options{DataChecksums: true})
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")

	d := s.startDaemon()
	prom := startPrometheus(t, fmt.Sprintf("127.0.0.1:%d", s.httpPort))
	var rt *restoreTestStatus
	d.waitFor("a finished restore test in /status", 2*time.Minute, func() bool {
		rt = d.restoreTest()
		return rt != nil && rt.Finished != nil
	})
	if rt.OK == nil || !*rt.OK {
		t.Fatalf("restore test failed: %s\nchecks %+v", rt.Error, rt.Checks)
	}
	bs := s.listBackups()
	if len(bs) == 0 || rt.Backup != bs[len(bs)-1].Name {
		t.Errorf("tested backup %q, want the newest of %+v", rt.Backup, bs)
	}
	checkRestoreTestChecks(t, rt)
	if rt.LastSuccess == nil || !rt.LastSuccess.Equal(*rt.Finished) {
		t.Errorf("last_success %v, want %v", rt.LastSuccess, rt.Finished)
	}
	metrics, _ := d.get("/metrics")
	for _, want := range []string{
		fmt.Sprintf(`hoard_restore_test_ok{site=%q} 1`, s.name),
		fmt.Sprintf(`hoard_restore_test_last_success_timestamp_seconds{site=%q} %d`, s.name, rt.LastSuccess.Unix()),
		fmt.Sprintf(`hoard_restore_test_last_run_timestamp_seconds{site=%q} %d`, s.name, rt.Finished.Unix()),
		fmt.Sprintf(`hoard_restore_test_duration_seconds{site=%q} `, s.name),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(s.alertDir, "restore_test_failed")); !os.IsNotExist(err) {
		t.Errorf("alert file restore_test_failed after a passing test: %v", err)
	}
	checkMonitoring(t, d, prom)

	// The next test starts 18 s after the first ended, with about 100 MB
	// more WAL to replay; stop the daemon while its server replays.
	src.Exec(t, "create table big as select g, md5(g::text) from generate_series(1, 1000000) g")
	src.Exec(t, "select pg_switch_wal()")
	d.waitFor("the second restore test replaying", 2*time.Minute, func() bool {
		return strings.Count(d.out.String(), "restore done") >= 2
	})
	if code := d.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}
	if log := d.out.String(); !strings.Contains(log, "restore test interrupted by shutdown") || strings.Count(log, "restore test passed") != 1 {
		t.Errorf("the second restore test was not interrupted\n%s", tailLines(log, 30))
	}
	scratch := filepath.Join(s.dir, "state", s.name, "restore-test")
	entries, err := os.ReadDir(scratch)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "last.json" {
			t.Errorf("%s holds %s after shutdown, want only last.json", scratch, e.Name())
		}
	}
	if procs := processesMentioning("hoard-restore-test-"); len(procs) > 0 {
		t.Errorf("processes of the interrupted restore test still run: %v", procs)
	}
}

// processesMentioning returns the command lines of running processes that
// contain s.
func processesMentioning(s string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, s) {
			out = append(out, cmd)
		}
	}
	return out
}

// TestDaemonRestoreTestIncremental runs hoard daemon against a real
// PostgreSQL (the newest major the tests run, 17 or later) with
// summarize_wal on, incremental backups every 7.2 s between daily full
// ones and a test restore every 10.8 s, while rows are written: the first
// scheduled test restore whose newest backup is an incremental one
// restores it from its chain (the full backup and the incrementals on it),
// replays the archive and passes every check; the daemon logs the chain.
func TestDaemonRestoreTestIncremental(t *testing.T) {
	if vs := pgtest.Versions(); vs[len(vs)-1] < 17 {
		pgtest.Unavailable(t, "PostgreSQL 17 or later for incremental backups (newest: %d)", vs[len(vs)-1])
	}
	s := newMinIOStreamSite(t)
	// The full backup starts with the daemon, the first incremental one
	// an interval after it (the newest backup's start time, in whole
	// seconds, plus 7.2 s), the next one an interval later; the first test
	// restore is due 10.8 s after the daemon started, half way between
	// the two: the first incremental backup is stored by then (idle, the
	// full backup took 0.7 s and an incremental one 0.25 s), and the next
	// is not running, which would put the test off by 15 s
	// (restoreTestRecheck). A test restore interval of twice the
	// incremental one (the 18 s and 36 s this test had) made the two due
	// within a second of each other.
	s.setSiteKey("basebackup_incremental_interval_hours", 0.002)
	s.setSiteKey("restore_test_interval_hours", 0.003)
	src := s.startSource(pgtest.Options{DataChecksums: true, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")

	d := s.startDaemon()
	parents := map[string]string{}
	var rt *restoreTestStatus
	var tested []string
	var wrote time.Time
	d.waitFor("a finished restore test of an incremental backup", 6*time.Minute, func() bool {
		if time.Since(wrote) > 3*time.Second {
			// Changes for each incremental backup to hold.
			src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 97 = 0")
			wrote = time.Now()
		}
		r := d.restoreTest()
		if r == nil || r.Finished == nil || (rt != nil && r.Finished.Equal(*rt.Finished)) {
			return false
		}
		rt = r
		tested = append(tested, r.Backup)
		for _, b := range s.listBackups() {
			parents[b.Name] = b.Metadata["hoard-incremental-parent"]
		}
		return parents[r.Backup] != ""
	})
	if rt.OK == nil || !*rt.OK {
		t.Fatalf("restore test of incremental backup %s failed: %s\nchecks %+v\n%s", rt.Backup, rt.Error, rt.Checks, tailLines(d.out.String(), 40))
	}
	checkRestoreTestChecks(t, rt)
	// The chain down to the full backup, as the daemon's restore followed it.
	chain := []string{rt.Backup}
	for p := parents[rt.Backup]; p != ""; p = parents[p] {
		chain = append(chain, p)
		if len(chain) > len(parents) {
			t.Fatalf("the parents loop: %v", chain)
		}
	}
	if _, ok := parents[chain[len(chain)-1]]; !ok {
		t.Fatalf("chain %v ends in a backup that is not listed", chain)
	}
	if log := d.out.String(); !strings.Contains(log, "its files are rebuilt from its chain") || !strings.Contains(log, chain[len(chain)-1]) {
		t.Errorf("the daemon's log does not show the chain restore (full backup %s)\n%s", chain[len(chain)-1], tailLines(log, 40))
	}
	t.Logf("restore tests of %v; the incremental %s restored from chain %v", tested, rt.Backup, chain)
	if code := d.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}
}

// checkRestoreTestChecks fails t unless the test restore's connect,
// replay, databases and amcheck checks passed, and its checksums check
// passed or was unavailable (the cached PostgreSQL builds may lack
// pg_checksums).
func checkRestoreTestChecks(t *testing.T, rt *restoreTestStatus) {
	t.Helper()
	checks := map[string]string{}
	for _, c := range rt.Checks {
		checks[c.Name] = c.Status
	}
	for _, name := range []string{"connect", "replay", "databases", "amcheck"} {
		if checks[name] != "ok" {
			t.Errorf("check %s: %q, want ok (checks %+v)", name, checks[name], rt.Checks)
		}
	}
	if c := checks["checksums"]; c != "ok" && c != "unavailable" {
		t.Errorf("check checksums: %q (checks %+v)", c, rt.Checks)
	}
}
