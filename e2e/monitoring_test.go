package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
)

// promServer is a real Prometheus (Debian package prometheus) on a
// loopback port, scraping one hoard daemon every second under job="hoard"
// and evaluating deploy/prometheus/hoard-rules.yml every second.
type promServer struct {
	t    *testing.T
	port int
}

// startPrometheus starts Prometheus scraping the daemon at target
// (host:port); it is stopped when the test ends. Without a prometheus
// binary the test is skipped, or fails under HOARD_TEST_STRICT=1.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testio.Unavailable(t, "prometheus not found (Debian package prometheus; task deps installs it): %v", err)
	}
	rules, err := filepath.Abs("../deploy/prometheus/hoard-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: hoard
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &promServer{t: t}
	testio.StartServer(t, 1, func(a *testio.Attempt) error {
		p.port = a.Ports[0]
		proc := a.Start("prometheus", nil, bin,
			"--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			fmt.Sprintf("--web.listen-address=127.0.0.1:%d", p.port))
		return proc.Listen(p.port, time.Minute, func() bool {
			_, ok := p.get("/-/ready")
			return ok
		})
	})
	return p
}

// get returns the body of a GET on Prometheus's HTTP API.
func (p *promServer) get(path string) ([]byte, bool) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path))
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, err == nil && resp.StatusCode == http.StatusOK
}

// query evaluates expr now: the number of series in the result, or the
// error Prometheus gives.
func (p *promServer) query(expr string) (int, error) {
	body, _ := p.get("/api/v1/query?query=" + url.QueryEscape(expr))
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("query %q: %v: %s", expr, err, body)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %q: %s", expr, r.Error)
	}
	return len(r.Data.Result), nil
}

// dashboardQueries returns each Prometheus expression of the Grafana
// dashboard, by panel title, with Grafana's variables replaced as Grafana
// would for the site.
func dashboardQueries(t *testing.T, site string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../deploy/grafana/hoard-prometheus.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$site", site, "$__rate_interval", "1m", "$__interval", "15s")
	out := map[string][]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], vars.Replace(tg.Expr))
		}
	}
	if len(out) < 10 {
		t.Fatalf("%d panels with queries in the dashboard", len(out))
	}
	return out
}

// checkMonitoring: Prometheus scrapes the daemon (up is 1), every query of
// the Grafana dashboard returns data for the site, and every alerting rule
// evaluates without error and, the site being healthy, none is pending or
// firing.
func checkMonitoring(t *testing.T, d *daemonProc, p *promServer) {
	t.Helper()
	qs := dashboardQueries(t, d.s.name)
	qs["scraped"] = []string{`up{job="hoard"} == 1`}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for title, exprs := range qs {
		for _, expr := range exprs {
			var n int
			var err error
			for n, err = p.query(expr); err == nil && n == 0 && ctx.Err() == nil; n, err = p.query(expr) {
				time.Sleep(500 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("panel %q: %v", title, err)
			} else if n == 0 {
				t.Errorf("panel %q: %s returns no data within a minute", title, expr)
			}
		}
	}

	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name           string    `json:"name"`
					Health         string    `json:"health"`
					LastError      string    `json:"lastError"`
					State          string    `json:"state"`
					LastEvaluation time.Time `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	scraped := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		body, ok := p.get("/api/v1/rules")
		if !ok || json.Unmarshal(body, &rules) != nil {
			t.Fatalf("GET /api/v1/rules: %s", body)
		}
		evaluated := len(rules.Data.Groups) == 1
		for _, g := range rules.Data.Groups {
			for _, r := range g.Rules {
				evaluated = evaluated && r.LastEvaluation.After(scraped)
			}
		}
		if evaluated {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the rules were not all evaluated within a minute: %+v", rules)
		}
		time.Sleep(500 * time.Millisecond)
	}
	n := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" || r.LastError != "" {
				t.Errorf("rule %s: health %q, error %q", r.Name, r.Health, r.LastError)
			}
			if r.State != "inactive" {
				t.Errorf("rule %s is %s for a healthy site", r.Name, r.State)
			}
		}
	}
	if n < 10 {
		t.Errorf("Prometheus loaded %d rules from hoard-rules.yml", n)
	}
}
