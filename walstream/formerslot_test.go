package walstream

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// formerSlotWarning is the message noteSlotCreated logs.
const formerSlotWarning = "created the replication slot on a server that lacked it"

// TestReceiver_Run_FormerSlot: a new spool's first slot is created with
// no warning; after the receiver streamed through it, a Receiver on that
// spool that finds the slot missing (the address now names a promoted
// server, or the slot was dropped) creates it again and says, once, at
// warning level and in Status.FormerSlot, that the server streamed from
// before may still have the slot, and how to drop it.
func TestReceiver_Run_FormerSlot(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	spool := t.TempDir()
	s := newSink(t)
	var logs testio.SyncBuffer
	rr := startLogged(t, c, spool, s, Options{}, &logs)
	switchWAL(t, c)
	if f := rr.r.Status().FormerSlot; f != nil || strings.Contains(logs.String(), formerSlotWarning) {
		t.Errorf("a new spool's first slot: FormerSlot %+v, or the log warns:\n%s", f, logs.String())
	}
	rr.stop(t)

	c.Exec(t, "select pg_drop_replication_slot('hoard')")
	logs = testio.SyncBuffer{}
	rr = startLogged(t, c, spool, s, Options{}, &logs)
	switchWAL(t, c)
	f := rr.r.Status().FormerSlot
	if f == nil || f.Slot != "hoard" || f.Timeline != 1 || f.StreamedTimeline != 1 || f.At.IsZero() {
		t.Fatalf("FormerSlot %+v, want slot hoard, timeline 1, streamed timeline 1", f)
	}
	drop := "SELECT pg_drop_replication_slot('hoard')"
	if !strings.Contains(f.Hint(), drop) {
		t.Errorf("hint %q does not say %s", f.Hint(), drop)
	}
	out := logs.String()
	if n := strings.Count(out, formerSlotWarning); n != 1 {
		t.Errorf("the warning is logged %d times, want once:\n%s", n, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, formerSlotWarning) && (!strings.Contains(line, `"level":"warn"`) || !strings.Contains(line, drop)) {
			t.Errorf("the warning is not at warn level or does not say %s:\n%s", drop, line)
		}
	}
}
