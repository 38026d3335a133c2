package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/metrics"
)

// oddWALSystem is the system identifier of oddWALSite's archive.
const oddWALSystem = 7000000000000000009

// oddWALSite returns the archive of site "site" in local storage under
// dir, the archive both tests below damage: segments 1 to 6 of timeline
// 1 and backup b1 on segments 2 and 3, of system oddWALSystem.
func oddWALSite(t *testing.T) (a *archive.Archive, dir string) {
	t.Helper()
	dir = t.TempDir()
	a = archivetest.Local(t, dir, "site", &archive.Codec{Compression: compress.Zstd})
	a.Site = "site"
	pushSegments(t, a, 1, 1, 6, oddWALSystem)
	archivetest.PutBackupInfo(t, a, "b1", gapBackup("b1", 1, 2, 3, oddWALSystem))
	return a, dir
}

// TestSupervisor_checkWALOddSegment: in local storage, the file of a
// segment a kept backup's recovery needs is replaced, its .metadata
// sidecar kept, by something no read returns (a FIFO, a directory, a
// socket). The WAL listing passes it over, so the daemon's WAL archive
// check reported it as missing, like a deleted one, and never named the
// file someone has to move away: it still counts it (the metric and
// missing_segments are unchanged), and names it as stored damaged, with
// what is there, in the status and the warning, as verify does.
func TestSupervisor_checkWALOddSegment(t *testing.T) {
	for _, odd := range testio.OddEntries {
		t.Run(odd.Name, func(t *testing.T) {
			ctx := context.Background()
			a, dir := oddWALSite(t)
			odd4 := gapSeg(1, 4)
			key := a.Layout.WALKey(odd4)
			testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(key)), odd.Make)

			d := testDaemon(t)
			var logged bytes.Buffer
			d.log = zerolog.New(&logged)
			sup := newSupervisor(d, Site{Name: "site", Active: true, WAL: WALArchiveCommand})
			sup.checkWAL(ctx, a)
			if got := sup.m.walMissing.Value(); got != 1 {
				t.Errorf("%s = %v, want 1 (a segment stored damaged ends recovery as a missing one does)", MetricWALArchiveMissing, got)
			}
			w := sup.status().WALArchive
			if w == nil || w.MissingSegments != 1 || w.FirstMissing != odd4 || w.LastError != "" {
				t.Fatalf("status = %+v, want %s missing", w, odd4)
			}
			if w.DamagedSegments != 1 || w.FirstDamaged != key || !strings.Contains(w.FirstDamagedError, odd.What) {
				t.Errorf("status = %+v, want %s named as stored damaged, saying %q", w, key, odd.What)
			}
			warn := strings.Join(linesWith(logged.String(), "wal missing from the archive"), "\n")
			if !strings.Contains(warn, "stored damaged") || !strings.Contains(warn, key) || !strings.Contains(warn, odd.What) {
				t.Errorf("warning %q does not name %s as stored damaged, saying %q\n%s", warn, key, odd.What, logged.String())
			}
		})
	}
}

// TestSupervisor_checkWALOddHistory: in local storage, timeline 2's
// history file is replaced, its .metadata sidecar kept, by something no
// read returns (a FIFO, a directory, a socket); the kept backup's WAL on
// timeline 1 is whole. The check followed it below the file, as if the
// file were absent, and reported nothing, while hoard restore refuses
// every restore of the backup (PostgreSQL's latest probe asks for the
// file, wal-fetch fails on it). The check still counts no segment
// missing, and names the file in the status and a warning.
func TestSupervisor_checkWALOddHistory(t *testing.T) {
	for _, odd := range testio.OddEntries {
		t.Run(odd.Name, func(t *testing.T) {
			ctx := context.Background()
			a, dir := oddWALSite(t)
			archivetest.PushWAL(t, a, "00000002.history", []byte("1\t0/7000000\tno recovery target specified\n"), oddWALSystem)
			key := a.Layout.WALKey("00000002.history")
			testio.ReplaceFile(t, filepath.Join(dir, filepath.FromSlash(key)), odd.Make)

			d := testDaemon(t)
			var logged bytes.Buffer
			d.log = zerolog.New(&logged)
			sup := newSupervisor(d, Site{Name: "site", Active: true, WAL: WALArchiveCommand})
			sup.checkWAL(ctx, a)
			w := sup.status().WALArchive
			if w == nil || w.MissingSegments != 0 || w.LastError != "" {
				t.Fatalf("status = %+v, want the check made, no segment missing", w)
			}
			if !strings.Contains(w.DamagedHistory, key+" is stored damaged") || !strings.Contains(w.DamagedHistory, odd.What) ||
				!slices.Equal(w.BackupsRefused, []string{"b1"}) {
				t.Errorf("status = %+v, want %s named as stored damaged, saying %q, refusing b1", w, key, odd.What)
			}
			warn := strings.Join(linesWith(logged.String(), "timeline history file stored damaged"), "\n")
			if !strings.Contains(warn, key) || !strings.Contains(warn, odd.What) {
				t.Errorf("warning %q does not name %s saying %q\n%s", warn, key, odd.What, logged.String())
			}
		})
	}
}

// TestSupervisor_checkWALOddHistoryMetric: a timeline history file stored
// damaged that makes hoard restore refuse kept backups was only in
// /status and a warning: no metric, so no alert rule could page anyone.
// The check sets MetricWALArchiveDamagedHistory to the backups refused,
// and back to 0 once a good copy is stored; and, for those who watch
// alert files, raises timeline_history_damaged, cleared then too.
func TestSupervisor_checkWALOddHistoryMetric(t *testing.T) {
	ctx := context.Background()
	a, dir := oddWALSite(t)
	archivetest.PushWAL(t, a, "00000002.history", []byte("1\t0/7000000\tno recovery target specified\n"), oddWALSystem)
	p := filepath.Join(dir, filepath.FromSlash(a.Layout.WALKey("00000002.history")))
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	testio.ReplaceFile(t, p, testio.OddEntries[0].Make)

	d := testDaemon(t)
	alert := filepath.Join(d.opts.AlertDir, AlertTimelineHistoryDamaged)
	sup := newSupervisor(d, Site{Name: "site", Active: true, WAL: WALArchiveCommand})
	sup.checkWAL(ctx, a)
	if b, err := os.ReadFile(alert); err != nil || string(b) != "alert" {
		t.Errorf("alert file %s holds %q (%v) with timeline 2's history damaged, want \"alert\"", AlertTimelineHistoryDamaged, b, err)
	}
	if got := d.alerts.Active(); !slices.Equal(got, []string{AlertTimelineHistoryDamaged}) {
		t.Errorf("alerts %v, want [%s] (no segment is missing)", got, AlertTimelineHistoryDamaged)
	}
	if got, want := registryValue(t, d.metrics, MetricWALArchiveDamagedHistory, `site="site"`), "1"; got != want {
		t.Errorf("%s = %q with timeline 2's history a %s refusing b1, want %s", MetricWALArchiveDamagedHistory, got, testio.OddEntries[0].Name, want)
	}
	if got := registryValue(t, d.metrics, MetricWALArchiveMissing, `site="site"`); got != "0" {
		t.Errorf("%s = %q, want 0 (no segment is missing)", MetricWALArchiveMissing, got)
	}

	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, good, 0o600); err != nil {
		t.Fatal(err)
	}
	sup.checkWAL(ctx, a)
	if got, want := registryValue(t, d.metrics, MetricWALArchiveDamagedHistory, `site="site"`), "0"; got != want {
		t.Errorf("%s = %q once a good copy is stored, want %s", MetricWALArchiveDamagedHistory, got, want)
	}
	if _, err := os.Stat(alert); !os.IsNotExist(err) {
		t.Errorf("alert file %s stays once a good copy is stored (%v)", AlertTimelineHistoryDamaged, err)
	}
}

// registryValue returns the value of the series name{labels} in m's
// Prometheus text, "" when m has none.
func registryValue(t *testing.T, m *metrics.Registry, name, labels string) string {
	t.Helper()
	var b strings.Builder
	if err := m.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+"{"+labels+"} "); ok {
			return v
		}
	}
	return ""
}
