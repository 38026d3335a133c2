package daemon

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/metrics"
)

// registeredMetrics returns the name of every metric the daemon registers:
// its own, a site's and a site's restore test series.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New(nil)
	startedMetric(m)
	siteRunningMetric(m, "s")
	newSiteMetrics(m, "s")
	(&supervisor{site: Site{Name: "s"}, d: &daemon{metrics: m}}).restoreTestMetrics()
	var b strings.Builder
	if err := m.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d metrics registered: %v", len(names), names)
	}
	return names
}

// TestMetricNames_Deploy: every hoard metric the Prometheus rules and the
// Grafana dashboards under deploy/ name is one the daemon has, and each
// file names some.
func TestMetricNames_Deploy(t *testing.T) {
	have := registeredMetrics(t)
	var files []string
	for _, pattern := range []string{"../deploy/prometheus/*.yml", "../deploy/grafana/*.json"} {
		f, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if len(f) == 0 {
			t.Errorf("no files %s", pattern)
		}
		files = append(files, f...)
	}
	name := regexp.MustCompile(`\bhoard_[a-z0-9_]*[a-z0-9]\b`)
	used := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found := name.FindAllString(string(b), -1)
		if len(found) == 0 {
			t.Errorf("%s names no hoard metric", f)
		}
		for _, n := range found {
			used[n] = true
			if !have[n] {
				t.Errorf("%s names %s, which the daemon does not have", f, n)
			}
		}
	}
	t.Logf("%d of the daemon's %d metrics are used under deploy/", len(used), len(have))
}
