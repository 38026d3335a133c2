package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
)

// TestSupervisor_IncrementalFallback: a scheduled incremental backup
// refused for its parent (ErrNoParent: none stored, or its chain broken)
// gives way to a full backup, and the daemon counts it where it reports
// backup health: hoard_incremental_fallbacks_total{reason="no_parent"} and the site's status
// (incremental_fallbacks, last_incremental_fallback naming the parent and
// why), beside the warning in its log. Before, only the log said it: a
// broken parent made every scheduled incremental backup a full one with
// nothing to alert on.
func TestSupervisor_IncrementalFallback(t *testing.T) {
	d, logs, conn, arch := requestDaemon(t)
	s := newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn})
	d.sups["main"] = s
	refusal := fmt.Errorf("basebackup: parent backup 2026-12-05_04-00_0 cannot be restored, it is broken: chunk x is missing: %w: %w",
		basebackup.ErrBrokenParent, basebackup.ErrNoParent)
	var full int
	s.runBackup = func(_ context.Context, o basebackup.Options) (*archive.BackupInfo, error) {
		if o.Incremental {
			return nil, refusal
		}
		full++
		return &archive.BackupInfo{Name: "2026-12-05_05-00_0", BackupReason: o.Reason}, nil
	}
	name, err := s.backup(context.Background(), arch, basebackup.ReasonScheduled, time.Now(), time.Time{}, true)
	if err != nil || name != "2026-12-05_05-00_0" || full != 1 {
		t.Fatalf("backup: %q, %v, %d full ones; want the full one taken instead", name, err, full)
	}
	// A broken parent is counted apart from none stored (a first
	// backup, a new timeline after a promotion), which damages nothing.
	for reason, want := range map[string]float64{"broken_parent": 1, "no_parent": 0, "unavailable": 0} {
		if got := d.metrics.Counter(MetricIncrementalFallbacks, "", map[string]string{"site": "main", "reason": reason}).Value(); got != want {
			t.Errorf("%s{reason=%s} = %v, want %v", MetricIncrementalFallbacks, reason, got, want)
		}
	}
	js, err := json.Marshal(s.status())
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(js, &st); err != nil {
		t.Fatal(err)
	}
	if got, want := st["incremental_fallbacks"], 1.0; got != want {
		t.Errorf("status incremental_fallbacks = %v, want %v", got, want)
	}
	if got, _ := st["last_incremental_fallback"].(string); !strings.Contains(got, "2026-12-05_04-00_0") || !strings.Contains(got, "chunk x is missing") {
		t.Errorf("status last_incremental_fallback = %q, want the refusal naming the parent and why", got)
	}
	if !strings.Contains(logs.String(), "incremental basebackup not possible") {
		t.Errorf("no warning logged:\n%s", logs)
	}
}

// TestSupervisor_IncrementalStorageError: a scheduled incremental backup
// that fails because the storage failed while its parent's chain was
// checked (basebackup's error wraps the storage's, neither ErrNoParent
// nor ErrBrokenParent) is a failed backup: counted in
// hoard_basebackups_total{result="failure"} and the status's
// last_backup_error, tried again on the daemon's backoff. It is no
// fallback: no full backup is taken in its place, and
// hoard_incremental_fallbacks_total (whose broken_parent reason raises
// HoardIncrementalBrokenParent) is not counted, nor the status's
// incremental_fallbacks.
func TestSupervisor_IncrementalStorageError(t *testing.T) {
	d, _, conn, arch := requestDaemon(t)
	s := newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn})
	d.sups["main"] = s
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	failure := fmt.Errorf("basebackup: parent backup 2026-12-05_04-00_0: it could not be checked: open control object x: %w; "+
		"the incremental backup is not taken, and is tried again", unavailable)
	var full int
	s.runBackup = func(_ context.Context, o basebackup.Options) (*archive.BackupInfo, error) {
		if o.Incremental {
			return nil, failure
		}
		full++
		return &archive.BackupInfo{Name: "2026-12-05_05-00_0", BackupReason: o.Reason}, nil
	}
	name, err := s.backup(context.Background(), arch, basebackup.ReasonScheduled, time.Now(), time.Time{}, true)
	if !errors.Is(err, unavailable) || name != "" || full != 0 {
		t.Fatalf("backup: %q, %v, %d full ones; want the storage's error and no full backup", name, err, full)
	}
	for _, reason := range []string{"broken_parent", "no_parent", "unavailable"} {
		if got := d.metrics.Counter(MetricIncrementalFallbacks, "", map[string]string{"site": "main", "reason": reason}).Value(); got != 0 {
			t.Errorf("%s{reason=%s} = %v, want 0", MetricIncrementalFallbacks, reason, got)
		}
	}
	if got := d.metrics.Counter(MetricBackups, "", map[string]string{"site": "main", "result": "failure"}).Value(); got != 1 {
		t.Errorf("%s{result=failure} = %v, want 1", MetricBackups, got)
	}
	st := s.status()
	if st.IncrementalFallbacks != 0 || !strings.Contains(st.LastBackupError, "503") {
		t.Errorf("status: incremental_fallbacks %d, last_backup_error %q; want 0 and the storage's error", st.IncrementalFallbacks, st.LastBackupError)
	}
}
