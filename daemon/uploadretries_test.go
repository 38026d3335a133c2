package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRun_UploadRetriesLeftover starts the daemon with the
// upload_retries_warning file an earlier run left (it stopped while the
// storage failed) and a storage that works again: once the site stores
// WAL, the file goes, as the alert table says (cleared when uploads
// succeed again on every site that raised it), instead of staying, and
// showing in /status, for as long as no upload fails 4 times in a row.
func TestRun_UploadRetriesLeftover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	alerts := filepath.Join(t.TempDir(), "alerts")
	if err := NewAlerts(alerts).Raise(AlertUploadRetries); err != nil {
		t.Fatal(err)
	}
	site := streamingSite(t, c.ConnString("postgres"))
	rd := runDaemon(t, Options{Sites: []Site{site}, AlertDir: alerts})
	st := rd.waitFor("the receiver streaming", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.Connected
	})
	if !slices.Contains(st.Alerts, AlertUploadRetries) {
		t.Errorf("alerts %v at the start, want the leftover %s shown", st.Alerts, AlertUploadRetries)
	}
	seg := c.SwitchWAL(t)
	rd.waitFor("segment "+seg+" stored", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.Segment > seg && w.QueueDepth == 0
	})
	deadline := time.Now().Add(10 * time.Second)
	for rd.alertFile(AlertUploadRetries) {
		if time.Now().After(deadline) {
			st, _ := rd.status()
			t.Fatalf("WAL stored, no upload failing: %s left by the earlier run still there (alerts %v)", AlertUploadRetries, st.Alerts)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(alerts, AlertUploadRetries)); !os.IsNotExist(err) {
		t.Errorf("stat %s = %v, want it gone", AlertUploadRetries, err)
	}
}
