package daemon

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestRun_SynchronousPlantedPartial is a bucket writer without keys
// against synchronous mode: before the daemon stores the segment it is
// receiving, xlog/<segment>.partial is planted with metadata claiming a
// whole segment of WAL (partial-data-size is not authenticated) and
// bytes that are no WAL. A commit on the primary, which lists the
// daemon as its synchronous standby, may return only once the archive
// holds its WAL, and the daemon's stored_lsn may not pass what the
// archive holds: the daemon's own copy must replace the planted one.
func TestRun_SynchronousPlantedPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	st := storage.NewLocal(t.TempDir())
	site := streamingSiteTo(t, c.ConnString("postgres"), st)
	site.ActiveBackupMode = "walreceiver"
	site.Synchronous = true
	site.ApplicationName = "hoard_test"
	arch, _, err := site.OpenArchive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Exec(t, "create table t (id int)")
	// A fresh segment, so that the commits below land in it.
	c.Exec(t, "select pg_switch_wal()")
	c.Exec(t, "insert into t values (0)")
	seg := c.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	key := arch.Layout.WALKey(seg + ".partial")
	planted := storage.Metadata{archive.MetaPartialDataSize: strconv.Itoa(1 << 20)}
	if err := st.Put(ctx, key, strings.NewReader("not WAL"), planted); err != nil {
		t.Fatal(err)
	}

	rd := runDaemon(t, Options{Sites: []Site{site}, DrainTimeout: time.Second})
	rd.waitFor("the receiver streaming", func(s Status) bool {
		w := s.Sites["test"].WAL
		return w != nil && w.Stored != "" && w.Stored != "0/0"
	})
	c.Exec(t, "alter system set synchronous_standby_names = 'hoard_test'")
	c.Exec(t, "select pg_reload_conf()")
	deadline := time.Now().Add(time.Minute)
	for c.QueryString(t, "select count(*) from pg_stat_replication where application_name = 'hoard_test' and sync_state = 'sync'") != "1" {
		if time.Now().After(deadline) {
			t.Fatal("the daemon is not a synchronous standby")
		}
		time.Sleep(100 * time.Millisecond)
	}

	for i := 1; i <= 5; i++ {
		// The commit returns once the daemon reported its WAL flushed.
		end, err := pglogrepl.ParseLSN(c.QueryString(t, "insert into t values ($1) returning pg_current_wal_insert_lsn()::text", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.QueryString(t, "select pg_walfile_name($1::pg_lsn)", end.String()); got != seg {
			t.Fatalf("commit %d is in %s, the test needs it in %s", i, got, seg)
		}
		held := heldThrough(t, arch, seg)
		if held < end {
			t.Fatalf("commit %d at %s returned, acknowledged by the daemon, but %s holds WAL only through %s", i, end, key, held)
		}
		if w := rd.waitFor("the status", func(Status) bool { return true }).Sites["test"].WAL; w != nil {
			if s, err := pglogrepl.ParseLSN(w.Stored); err == nil && s > heldThrough(t, arch, seg) {
				t.Fatalf("stored_lsn %s, but %s holds WAL only through %s", s, key, heldThrough(t, arch, seg))
			}
		}
	}
}

// heldThrough returns where the WAL of segment seg that the archive
// holds (the complete segment, or its .partial) ends, read from the
// decoded content, not the metadata: 0 when neither object holds WAL of that
// segment (no object, not decodable, or a page header that is not seg's).
func heldThrough(t *testing.T, arch *archive.Archive, seg string) pglogrepl.LSN {
	t.Helper()
	ctx := context.Background()
	for _, name := range []string{seg, seg + wal.PartialSuffix} {
		rc, _, err := arch.Codec.Open(ctx, arch.Store, arch.Layout.WALKey(name))
		if err != nil {
			continue
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || len(b) < wal.PageHeaderSize {
			continue
		}
		h, err := wal.CheckSegment(name, b[:wal.PageHeaderSize], int64(len(b)))
		if err != nil {
			continue
		}
		// The receiver's copies are not padded: their length is the
		// WAL they hold (the zeros of a record's alignment included).
		return h.PageAddr + pglogrepl.LSN(len(b))
	}
	return 0
}
