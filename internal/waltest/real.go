package waltest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// ZeroEnded is a real WAL segment (1 MiB) whose last record ends in zero
// bytes, read from a cluster's pg_wal.
type ZeroEnded struct {
	Name string // the segment's name
	Data []byte // the whole segment file
	// Aligned is the segment offset of the end of the last record,
	// rounded up to 8 bytes as PostgreSQL counts it (XLogInsertRecord's
	// EndPos, xlogreader's EndRecPtr).
	Aligned int64
	// Before is the (aligned) end of the record before it.
	Before int64
}

// ZeroEndedSegment starts a cluster of the major version, writes rows
// spanning several WAL pages, then a non-transactional logical message of
// ten zero bytes, and returns the segment holding them once the WAL
// writer wrote it out.
func ZeroEndedSegment(t testing.TB, major int) ZeroEnded {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	c.Exec(t, "select pg_switch_wal()")
	c.Exec(t, "create table r (id int, pad text)")
	c.Exec(t, "insert into r select g, repeat('x', 300) from generate_series(1, 100) g")
	before := c.QueryString(t, "select pg_current_wal_insert_lsn()::text")
	end := c.QueryString(t, "select pg_logical_emit_message(false, 'p', '\\x00000000000000000000'::bytea)::text")
	// The message is not transactional: nothing waits for its flush.
	c.WaitTrue(t, time.Minute, "select pg_current_wal_flush_lsn() >= $1::pg_lsn", end)
	name := c.QueryString(t, "select pg_walfile_name($1::pg_lsn)", end)
	data, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
	if err != nil {
		t.Fatalf("waltest: %v", err)
	}
	offset := func(s string) int64 {
		l, err := pglogrepl.ParseLSN(s)
		if err != nil {
			t.Fatalf("waltest: %s: %v", s, err)
		}
		return int64(l % (1 << 20))
	}
	return ZeroEnded{Name: name, Data: data, Aligned: offset(end), Before: offset(before)}
}
