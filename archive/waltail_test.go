package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

func TestWALListing_StandIn(t *testing.T) {
	const seg5 = "000000010000000000000005"
	tests := []struct {
		name      string
		segments  []string
		partials  []string
		histories []uint32
		want      bool
	}{
		{name: "OK end of the archive", segments: []string{"000000010000000000000004"}, partials: []string{seg5}, want: true},
		{name: "OK only the partial", partials: []string{seg5}, want: true},
		{name: "OK older timeline stored", segments: []string{"000000010000000000000004"}, partials: []string{seg5, "000000010000000000000003"}, want: true},
		{name: "ErrNoPartial", segments: []string{"000000010000000000000004"}},
		{name: "ErrSegmentStored", segments: []string{seg5}, partials: []string{seg5}},
		{name: "ErrNewerSegment", segments: []string{"000000010000000000000006"}, partials: []string{seg5}},
		{name: "ErrNewerLog", segments: []string{"000000010000000100000000"}, partials: []string{seg5}},
		{name: "ErrNewerPartial", partials: []string{seg5, "000000010000000000000007"}},
		{name: "ErrLaterTimelineHistory", partials: []string{seg5}, histories: []uint32{2}},
		{name: "ErrLaterTimelineSegment", partials: []string{seg5}, segments: []string{"000000020000000000000005"}},
		{name: "ErrLaterTimelinePartial", partials: []string{seg5, "000000020000000000000004"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &WALListing{Segments: map[string]WALFile{}, Partials: map[string]WALFile{}, Histories: map[uint32]WALFile{}}
			for _, n := range tt.segments {
				l.Segments[n] = WALFile{Name: n}
			}
			for _, n := range tt.partials {
				l.Partials[n] = WALFile{Name: n + ".partial"}
			}
			for _, tli := range tt.histories {
				l.Histories[tli] = WALFile{Name: wal.HistoryFileName(tli)}
			}
			p, ok := l.StandIn(seg5)
			if ok != tt.want {
				t.Fatalf("StandIn = %v, want %v", ok, tt.want)
			}
			if ok && p.Name != seg5+".partial" {
				t.Errorf("StandIn = %s", p.Name)
			}
		})
	}
}

// putPartial stores the first n bytes of data, zero-padded, as name's
// .partial through PutPartialWAL.
func putPartial(tb testing.TB, a *Archive, name string, data []byte, n int) []byte {
	tb.Helper()
	padded := zeroPadded(data[:n], len(data))
	if _, err := a.PutPartialWAL(context.Background(), writeWALFile(tb, tb.TempDir(), name+".partial", padded), PushOptions{SystemID: testSystemID}); err != nil {
		tb.Fatal(err)
	}
	return padded
}

func TestArchive_FetchWAL_StandIn(t *testing.T) {
	ctx := context.Background()
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		pushSegments(t, a, 3, 4)
		name := "000000010000000000000005"
		full := waltest.Segment(t, name, testSegSize, 5)
		padded := putPartial(t, a, name, full, 300000)

		// The segment is missing: its .partial stands in, full size.
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		var used string
		if err := a.FetchWAL(ctx, name, dest, FetchOptions{StandIn: func(k string) { used = k }}); err != nil {
			t.Fatalf("encrypted=%v: %v", encrypted, err)
		}
		checkFile(t, dest, padded)
		if used != "site/xlog/"+name+".partial" {
			t.Errorf("StandIn called with %q", used)
		}

		// The end of the archive: the next segment is not there.
		if err := a.FetchWAL(ctx, "000000010000000000000006", dest, FetchOptions{}); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("next segment: %v, want ErrNotFound", err)
		}

		// A later timeline makes it obsolete.
		if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), "00000002.history", []byte("1\t0/5000100\tno recovery target specified\n")), PushOptions{SystemID: testSystemID}); err != nil {
			t.Fatal(err)
		}
		if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("with timeline 2: %v, want ErrNotFound", err)
		}
	}
}

func TestArchive_FetchWAL_StandIn_ErrNotAtEnd(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	name := "000000010000000000000005"
	putPartial(t, a, name, waltest.Segment(t, name, testSegSize, 5), 300000)
	// A newer segment is stored: the .partial is not the end of the
	// timeline (a hole, or a copy planted behind real WAL).
	pushSegments(t, a, 6, 6)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("FetchWAL = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("dest exists: %v", err)
	}
}

// The daemon stores the copies of a growing segment trimmed (its WAL so
// far, no padding): wal-fetch delivers a full-size segment file, under
// the segment's name and under the .partial's, the listing's end and
// Check read it, and a shorter copy never replaces it.
func TestArchive_FetchWAL_StandIn_Trimmed(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	pushSegments(t, a, 3, 4)
	name := "000000010000000000000005"
	full := waltest.Segment(t, name, testSegSize, 5)
	dir := t.TempDir()
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", full[:300000]), PushOptions{SystemID: testSystemID}); err != nil {
		t.Fatal(err)
	}
	res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", full[:200000]), PushOptions{StoredPartial: 300000})
	if err != nil || !res.Stale {
		t.Fatalf("shorter copy: %+v, %v; want stale", res, err)
	}
	for _, fetch := range []string{name, name + ".partial"} {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := a.FetchWAL(ctx, fetch, dest, FetchOptions{}); err != nil {
			t.Fatalf("FetchWAL %s: %v", fetch, err)
		}
		got, err := os.ReadFile(dest)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != testSegSize || !bytes.Equal(got[:300000], full[:300000]) || bytes.ContainsFunc(got[300000:], func(r rune) bool { return r != 0 }) {
			t.Fatalf("FetchWAL %s: %d bytes, want the 300000 stored then zeros to %d", fetch, len(got), testSegSize)
		}
	}
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := l.StandIn(name)
	if !ok {
		t.Fatal("the trimmed .partial does not stand in")
	}
	if err := p.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
	end, err := l.End(ctx, testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := dataSize(bytes.NewReader(full[:300000]))
	if seg, _ := wal.ParseSegmentName(name, testSegSize); !end.Partial || end.LSN != seg.StartLSN(testSegSize)+pglogrepl.LSN(n) {
		t.Errorf("End = %+v, want the end of the .partial's data, %d bytes in", end, n)
	}
}

func TestArchive_FetchWAL_StandIn_ShortPadded(t *testing.T) {
	// A .partial stored shorter than its segment through PushWAL is
	// padded to the segment size: PostgreSQL refuses other sizes.
	ctx := context.Background()
	a := walTestArchive(t, false)
	name := "000000010000000000000005"
	full := waltest.Segment(t, name, testSegSize, 5)
	if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", full[:8192]), PushOptions{SystemID: testSystemID}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), name)
	if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != testSegSize || !bytes.Equal(got[:8192], full[:8192]) || bytes.ContainsFunc(got[8192:], func(r rune) bool { return r != 0 }) {
		t.Fatalf("fetched %d bytes, want the 8192 stored then zeros to %d", len(got), testSegSize)
	}
}

func TestArchive_FetchWAL_StandIn_ErrTampered(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	name := "000000010000000000000005"
	putPartial(t, a, name, waltest.Segment(t, name, testSegSize, 5), 300000)
	tamper(t, a, "site/xlog/"+name+".partial", -40)
	dest := filepath.Join(t.TempDir(), name)
	err := a.FetchWAL(ctx, name, dest, FetchOptions{})
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("FetchWAL of a tampered .partial = %v, want an error", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("dest exists: %v", err)
	}
}

func TestWALListing_End(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	if e, err := a.WALEnd(ctx, testSegSize); err != nil || e.File != "" {
		t.Fatalf("empty archive: %+v, %v", e, err)
	}
	pushSegments(t, a, 3, 4)
	e, err := a.WALEnd(ctx, testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	if e.File != "000000010000000000000004" || e.Partial || e.LSN != pglogrepl.LSN(5*testSegSize) || e.Timeline != 1 || e.Stored.IsZero() {
		t.Fatalf("End = %+v", e)
	}
	name := "000000010000000000000005"
	padded := putPartial(t, a, name, waltest.Segment(t, name, testSegSize, 5), 300000)
	n, err := dataSize(bytes.NewReader(padded))
	if err != nil || n < 250000 {
		t.Fatalf("data size %d, %v", n, err)
	}
	if e, err = a.WALEnd(ctx, testSegSize); err != nil {
		t.Fatal(err)
	}
	if e.File != name+".partial" || !e.Partial || e.LSN != pglogrepl.LSN(5*testSegSize+n) {
		t.Fatalf("End = %+v, want the .partial's data end", e)
	}
}

// A planted backup (no metadata HMAC) listed as the newest must not decide
// the segment size that list and verify read the WAL's end with, where an
// authenticated backup exists: its segment size is the site's.
func TestNewestSegmentSize_Trusted(t *testing.T) {
	signed := &BackupInfo{Name: "2024-03-07_10-00_0", WALSegmentSize: 16 << 20, Auth: AuthOK}
	planted := &BackupInfo{Name: "2099-01-01_00-00_0", WALSegmentSize: 1 << 20, Auth: AuthNone}
	tests := []struct {
		name string
		bs   []*BackupInfo
		want uint64
	}{
		{"None", nil, DefaultSegmentSize},
		{"Signed", []*BackupInfo{signed}, 16 << 20},
		{"PlantedNewer", []*BackupInfo{signed, planted}, 16 << 20},
		{"NoneAuthenticated", []*BackupInfo{planted}, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewestSegmentSize(tt.bs); got != tt.want {
				t.Errorf("NewestSegmentSize = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestArchive_PartialDataSize_RecordEndsInZeros stores a .partial of a
// real segment cut just after its last record, whose bytes end in
// zeros, as the daemon stores the segment in progress of an idle
// primary's standby: the WAL it holds ends at that record's end, past
// its last non-zero byte, so that a standby backup ending there counts
// as archived.
func TestArchive_PartialDataSize_RecordEndsInZeros(t *testing.T) {
	ctx := context.Background()
	z := waltest.ZeroEndedSegment(t, pgtest.DebianMajor)
	cut := z.Aligned
	a := walTestArchive(t, true)
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, t.TempDir(), z.Name+".partial", z.Data[:cut]), PushOptions{SystemID: testSystemID}); err != nil {
		t.Fatal(err)
	}
	end, err := a.WALEnd(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := int64(end.LSN % (1 << 20)); !end.Partial || got != cut {
		t.Errorf("WAL end %+v: %d bytes into the segment, want the last record's end %d (last non-zero byte: %d)",
			end, got, cut, len(bytes.TrimRight(z.Data[:cut], "\x00")))
	}
}

// TestWALListing_EndPartialThenComplete: a .partial the daemon stored at
// shutdown, and later the complete segment of the same name
// (archive_command, or the daemon once the segment filled): the WAL ends
// at the complete segment's end. End took the .partial's, since both are
// listed under the segment's name, and hoard list and verify said the
// archive ended at the old .partial's data, stored half an hour before.
func TestWALListing_EndPartialThenComplete(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	pushSegments(t, a, 3, 4)
	name := "000000010000000000000005"
	putPartial(t, a, name, waltest.Segment(t, name, testSegSize, 5), 300000)
	pushSegments(t, a, 5, 5)
	e, err := a.WALEnd(ctx, testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	if e.File != name || e.Partial || e.LSN != pglogrepl.LSN(6*testSegSize) {
		t.Errorf("End = %+v, want the end of the complete segment %s", e, name)
	}
}
