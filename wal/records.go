package wal

import (
	"encoding/binary"
	"hash/crc32"
)

// Sizes from PostgreSQL's access/xlog_internal.h and access/xlogrecord.h.
const (
	shortPageHeaderSize = 24         // SizeOfXLogShortPHD
	recordHeaderSize    = 24         // SizeOfXLogRecord
	recordCRCOffset     = 20         // offsetof(XLogRecord, xl_crc)
	maxRecordSize       = 1020 << 20 // XLogRecordMaxSize
	firstIsContRecord   = 0x0001     // XLP_FIRST_IS_CONTRECORD
	firstIsOverwrite    = 0x0008     // XLP_FIRST_IS_OVERWRITE_CONTRECORD
	rmXLogID            = 0          // RM_XLOG_ID, in access/rmgrlist.h
	xlogSwitch          = 0x40       // XLOG_SWITCH, in catalog/pg_control.h
	recordInfoMask      = 0x0F       // XLR_INFO_MASK: the bits xl_info keeps for xlog.c itself
	maxAlign            = 8          // MAXALIGN on the platforms PostgreSQL supports
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RecordEnd finds where the valid WAL records of a segment's first bytes
// end, as PostgreSQL's xlogreader.c reads them: written to (as an
// io.Writer) with the segment from its first byte, End reports the
// segment offset of the end of the last record whose CRC-32C matches,
// whose xl_prev names the record before it, and whose pages carry their
// own address, MAXALIGNed as PostgreSQL's EndRecPtr (the position a
// backup ends at, and where the next record starts). A record continued from the previous segment is skipped; the
// walk stops at the first record that is not valid (zeros after the end
// of the WAL, a torn or stale record, a page from a recycled segment).
//
// A .partial copy of a segment ends at an arbitrary byte, and its last
// record may end in zero bytes (a small XID's high bytes, say), so the
// position after its last non-zero byte can lie before the end of its
// last record; End does not.
//
// A record whose continuation was lost in a crash, and written over by
// the WAL after it (a page marked XLP_FIRST_IS_OVERWRITE_CONTRECORD), is
// skipped as xlogreader.c skips it: the walk goes on at that page.
type RecordEnd struct {
	off       int64 // segment offset of the next byte written
	blockSize int64 // WAL page size, from the long header; 0 until read
	pageAddr  uint64
	magic     uint16

	hdr     [PageHeaderSize]byte // the page header being read
	hdrN    int
	hdrSize int // the page header's size; 0 outside a header

	state    recordState
	skip     int64 // continuation bytes still to skip
	rec      [recordHeaderSize]byte
	recN     int
	recStart uint64 // LSN of the record being read
	prev     uint64 // LSN of the last valid record; 0 when none
	need     int64  // data bytes of the record still to read
	crc      uint32

	end      int64
	switched bool // the last valid record is an XLOG_SWITCH
}

type recordState int

const (
	stateContinuation recordState = iota // skipping a record from the previous segment
	stateAlign                           // padding up to the next record
	stateHeader                          // reading a record header
	stateData                            // reading a record's data
	stateDone                            // no further valid record
)

// End returns the segment offset of the (aligned) end of the last valid
// record written so far; 0 when none is complete.
func (r *RecordEnd) End() int64 { return r.end }

// Stopped reports whether the walk met bytes that are not a valid record
// (or page header) where one had to be: the WAL ended before the bytes
// written so far did.
func (r *RecordEnd) Stopped() bool { return r.state == stateDone }

// Stop returns the segment offset just past the bytes that showed the
// walk's first invalid record or page header invalid: the end its header
// claims for a record whose CRC-32C does not match, the end of a record
// header or page header that is not valid. 0 until Stopped.
//
// In a copy of a segment cut at some byte, with zeros after it, the
// record the cut falls in stops the walk at or after the cut, provided
// it ends within the segment: only zeros follow Stop's bytes.
func (r *RecordEnd) Stop() int64 {
	if r.state != stateDone {
		return 0
	}
	return r.off
}

// Switched reports whether the last valid record is an XLOG_SWITCH
// (pg_switch_wal, archive_timeout): PostgreSQL leaves the rest of its
// segment without WAL (PostgreSQL 18 writes it as zeros, page headers
// included), and recovery goes on at the next segment.
func (r *RecordEnd) Switched() bool { return r.switched }

// Write reads p, the next bytes of the segment. It never fails.
func (r *RecordEnd) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && r.state != stateDone {
		if r.hdrSize == 0 && (r.off == 0 || r.blockSize != 0 && r.off%r.blockSize == 0) {
			r.hdrSize, r.hdrN = shortPageHeaderSize, 0
			if r.off == 0 {
				r.hdrSize = PageHeaderSize
			}
		}
		var used int
		if r.hdrSize != 0 {
			used = copy(r.hdr[r.hdrN:r.hdrSize], p)
			r.hdrN += used
			if r.hdrN == r.hdrSize {
				r.pageHeader()
				r.hdrSize = 0
			}
		} else {
			avail := p
			if left := r.blockSize - r.off%r.blockSize; int64(len(avail)) > left {
				avail = avail[:left]
			}
			used = r.payload(avail)
		}
		p = p[used:]
		r.off += int64(used)
	}
	return n, nil
}

// pageHeader checks the page header just read: the first page's gives
// the page size, magic and address; each later one must carry the same
// magic and its own address.
func (r *RecordEnd) pageHeader() {
	le := binary.LittleEndian
	magic, info, addr := le.Uint16(r.hdr[0:]), le.Uint16(r.hdr[2:]), le.Uint64(r.hdr[8:])
	if r.blockSize == 0 { // the first page's (r.off is past 0 when it came in pieces)
		bs := int64(le.Uint32(r.hdr[36:]))
		if bs < 1024 || bs&(bs-1) != 0 {
			r.state = stateDone
			return
		}
		r.blockSize, r.magic, r.pageAddr = bs, magic, addr
		r.state = stateHeader
		if info&firstIsContRecord != 0 {
			r.state, r.skip = stateContinuation, int64(le.Uint32(r.hdr[16:]))
		}
		return
	}
	if magic != r.magic || addr != r.pageAddr+uint64(r.pageStart()) {
		r.state = stateDone
		return
	}
	if info&firstIsOverwrite != 0 {
		// The record being read lost its continuation in a crash, and
		// recovery wrote the next WAL here (an XLOG_OVERWRITE_CONTRECORD
		// record first), whose xl_prev is the last valid record's.
		r.state, r.recN, r.skip = stateHeader, 0, 0
	}
}

// pageStart is the segment offset of the page the next byte is on.
func (r *RecordEnd) pageStart() int64 { return r.off - r.off%r.blockSize }

// payload reads the record bytes at the start of p, all on one page,
// and returns how many it used.
func (r *RecordEnd) payload(p []byte) int {
	switch r.state {
	case stateContinuation:
		n := int(min(int64(len(p)), r.skip))
		if r.skip -= int64(n); r.skip == 0 {
			r.state = stateAlign
		}
		return n
	case stateAlign:
		pad := int((maxAlign - r.off%maxAlign) % maxAlign)
		if pad == 0 {
			r.state = stateHeader
			return 0
		}
		return min(len(p), pad)
	case stateHeader:
		if r.recN == 0 {
			r.recStart = r.pageAddr + uint64(r.off)
		}
		n := copy(r.rec[r.recN:], p)
		if r.recN += n; r.recN < recordHeaderSize {
			return n
		}
		le := binary.LittleEndian
		total, prev := le.Uint32(r.rec[0:]), le.Uint64(r.rec[8:])
		if total < recordHeaderSize || total > maxRecordSize || r.prev != 0 && prev != r.prev {
			r.state = stateDone
			return n
		}
		r.need, r.crc, r.state = int64(total-recordHeaderSize), 0, stateData
		if r.need == 0 {
			r.finish(r.off + int64(n))
		}
		return n
	case stateData:
		n := int(min(int64(len(p)), r.need))
		r.crc = crc32.Update(r.crc, castagnoli, p[:n])
		if r.need -= int64(n); r.need == 0 {
			r.finish(r.off + int64(n))
		}
		return n
	}
	return len(p)
}

// finish checks the CRC of the record whose last byte ends at end: the
// data, then the header up to xl_crc, as XLogRecordAssemble sums them.
func (r *RecordEnd) finish(end int64) {
	crc := crc32.Update(r.crc, castagnoli, r.rec[:recordCRCOffset])
	if crc != binary.LittleEndian.Uint32(r.rec[recordCRCOffset:]) {
		r.state = stateDone
		return
	}
	// The record's end as PostgreSQL counts it (EndRecPtr, a backup's
	// end position): where the next record starts, after the padding.
	r.end = (end + maxAlign - 1) &^ (maxAlign - 1)
	r.switched = r.rec[17] == rmXLogID && r.rec[16]&^recordInfoMask == xlogSwitch
	r.prev, r.recN, r.state = r.recStart, 0, stateAlign
}
