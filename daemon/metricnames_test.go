package daemon

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/metrics"
)

// metricFamily is one metric as the daemon exposes it: its type and, by
// label name, the values its series take.
type metricFamily struct {
	kind   string
	labels map[string]map[string]bool
}

// registeredMetrics returns every metric the daemon registers, by name:
// its own, a site's and a site's restore test series.
func registeredMetrics(t *testing.T) map[string]metricFamily {
	t.Helper()
	m := metrics.New(nil)
	startedMetric(m)
	siteRunningMetric(m, "s")
	siteFailedMetric(m, "s")
	orphanSpoolMetric(m, "s")
	newSiteMetrics(m, "s")
	walConnectedMetric(m, "s")
	rt := &supervisor{site: Site{Name: "s"}, d: &daemon{metrics: m}}
	rt.restoreTestMetrics()
	rt.restoreTestStorageFailures()
	var b strings.Builder
	if err := m.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	label := regexp.MustCompile(`([a-z_]+)="([^"]*)"`)
	families := map[string]metricFamily{}
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = metricFamily{kind: f[3], labels: map[string]map[string]bool{}}
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		f, ok := families[name]
		if !ok {
			continue
		}
		for _, l := range label.FindAllStringSubmatch(rest, -1) {
			if f.labels[l[1]] == nil {
				f.labels[l[1]] = map[string]bool{}
			}
			f.labels[l[1]][l[2]] = true
		}
	}
	if len(families) < 20 {
		t.Fatalf("only %d metrics registered: %v", len(families), families)
	}
	return families
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
			if _, ok := have[n]; !ok {
				t.Errorf("%s names %s, which the daemon does not have", f, n)
			}
		}
	}
	t.Logf("%d of the daemon's %d metrics are used under deploy/", len(used), len(have))
}

// notOnDashboard are the metrics the Grafana dashboards leave out, and why.
var notOnDashboard = map[string]string{
	MetricDaemonStartedTime:      "the daemon's, not a site's: the dashboards show sites",
	MetricWALReceived:            "a position, not a quantity: the lag panels show its difference to what is stored",
	MetricWALFlushed:             "a position: as hoard_wal_received_lsn_bytes",
	MetricWALUploaded:            "a position: as hoard_wal_received_lsn_bytes",
	MetricWALStored:              "a position: as hoard_wal_received_lsn_bytes",
	MetricBackupRunning:          "the basebackup duration panel shows each one taken",
	MetricRestoreTestLastRun:     "the restore test results panel shows each run",
	MetricRestoreTestLastSuccess: "the restore test results panel shows each run",
	MetricOrphanSpoolFiles:       "labelled by the folder of a site the daemon does not run, which the dashboards' site selector never holds; the HoardOrphanSpool rule alerts on it",
}

// TestMetricNames_Dashboards: every metric of a site is shown by a panel
// of both Grafana dashboards (the site variable's query does not count),
// but for those notOnDashboard names, which exist.
func TestMetricNames_Dashboards(t *testing.T) {
	have := registeredMetrics(t)
	for name := range notOnDashboard {
		if _, ok := have[name]; !ok {
			t.Errorf("notOnDashboard names %s, which the daemon does not have", name)
		}
	}
	for _, f := range []string{"../deploy/grafana/hoard-prometheus.json", "../deploy/grafana/hoard-influxdb.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Targets []struct {
					Expr  string `json:"expr"`
					Query string `json:"query"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var q strings.Builder
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				q.WriteString(tg.Expr + "\n" + tg.Query + "\n")
			}
		}
		queries := q.String()
		for name := range have {
			if why, ok := notOnDashboard[name]; ok {
				if strings.Contains(string(b), name) {
					t.Errorf("%s shows %s, which notOnDashboard says it leaves out (%s)", f, name, why)
				}
				continue
			}
			if !regexp.MustCompile(`\b` + name + `\b`).MatchString(queries) {
				t.Errorf("%s has no panel that shows %s", f, name)
			}
		}
	}
}

// TestMetricNames_Docs: docs/monitoring.md's table of metrics has a row
// for every metric the daemon has, with its type and its labels (and the
// values of each but site), and no row for a metric it does not have.
func TestMetricNames_Docs(t *testing.T) {
	have := registeredMetrics(t)
	b, err := os.ReadFile("../docs/monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(hoard_[a-z0-9_]+)` \\| ([a-z]+) \\|([^|]*)\\|")
	code := regexp.MustCompile("`([^`]+)`")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		name, kind, labels := m[1], m[2], m[3]
		documented[name] = true
		f, ok := have[name]
		if !ok {
			t.Errorf("docs/monitoring.md documents %s, which the daemon does not have", name)
			continue
		}
		if kind != f.kind {
			t.Errorf("docs/monitoring.md: %s is a %s, documented as a %s", name, f.kind, kind)
		}
		words := map[string]bool{}
		for _, w := range code.FindAllStringSubmatch(labels, -1) {
			words[w[1]] = true
		}
		for l, values := range f.labels {
			if !words[l] {
				t.Errorf("docs/monitoring.md: %s's label %s is not documented", name, l)
			}
			for v := range values {
				if l != "site" && !words[v] {
					t.Errorf("docs/monitoring.md: %s's label %s takes %q, not documented", name, l, v)
				}
			}
		}
		for w := range words {
			if _, ok := f.labels[w]; !ok && !hasValue(f.labels, w) {
				t.Errorf("docs/monitoring.md: %s documents label %s, which it does not have", name, w)
			}
		}
	}
	for name := range have {
		if !documented[name] {
			t.Errorf("docs/monitoring.md has no row for %s", name)
		}
	}
}

// hasValue reports whether w is a value of one of labels.
func hasValue(labels map[string]map[string]bool, w string) bool {
	for _, values := range labels {
		if values[w] {
			return true
		}
	}
	return false
}
