package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
)

// pageHeader builds a long page header.
func pageHeader(magic uint16, info uint16, tli uint32, pageAddr uint64, segSize, blockSize uint32) []byte {
	return PageHeader{Magic: magic, Info: info, Timeline: tli, PageAddr: pglogrepl.LSN(pageAddr),
		SystemID: 7123456789012345678, SegmentSize: segSize, BlockSize: blockSize}.Encode(nil)
}

// testSegment returns a complete segment called name of segSize bytes,
// written by PostgreSQL 15, zero after the header.
func testSegment(t testing.TB, name string, segSize uint64) []byte {
	t.Helper()
	seg, err := ParseSegmentName(name, segSize)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, segSize)
	copy(b, pageHeader(0xD110, LongHeader|0x0004, seg.Timeline, uint64(seg.StartLSN(segSize)), uint32(segSize), 8192))
	return b
}

func TestPageHeader_Encode(t *testing.T) {
	want := PageHeader{Magic: 0xD116, Info: LongHeader, Timeline: 3, PageAddr: 0x2_0100_0000, RemLen: 17,
		SystemID: 7123456789012345678, SegmentSize: 16 << 20, BlockSize: 8192}
	b := want.Encode([]byte("x"))
	if len(b) != 1+PageHeaderSize {
		t.Fatalf("Encode appended %d bytes, want %d", len(b)-1, PageHeaderSize)
	}
	got, err := DecodePageHeader(b[1:])
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("DecodePageHeader(Encode(h)) = %+v, want %+v", got, want)
	}
}

func TestDecodePageHeader(t *testing.T) {
	good := pageHeader(0xD10D, LongHeader, 1, 0x9000000, 16<<20, 8192)
	tests := []struct {
		name    string
		b       []byte
		wantErr string
	}{
		{"OK", good, ""},
		{"ErrShort", good[:39], "39 bytes"},
		{"ErrMagic", pageHeader(0x1234, LongHeader, 1, 0, 16<<20, 8192), "magic 0x1234"},
		{"ErrShortHeader", pageHeader(0xD10D, 0, 1, 0, 16<<20, 8192), "XLP_LONG_HEADER"},
		{"ErrSegmentSize", pageHeader(0xD10D, LongHeader, 1, 0, 3<<20, 8192), "segment size 3145728"},
		{"ErrSegmentSizeLarge", pageHeader(0xD10D, LongHeader, 1, 0, 2<<30, 8192), "segment size"},
		{"ErrBlockSize", pageHeader(0xD10D, LongHeader, 1, 0, 16<<20, 100), "block size 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := DecodePageHeader(tt.b)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if h.Magic != 0xD10D || h.Timeline != 1 || h.PageAddr != 0x9000000 || h.SegmentSize != 16<<20 ||
					h.BlockSize != 8192 || h.SystemID != 7123456789012345678 {
					t.Fatalf("decoded %+v", h)
				}
				return
			}
			if !errors.Is(err, ErrBadPageHeader) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrBadPageHeader mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestPageHeader_Major(t *testing.T) {
	for magic, major := range map[uint16]int{0xD106: 13, 0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17, 0xD118: 18, 0xD1FF: 0} {
		h := PageHeader{Magic: magic}
		if got := h.Major(); got != major {
			t.Errorf("magic 0x%04X: major %d, want %d", magic, got, major)
		}
		if got := h.ServerVersionNum(); got != major*10000 {
			t.Errorf("magic 0x%04X: server_version_num %d, want %d", magic, got, major*10000)
		}
	}
}

func TestCheckSegment(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name    string
		file    string
		header  []byte
		size    int64
		wantErr string
	}{
		{"OK", "00000001000000000000000A", pageHeader(0xD110, 2, 1, 0xA000000, 16*mib, 8192), 16 * mib, ""},
		{"OKHighXLogID", "000000030000000200000001", pageHeader(0xD110, 2, 3, 0x2_0100_0000, 16*mib, 8192), 16 * mib, ""},
		// A 1 MiB cluster has 4096 segments per xlogid: segment 0x0FFF of
		// xlogid 0 starts at 0/FFF00000.
		{"OK1MiB", "000000010000000000000FFF", pageHeader(0xD110, 2, 1, 0xFFF00000, mib, 8192), mib, ""},
		{"OKOtherTimelineOnPage", "00000002000000000000000A", pageHeader(0xD110, 2, 1, 0xA000000, 16*mib, 8192), 16 * mib, ""},
		{"OKPartialShort", "00000001000000000000000A.partial", pageHeader(0xD110, 2, 1, 0xA000000, 16*mib, 8192), 8192, ""},
		{"ErrRecycled", "00000001000000000000000A", pageHeader(0xD110, 2, 1, 0x9000000, 16*mib, 8192), 16 * mib,
			"segment name 00000001000000000000000A but page address 0/9000000 (expected 0/A000000): recycled or misnamed file"},
		{"ErrSegmentSizeMismatch", "00000001000000000000000A", pageHeader(0xD110, 2, 1, 0xA000000, 16*mib, 8192), mib,
			"is 1048576 bytes but its header says segments are 16777216 bytes"},
		{"ErrNameOutOfRange", "000000010000000000000100", pageHeader(0xD110, 2, 1, 0x100000000, 16*mib, 8192), 16 * mib,
			"out of range"},
		{"ErrPartialTooLong", "00000001000000000000000A.partial", pageHeader(0xD110, 2, 1, 0xA00000, mib, 8192), 2 * mib,
			"partial segment"},
		{"ErrTimelineAhead", "00000001000000000000000A", pageHeader(0xD110, 2, 2, 0xA000000, 16*mib, 8192), 16 * mib,
			"is on timeline 1 but its first page is on timeline 2"},
		{"ErrTimelineZero", "00000003000000000000000A", pageHeader(0xD110, 2, 0, 0xA000000, 16*mib, 8192), 16 * mib,
			"is on timeline 3 but its first page is on timeline 0"},
		{"ErrNotWAL", "00000001000000000000000A", []byte(strings.Repeat("hello, world! ", 4)), 16 * mib, "not a WAL page magic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := CheckSegment(tt.file, tt.header, tt.size)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if uint64(h.SegmentSize) == 0 {
					t.Fatal("no segment size")
				}
				return
			}
			if !errors.Is(err, ErrBadPageHeader) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrBadPageHeader mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckSegmentFile(t *testing.T) {
	dir := t.TempDir()
	name := "000000010000000000000005"
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, testSegment(t, name, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := CheckSegmentFile(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if h.SegmentSize != 1<<20 || h.Major() != 15 {
		t.Fatalf("header %+v", h)
	}
	if _, err := CheckSegmentFile(p, "000000010000000000000006"); !errors.Is(err, ErrBadPageHeader) {
		t.Fatalf("renamed: err = %v", err)
	}
	if err := os.Truncate(p, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckSegmentFile(p, ""); !errors.Is(err, ErrBadPageHeader) {
		t.Fatalf("truncated: err = %v", err)
	}
}

func FuzzDecodePageHeader(f *testing.F) {
	f.Add(pageHeader(0xD110, 2, 1, 0xA000000, 16<<20, 8192))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodePageHeader(b)
		if err == nil && (h.SegmentSize < MinSegmentSize || h.Info&LongHeader == 0) {
			t.Fatalf("accepted %+v", h)
		}
		_, _ = CheckSegment("00000001000000000000000A", b, int64(len(b)))
	})
}
