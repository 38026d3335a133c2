package daemon

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_WALStoredLag follows the recovery point objective of a site
// that uploads the segment it receives as a .partial: WAL written on a
// quiet server shows as stored (wal.stored_lsn, hoard_wal_stored_lsn_bytes)
// well before its segment completes. While the storage is unreachable
// the WAL written meanwhile is not stored: the lag grows in /status and
// the metrics, and wal_stored_lag_warning is raised past
// wal_stored_lag_alert_seconds; once the storage is back, the WAL is
// stored and the alert cleared.
func TestRun_WALStoredLag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c, site := backedUpCluster(t, st)
	site.ActiveBackupMode = "walreceiver"
	site.PartialUploadInterval = 300 * time.Millisecond
	site.StoredLagAlert = 2 * time.Second
	port := testio.FreePort(t)
	opts := Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}, DrainTimeout: time.Second}
	rd := runDaemon(t, opts)
	rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 })

	lsnOf := func(s string) pglogrepl.LSN {
		l, err := pglogrepl.ParseLSN(s)
		if err != nil {
			t.Fatalf("LSN %q: %v", s, err)
		}
		return l
	}
	emit := func() pglogrepl.LSN {
		// Its end: the message is written out by the WAL writer.
		return lsnOf(c.QueryString(t, "select pg_logical_emit_message(false, 'hoard-test', 'x')::text"))
	}
	storedAt := func(lsn pglogrepl.LSN) func(Status) bool {
		return func(st Status) bool {
			w := st.Sites["test"].WAL
			return w != nil && w.Stored != "" && lsnOf(w.Stored) >= lsn
		}
	}

	// A few bytes on a quiet server are stored as the .partial copy.
	lsn := emit()
	seg := c.QueryString(t, "select pg_walfile_name($1::pg_lsn)", lsn.String())
	got := rd.waitFor("the WAL stored as a .partial", storedAt(lsn)).Sites["test"].WAL
	if lsnOf(got.Uploaded) > lsn {
		t.Fatalf("segment %s complete (uploaded to %s): the test needs it still being received", seg, got.Uploaded)
	}
	m := metric(t, port, MetricWALStored+"{")
	if v, err := strconv.ParseFloat(m[strings.LastIndexByte(m, ' ')+1:], 64); err != nil || pglogrepl.LSN(v) < lsn {
		t.Errorf("metric %q, want at least %d (%s)", m, uint64(lsn), lsn)
	}
	// Not raised while the WAL is stored. Polled, not looked at once: WAL
	// the server writes after lsn (a running-transactions record, say) is
	// not in the copy that stored lsn, and on a loaded machine whose
	// fsyncs stall, its own copy may be stored more than StoredLagAlert
	// after it arrived; the alert is then rightly raised until it is. A
	// daemon that raises it with all WAL stored never clears it and fails
	// the wait.
	rd.waitFor(AlertWALStoredLag+" not raised with the WAL stored", func(s Status) bool {
		return storedAt(lsn)(s) && !rd.alertFile(AlertWALStoredLag)
	})

	// The storage goes away: what is written now is not stored.
	st.down.Store(true)
	lsn = emit()
	rd.waitFor("the alert", func(Status) bool { return rd.alertFile(AlertWALStoredLag) })
	if w := rd.waitFor("the status", func(st Status) bool { return st.Sites["test"].WAL.StoredLagSeconds > 2 }).Sites["test"].WAL; w.StoredLagBytes == 0 || lsnOf(w.Stored) >= lsn {
		t.Errorf("storage down: %+v, want WAL before %s not stored", *w, lsn)
	}
	if m := metric(t, port, MetricWALStoredLagSecs+"{"); strings.HasSuffix(m, " 0") || m == "" {
		t.Errorf("metric %q while the storage is down, want above 0", m)
	}
	if m := metric(t, port, MetricWALStoredLagBytes+"{"); strings.HasSuffix(m, " 0") || m == "" {
		t.Errorf("metric %q while the storage is down, want above 0", m)
	}

	// The storage is back: the WAL is stored, the alert cleared.
	st.down.Store(false)
	rd.waitFor("the WAL stored and the alert cleared", func(s Status) bool {
		return storedAt(lsn)(s) && !rd.alertFile(AlertWALStoredLag)
	})
}
