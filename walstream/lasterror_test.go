package walstream

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// TestReceiver_Run_LastErrorCleared: the connection is cut (the walsender
// terminated) and the receiver reconnects: once it streams again, the
// cut's error no longer shows in Status.LastError; it was logged.
func TestReceiver_Run_LastErrorCleared(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
	s := newSink(t)
	var logs testio.SyncBuffer
	rr := startLogged(t, c, t.TempDir(), s, Options{}, &logs)
	pid := c.QueryString(t, "select active_pid::text from pg_replication_slots where slot_name = 'hoard'")
	c.Exec(t, "select pg_terminate_backend($1::int)", pid)
	waitFor(t, "the cut logged", func() bool { return strings.Contains(logs.String(), "streaming interrupted; reconnecting") })
	waitFor(t, "streaming again", func() bool {
		return rr.r.Status().Connected && c.QueryString(t, "select coalesce(active_pid::text, '-') from pg_replication_slots where slot_name = 'hoard'") != pid &&
			c.QueryString(t, "select active::text from pg_replication_slots where slot_name = 'hoard'") == "true"
	})
	switchWAL(t, c)
	if st := rr.r.Status(); st.LastError != "" || st.LastErr != nil || !st.LastErrorAt.IsZero() {
		t.Errorf("streaming again after the cut: last error %q at %v, want none", st.LastError, st.LastErrorAt)
	}
}
