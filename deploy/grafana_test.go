package deploy_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Type        string `json:"type"`
		Title       string `json:"title"`
		Description string `json:"description"`
		Datasource  struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`  // Prometheus
			Query string `json:"query"` // InfluxQL
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T, path string) dashboard {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// TestGrafanaDashboards: the Prometheus and the InfluxDB dashboards have
// the same panels in the same order, each with a description and a query
// of its data source per target, filtered by the site variable.
func TestGrafanaDashboards(t *testing.T) {
	dashboards := map[string]struct {
		path, dsType string
	}{
		"prometheus": {"grafana/hoard-prometheus.json", "prometheus"},
		"influxdb":   {"grafana/hoard-influxdb.json", "influxdb"},
	}
	titles := map[string][]string{}
	uids := map[string]bool{}
	for name, want := range dashboards {
		d := readDashboard(t, want.path)
		if d.Title == "" || d.UID == "" || uids[d.UID] {
			t.Errorf("%s: title %q, uid %q (must be set and differ between dashboards)", want.path, d.Title, d.UID)
		}
		uids[d.UID] = true
		var vars []string
		for _, v := range d.Templating.List {
			vars = append(vars, v.Name+":"+v.Type)
		}
		if !slices.Equal(vars, []string{"datasource:datasource", "site:query"}) {
			t.Errorf("%s: variables %v, want datasource and site", want.path, vars)
		}
		for _, p := range d.Panels {
			titles[name] = append(titles[name], p.Type+" "+p.Title)
			if p.Type == "row" {
				continue
			}
			if p.Description == "" {
				t.Errorf("%s: panel %q has no description", want.path, p.Title)
			}
			if p.Datasource.Type != want.dsType || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q data source %+v, want %s ${datasource}", want.path, p.Title, p.Datasource, want.dsType)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", want.path, p.Title)
			}
			for _, tg := range p.Targets {
				q := tg.Expr
				filter := `site=~"$site"`
				if want.dsType == "influxdb" {
					q, filter = tg.Query, `"site" =~ /^$site$/`
					if tg.Expr != "" {
						t.Errorf("%s: panel %q target %s has a Prometheus expr", want.path, p.Title, tg.RefID)
					}
				} else if tg.Query != "" {
					t.Errorf("%s: panel %q target %s has an InfluxQL query", want.path, p.Title, tg.RefID)
				}
				if !strings.Contains(q, filter) {
					t.Errorf("%s: panel %q target %s: %q does not filter by %s", want.path, p.Title, tg.RefID, q, filter)
				}
			}
		}
	}
	if !slices.Equal(titles["prometheus"], titles["influxdb"]) {
		t.Errorf("the dashboards' panels differ:\nprometheus %q\ninfluxdb   %q", titles["prometheus"], titles["influxdb"])
	}
	if len(titles["prometheus"]) < 10 {
		t.Errorf("%d panels: %q", len(titles["prometheus"]), titles["prometheus"])
	}
}
