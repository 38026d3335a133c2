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
// record, past the last non-zero byte, on the whole segment file and on
// a copy cut just after the record; a copy cut inside it, or with a byte
// of it changed, ends at the record before.
func TestRecordEnd(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		z := waltest.ZeroEndedSegment(t, major)
		recEnd := recordEnd(t, z.Data)
		nz := int64(len(bytes.TrimRight(z.Data[:z.Aligned], "\x00")))
		if recEnd <= z.Aligned-8 || recEnd > z.Aligned || nz >= recEnd {
			t.Fatalf("End %d: want it after the last non-zero byte %d and within 8 bytes before the aligned end %d", recEnd, nz, z.Aligned)
		}
		if got := recordEnd(t, z.Data[:recEnd]); got != recEnd {
			t.Errorf("cut at the record's end: End %d, want %d", got, recEnd)
		}
		if got := recordEnd(t, z.Data[:recEnd-1]); got > z.Before || got <= z.Before-8 {
			t.Errorf("cut inside the last record: End %d, want the end of the record before, by %d", got, z.Before)
		}
		bad := bytes.Clone(z.Data[:recEnd])
		bad[recEnd-1] ^= 0x01
		if got := recordEnd(t, bad); got > z.Before || got <= z.Before-8 {
			t.Errorf("last record changed: End %d, want the end of the record before, by %d", got, z.Before)
		}
		if got := recordEnd(t, z.Data[:100]); got > 100 {
			t.Errorf("first 100 bytes: End %d", got)
		}
	})
}
