package daemon

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// siteSeries returns the sample lines of the Prometheus text at port
// whose labels hold site="<site>".
func siteSeries(t *testing.T, port int, site string) []string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "#") && strings.Contains(l, `site="`+site+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestRun_ReloadStreamingMetrics: a reload that stops a site from
// streaming WAL takes away the series that said it streamed. Before, the
// site's hoard_wal_connected stayed at its last value, 1: a dashboard
// showed connected a site no longer streamed (and a 0 left there would
// have fired HoardWALNotStreaming for good). A removed site has no series
// at all (its hoard_site_running 0 and its basebackup's age would fire
// HoardSiteDown and HoardBackupTooOld for good); a site kept with
// another active_backup_mode, or made inactive, has no
// hoard_wal_connected and its streaming gauges read 0, as when the
// daemon starts with that configuration.
func TestRun_ReloadStreamingMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	for _, tc := range []struct {
		name   string
		next   func(Site) []Site
		remain bool // the site is still configured
		active bool // and active
	}{
		{"Removed", func(Site) []Site { return nil }, false, false},
		{"ArchiveCommand", func(s Site) []Site {
			s.Fingerprint, s.ActiveBackupMode, s.WAL = "2", "archive_command", WALArchiveCommand
			return []Site{s}
		}, true, true},
		{"Inactive", func(s Site) []Site {
			s.Fingerprint, s.Active = "2", false
			return []Site{s}
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
			site := streamingSiteTo(t, c.ConnString("postgres"), storage.NewLocal(t.TempDir()))
			port := testio.FreePort(t)
			reload := make(chan []Site)
			rd := runDaemon(t, Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port},
				DrainTimeout: 5 * time.Second, Reload: reload})
			rd.waitFor("the receiver streaming", func(s Status) bool {
				w := s.Sites["test"].WAL
				return w != nil && w.Connected
			})
			connected := MetricWALConnected + `{site="test"}`
			deadline := time.Now().Add(runTimeout)
			for metric(t, port, connected) != connected+" 1" {
				if time.Now().After(deadline) {
					t.Fatalf("metric %q, want the receiver connected", metric(t, port, connected))
				}
				time.Sleep(100 * time.Millisecond)
			}
			c.Exec(t, "create table t as select generate_series(1, 1000) as i")
			rd.waitFor("WAL received", func(s Status) bool {
				w := s.Sites["test"].WAL
				return w != nil && w.Received != "0/0"
			})
			time.Sleep(time.Second) // a few refreshes (StateInterval 200ms)

			reload <- tc.next(site)
			rd.waitLog("configuration reloaded")
			time.Sleep(time.Second) // refreshes after the reload, too

			running := metric(t, port, MetricSiteRunning+`{site="test"}`)
			if want := MetricSiteRunning + `{site="test"} 1`; tc.active && running != want {
				t.Errorf("after the reload: %q, want %q", running, want)
			}
			if !tc.active && running != "" {
				t.Errorf("after the reload: %q, want no %s (the site is not active, as when the daemon starts so)", running, MetricSiteRunning)
			}
			if got := metric(t, port, MetricWALConnected+"{"); got != "" {
				t.Errorf("after the reload: %q, want no %s (the site does not stream)", got, MetricWALConnected)
			}
			got := siteSeries(t, port, "test")
			if !tc.remain {
				if len(got) > 0 {
					t.Errorf("removed site's series still exported:\n%s", strings.Join(got, "\n"))
				}
				return
			}
			for _, name := range []string{MetricWALReceived, MetricWALFlushed, MetricWALUploaded, MetricWALStored,
				MetricWALLagBytes, MetricWALLagSeconds, MetricWALStoredLagBytes, MetricWALStoredLagSecs,
				MetricWALQueue, MetricWALPaused, MetricWALHoleSegments, MetricLastUpload} {
				want := name + `{site="test"} 0`
				if got := metric(t, port, name+`{site="test"}`); got != want && got != "" {
					t.Errorf("after the reload: %q, want %q or none (the site does not stream)", got, want)
				}
			}
		})
	}
}
