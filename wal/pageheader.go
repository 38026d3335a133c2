package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pglogrepl"
)

// The first page of every WAL segment starts with an
// XLogLongPageHeaderData (PostgreSQL src/include/access/xlog_internal.h):
//
//	offset  0  uint16 xlp_magic        XLOG_PAGE_MAGIC of the server's major
//	offset  2  uint16 xlp_info         XLP_LONG_HEADER (0x0002) on a segment's first page
//	offset  4  uint32 xlp_tli          timeline of the first record on the page
//	offset  8  uint64 xlp_pageaddr     LSN of the page: the segment's start LSN
//	offset 16  uint32 xlp_rem_len      continuation bytes of a record from the previous page
//	offset 24  uint64 xlp_sysid        system identifier (pg_control)
//	offset 32  uint32 xlp_seg_size     wal_segment_size, as a cross-check
//	offset 36  uint32 xlp_xlog_blcksz  XLOG_BLCKSZ, as a cross-check
//
// Offset 20 is padding: the short header is MAXALIGNed to 24 bytes. Fields
// are in the server's byte order; hoard reads little-endian, as on x86 and
// arm64 servers.
const (
	// PageHeaderSize is SizeOfXLogLongPHD, the bytes PageHeader reads.
	PageHeaderSize = 40
	// LongHeader is XLP_LONG_HEADER in xlp_info: the page starts with the
	// long header, as a segment's first page does.
	LongHeader = 0x0002
)

// pageMagics maps XLOG_PAGE_MAGIC to the PostgreSQL major version that
// writes it. The magic changes whenever the WAL format does, at most once
// per major release. Only the majors hoard supports (and tests against
// real servers) are listed; other majors' WAL is still accepted, without a
// version.
var pageMagics = map[uint16]int{
	0xD106: 13,
	0xD10D: 14,
	0xD110: 15,
	0xD113: 16,
	0xD116: 17,
	0xD118: 18,
}

// ErrBadPageHeader is returned (wrapped) when a file's first page header does
// not fit its name: not a WAL segment, a recycled segment that still holds
// an older position, a truncated file, or a file from another cluster size.
var ErrBadPageHeader = errors.New("bad WAL page header")

// PageHeader is the long page header at the start of a WAL segment.
type PageHeader struct {
	Magic       uint16
	Info        uint16
	Timeline    uint32
	PageAddr    pglogrepl.LSN
	RemLen      uint32
	SystemID    uint64
	SegmentSize uint32
	BlockSize   uint32
}

// DecodePageHeader decodes the long page header at the start of b, which
// must hold at least PageHeaderSize bytes. It checks only what makes the
// header a long WAL page header: a plausible magic, XLP_LONG_HEADER, and a
// segment and block size PostgreSQL allows.
func DecodePageHeader(b []byte) (PageHeader, error) {
	if len(b) < PageHeaderSize {
		return PageHeader{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrBadPageHeader, len(b), PageHeaderSize)
	}
	le := binary.LittleEndian
	h := PageHeader{
		Magic:       le.Uint16(b[0:]),
		Info:        le.Uint16(b[2:]),
		Timeline:    le.Uint32(b[4:]),
		PageAddr:    pglogrepl.LSN(le.Uint64(b[8:])),
		RemLen:      le.Uint32(b[16:]),
		SystemID:    le.Uint64(b[24:]),
		SegmentSize: le.Uint32(b[32:]),
		BlockSize:   le.Uint32(b[36:]),
	}
	// Every XLOG_PAGE_MAGIC since 9.x is 0xD0xx or 0xD1xx; an unknown one
	// in that range is a newer major, anything else is not WAL.
	if h.Magic>>8 != 0xD0 && h.Magic>>8 != 0xD1 {
		return h, fmt.Errorf("%w: magic 0x%04X is not a WAL page magic", ErrBadPageHeader, h.Magic)
	}
	if h.Info&LongHeader == 0 {
		return h, fmt.Errorf("%w: first page lacks XLP_LONG_HEADER (xlp_info 0x%04X)", ErrBadPageHeader, h.Info)
	}
	if !ValidSegmentSize(uint64(h.SegmentSize)) {
		return h, fmt.Errorf("%w: segment size %d is not a power of two from 1 MiB to 1 GiB", ErrBadPageHeader, h.SegmentSize)
	}
	if !powerOfTwo(uint64(h.BlockSize)) || h.BlockSize < 1024 || h.BlockSize > 65536 {
		return h, fmt.Errorf("%w: WAL block size %d is not a power of two from 1 KiB to 64 KiB", ErrBadPageHeader, h.BlockSize)
	}
	return h, nil
}

// Encode appends the header's PageHeaderSize bytes to dst, little-endian,
// as DecodePageHeader reads them; the padding is zero.
func (h PageHeader) Encode(dst []byte) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint16(dst, h.Magic)
	dst = le.AppendUint16(dst, h.Info)
	dst = le.AppendUint32(dst, h.Timeline)
	dst = le.AppendUint64(dst, uint64(h.PageAddr))
	dst = le.AppendUint32(dst, h.RemLen)
	dst = le.AppendUint32(dst, 0) // padding to MAXALIGN
	dst = le.AppendUint64(dst, h.SystemID)
	dst = le.AppendUint32(dst, h.SegmentSize)
	return le.AppendUint32(dst, h.BlockSize)
}

func powerOfTwo(n uint64) bool { return n != 0 && n&(n-1) == 0 }

// Major returns the PostgreSQL major version that writes the header's
// magic, or 0 when the magic is unknown.
func (h PageHeader) Major() int { return pageMagics[h.Magic] }

// ServerVersionNum returns a server_version_num for the header's major
// (150000 for 15), or 0 when the magic is unknown. The minor release is not
// in WAL, so it is always 0.
func (h PageHeader) ServerVersionNum() int { return h.Major() * 10000 }

// CheckSegment checks that header, the first bytes of a file called name
// (a 24-hex segment name, or one with the .partial suffix) of size bytes,
// is the long page header of that very segment: the page address is the
// segment's start LSN computed with the header's own segment size, the
// page's timeline is between 1 and the name's timeline, and a complete
// segment's size is that segment size (a .partial file may be shorter). It
// returns the decoded header, whose SegmentSize tells callers the cluster's
// segment size without any configuration.
//
// The page's timeline may be lower than the name's: at a timeline switch
// PostgreSQL starts the new timeline's first segment as a copy of the old
// timeline's segment up to the switch point (XLogInitNewTimeline in
// src/backend/access/transam/xlog.c), so its first page still carries the
// old timeline. It is never higher: a segment named for timeline t holds
// no page of a later timeline.
func CheckSegment(name string, header []byte, size int64) (PageHeader, error) {
	seg, partial := name, false
	if IsPartialName(name) {
		seg, partial = name[:24], true
	}
	h, err := DecodePageHeader(header)
	if err != nil {
		return h, fmt.Errorf("wal file %s: %w", name, err)
	}
	segSize := uint64(h.SegmentSize)
	s, err := ParseSegmentName(seg, segSize)
	if err != nil {
		return h, fmt.Errorf("wal file %s: %w: %v", name, ErrBadPageHeader, err)
	}
	if want := s.StartLSN(segSize); h.PageAddr != want {
		return h, fmt.Errorf("%w: segment name %s but page address %s (expected %s): recycled or misnamed file",
			ErrBadPageHeader, seg, h.PageAddr, want)
	}
	if h.Timeline == 0 || h.Timeline > s.Timeline {
		return h, fmt.Errorf("%w: segment name %s is on timeline %d but its first page is on timeline %d: misnamed file or one from another timeline",
			ErrBadPageHeader, seg, s.Timeline, h.Timeline)
	}
	switch {
	case partial && (size < PageHeaderSize || uint64(size) > segSize):
		return h, fmt.Errorf("%w: partial segment %s is %d bytes, not between %d and the %d-byte segment size",
			ErrBadPageHeader, name, size, PageHeaderSize, segSize)
	case !partial && uint64(size) != segSize:
		return h, fmt.Errorf("%w: segment %s is %d bytes but its header says segments are %d bytes: truncated or padded file",
			ErrBadPageHeader, name, size, segSize)
	}
	return h, nil
}

// CheckSegmentFile runs CheckSegment on the file at path, named by its base
// name or by name when name is not empty.
func CheckSegmentFile(path, name string) (PageHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return PageHeader{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return PageHeader{}, err
	}
	buf := make([]byte, PageHeaderSize)
	if _, err := io.ReadFull(f, buf); err != nil {
		return PageHeader{}, fmt.Errorf("%w: read header of %s: %v", ErrBadPageHeader, path, err)
	}
	if name == "" {
		name = fi.Name()
	}
	return CheckSegment(name, buf, fi.Size())
}
