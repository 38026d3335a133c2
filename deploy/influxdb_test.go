package deploy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
)

// influxd starts InfluxDB 1.x (Debian package influxdb) on loopback ports
// with its data in a temporary directory and returns its HTTP address; it
// is stopped when the test ends. Without influxd the test is skipped, or
// fails under HOARD_TEST_STRICT=1.
func influxd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("influxd")
	if err != nil {
		testio.Unavailable(t, "influxd not found (Debian package influxdb; task deps installs it): %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "influxdb.conf")
	port := testio.StartServer(t, 2, func(a *testio.Attempt) error {
		cfg := fmt.Sprintf(`bind-address = "127.0.0.1:%d"
reporting-disabled = true
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  log-enabled = false
`, a.Ports[1], filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), a.Ports[0])
		if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := a.Start("influxd", nil, bin, "-config", conf)
		return p.Listen(a.Ports[0], time.Minute, func() bool {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", a.Ports[0]))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusNoContent
		})
	})[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return addr
}

// influxPost sends a request to InfluxDB's HTTP API and returns the body,
// failing the test on an error status.
func influxPost(t *testing.T, addr, path string, form url.Values, body string) []byte {
	t.Helper()
	u := "http://" + addr + path + "?" + form.Encode()
	resp, err := http.Post(u, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s: %s %s", path, resp.Status, b)
	}
	return b
}

// TestGrafanaInfluxDB runs every query of the InfluxDB dashboard, and its
// site variable's, against a real InfluxDB holding points as Telegraf's
// StatsD input writes hoard's lines (measurement: the metric; tags: the
// series' labels and metric_type; field: value): each parses and returns
// data for the site.
func TestGrafanaInfluxDB(t *testing.T) {
	d := readDashboard(t, "grafana/hoard-influxdb.json")
	addr := influxd(t)
	influxPost(t, addr, "/query", url.Values{"q": {`CREATE DATABASE "telegraf"`}}, "")

	type query struct{ panel, q string }
	var queries []query
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			queries = append(queries, query{p.Title, tg.Query})
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok && v.Type == "query" {
			queries = append(queries, query{"variable " + v.Name, q})
		}
	}

	// The points: for each measurement a query reads, three at 20 s
	// apart, tagged with the tags it groups by.
	from := regexp.MustCompile(`FROM "([a-z0-9_]+)"`)
	groupTags := regexp.MustCompile(`, "([a-z_]+)"`)
	now := time.Now().Unix()
	var lines []string
	for _, q := range queries {
		m := from.FindStringSubmatch(q.q)
		if m == nil {
			t.Fatalf("panel %q: no measurement in %q", q.panel, q.q)
		}
		kind := "gauge"
		if strings.HasSuffix(m[1], "_total") {
			kind = "counter"
		}
		tags := "metric_type=" + kind + ",site=main"
		for _, g := range groupTags.FindAllStringSubmatch(q.q, -1) {
			if g[1] != "site" {
				tags += "," + g[1] + "=x"
			}
		}
		for i := range 3 {
			lines = append(lines, fmt.Sprintf("%s,%s value=%d %d", m[1], tags, i+1, now-int64(40-20*i)))
		}
	}
	influxPost(t, addr, "/write", url.Values{"db": {"telegraf"}, "precision": {"s"}}, strings.Join(lines, "\n"))

	vars := strings.NewReplacer("$timeFilter", "time > now() - 1h", "$__interval_ms", "10000", "$__interval", "10s", "$site", "main")
	for _, q := range queries {
		body := influxPost(t, addr, "/query", url.Values{"db": {"telegraf"}, "q": {vars.Replace(q.q)}}, "")
		var r struct {
			Results []struct {
				Error  string `json:"error"`
				Series []struct {
					Values [][]any `json:"values"`
				} `json:"series"`
			} `json:"results"`
		}
		if err := json.Unmarshal(body, &r); err != nil || len(r.Results) != 1 {
			t.Errorf("panel %q: %q answers %s", q.panel, q.q, body)
			continue
		}
		if r.Results[0].Error != "" {
			t.Errorf("panel %q: %q: %s", q.panel, q.q, r.Results[0].Error)
			continue
		}
		data := false
		for _, s := range r.Results[0].Series {
			for _, v := range s.Values {
				if len(v) == 2 && v[1] != nil {
					data = true
				}
			}
		}
		if !data {
			t.Errorf("panel %q: %q returns no data: %s", q.panel, q.q, body)
		}
	}
}
