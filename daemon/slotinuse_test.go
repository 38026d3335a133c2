package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// holdSlot streams from c's physical replication slot slot, as a
// pg_receivewal would, until the returned function closes the
// connection. It answers the server's keepalives so that
// wal_sender_timeout does not end it.
func holdSlot(t *testing.T, c *pgtest.Cluster, slot string) (release func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgconn.Connect(ctx, c.ConnString("postgres")+" replication=true")
	if err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(c.QueryString(t, "select pg_current_wal_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pglogrepl.StartReplication(ctx, conn, slot, lsn, pglogrepl.StartReplicationOptions{Mode: pglogrepl.PhysicalReplication}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := conn.ReceiveMessage(rctx)
			rcancel()
			if err != nil && !pgconn.Timeout(err) {
				return
			}
			if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: lsn}); err != nil {
				return
			}
		}
	}()
	release = func() {
		cancel()
		<-done
		_ = conn.Close(context.Background())
	}
	t.Cleanup(release)
	return release
}

// TestRun_SlotActiveElsewhere: another process (a pg_receivewal, another
// hoard) streams from the site's replication slot, so the server refuses
// the daemon's START_REPLICATION ("replication slot ... is active for PID
// N"). WAL capture has stopped until someone acts: the daemon raises the
// configuration_error alert file, its status says which process holds
// the slot and what to do, and it retries with backoff, not in a loop.
// Once the other process lets the slot go, the daemon streams and the
// alert is cleared.
func TestRun_SlotActiveElsewhere(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	site := streamingSite(t, c.ConnString("postgres"))
	c.Exec(t, "select pg_create_physical_replication_slot('"+site.Slot+"', true)")
	release := holdSlot(t, c, site.Slot)
	pid := c.QueryString(t, "select active_pid::text from pg_replication_slots where slot_name = '"+site.Slot+"'")

	rd := runDaemon(t, Options{Sites: []Site{site}})
	rd.waitFor("the slot refused", func(s Status) bool {
		w := s.Sites["test"].WAL
		return w != nil && w.LastError != ""
	})
	start := time.Now()
	st := rd.waitFor("the "+AlertConfiguration+" alert", func(Status) bool { return rd.alertFile(AlertConfiguration) })
	w := st.Sites["test"].WAL
	for _, want := range []string{"PID " + pid, "another process streams from it", "stop it, or give this site a slot of its own"} {
		if !strings.Contains(w.LastError, want) {
			t.Errorf("the status's error %q does not say %q", w.LastError, want)
		}
	}
	// Backoff from 1 s doubling to 30 s: a handful of attempts, not a
	// loop hammering the server.
	time.Sleep(8*time.Second - time.Since(start))
	if n := strings.Count(rd.logs.String(), "streaming interrupted; reconnecting"); n > 6 {
		t.Errorf("%d attempts within about 8 s: want backoff", n)
	}

	release()
	rd.waitFor("streaming once the slot is free", func(s Status) bool {
		w := s.Sites["test"].WAL
		return w != nil && w.Connected
	})
	rd.waitFor("the alert cleared", func(Status) bool { return !rd.alertFile(AlertConfiguration) })
}
