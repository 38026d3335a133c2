package wal_test

import (
	"bytes"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// recordEnd writes b to a RecordEnd in uneven pieces, as a reader
// delivers them, and returns its End.
func recordEnd(t *testing.T, b []byte) int64 {
	t.Helper()
	var r wal.RecordEnd
	for len(b) > 0 {
		n := min(len(b), 777)
		if _, err := r.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	return r.End()
}

// TestRecordEnd reads a real segment whose last record ends in zero
// bytes, after rows spanning several pages: End is the end of that
// record as PostgreSQL counts it (aligned), past the last non-zero byte,
// on the whole segment file and on a copy cut there; a copy cut inside
// the record, or with a byte of it changed, ends at the record before.
func TestRecordEnd(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		z := waltest.ZeroEndedSegment(t, major)
		if nz := int64(len(bytes.TrimRight(z.Data[:z.Aligned], "\x00"))); nz >= z.Aligned-1 {
			t.Fatalf("the last record does not end in zeros: last non-zero byte at %d, end %d", nz, z.Aligned)
		}
		if got := recordEnd(t, z.Data); got != z.Aligned {
			t.Errorf("whole segment: End %d, want %d", got, z.Aligned)
		}
		if got := recordEnd(t, z.Data[:z.Aligned]); got != z.Aligned {
			t.Errorf("cut at the record's end: End %d, want %d", got, z.Aligned)
		}
		if got := recordEnd(t, z.Data[:z.Aligned-8]); got != z.Before {
			t.Errorf("cut inside the last record: End %d, want the end of the record before, %d", got, z.Before)
		}
		bad := bytes.Clone(z.Data[:z.Aligned])
		bad[z.Aligned-9] ^= 0x01
		if got := recordEnd(t, bad); got != z.Before {
			t.Errorf("last record changed: End %d, want the end of the record before, %d", got, z.Before)
		}
		if got := recordEnd(t, z.Data[:100]); got > 100 {
			t.Errorf("first 100 bytes: End %d", got)
		}
	})
}
