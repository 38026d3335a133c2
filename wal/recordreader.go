package wal

import (
	"encoding/binary"
	"hash/crc32"
)

// Record is one whole WAL record, as RecordReader decodes it.
type Record struct {
	LSN uint64 // where it starts (its XLogRecord header)
	End uint64 // just past its last byte, page headers it spans included; not MAXALIGNed
	// Raw is the record: the 24-byte XLogRecord header, then its data,
	// with the page headers it spans taken out. Valid only during the
	// call that delivers it.
	Raw []byte
}

// XID is the record's xl_xid: the transaction that wrote it, 0 for none.
func (r Record) XID() uint32 { return binary.LittleEndian.Uint32(r.Raw[4:]) }

// Info is the record's xl_info: the resource manager's bits are the high four.
func (r Record) Info() uint8 { return r.Raw[16] }

// RmgrID is the record's xl_rmid, its resource manager (access/rmgrlist.h).
func (r Record) RmgrID() uint8 { return r.Raw[17] }

// Block header ids in a record's data, from access/xlogrecord.h.
const (
	blockIDDataShort  = 255 // XLR_BLOCK_ID_DATA_SHORT: main data, 1-byte length
	blockIDDataLong   = 254 // XLR_BLOCK_ID_DATA_LONG: main data, 4-byte length
	blockIDOrigin     = 253 // XLR_BLOCK_ID_ORIGIN: a 2-byte RepOriginId
	blockIDTopLevelID = 252 // XLR_BLOCK_ID_TOPLEVEL_XID: a 4-byte xid
)

// MainData returns the record's main data (what XLogRegisterData
// registered: a restore point's xl_restore_point, a commit's
// xl_xact_commit), for a record that references no data blocks, as
// DecodeXLogRecord (xlogreader.c) reads its headers: the main data's
// header last, the data itself at the record's end. ok is false for a
// record with block references (their header layout differs between
// major versions, and none of the records hoard reads has them) or
// headers that do not fit the record; a record without main data gives
// an empty slice and true.
func (r Record) MainData() (data []byte, ok bool) {
	p := r.Raw[recordHeaderSize:]
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		switch id {
		case blockIDDataShort, blockIDDataLong:
			var n uint32
			if id == blockIDDataShort && len(p) >= 1 {
				n, p = uint32(p[0]), p[1:]
			} else if id == blockIDDataLong && len(p) >= 4 {
				n, p = binary.LittleEndian.Uint32(p), p[4:]
			} else {
				return nil, false
			}
			// The main data's header comes last; the data fills the
			// rest of the record.
			if uint64(n) != uint64(len(p)) {
				return nil, false
			}
			return p, true
		case blockIDOrigin:
			if len(p) < 2 {
				return nil, false
			}
			p = p[2:]
		case blockIDTopLevelID:
			if len(p) < 4 {
				return nil, false
			}
			p = p[4:]
		default:
			return nil, false
		}
	}
	return p, true
}

// RecordReader decodes the whole WAL records of consecutive segments, as
// PostgreSQL's xlogreader.c reads them: a record continued on the next
// page (XLP_FIRST_IS_CONTRECORD) or in the next segment is put together
// and delivered once whole, with its page headers taken out, when its
// CRC-32C matches, its xl_prev names the record before it and the pages
// it spans carry their own address. A segment that does not follow the
// one before it (the first, or one after a gap) starts afresh: the
// record continued into it is skipped, as RecordEnd skips it.
//
// A segment's records end at the first one that is not valid (zeros
// after the end of the WAL, a torn or stale record, a recycled page) or
// at an XLOG_SWITCH; the next segment then starts afresh too. A page
// marked XLP_FIRST_IS_OVERWRITE_CONTRECORD drops the record whose
// continuation was lost, as xlogreader.c does.
type RecordReader struct {
	segSize uint64
	next    uint64 // LSN the next segment must start at to continue; 0: start afresh

	rec  []byte // the record being put together
	need int    // its bytes still to come; 0 when none is pending
	lsn  uint64 // its start
	prev uint64 // the last valid record's start; 0 when none
}

// NewRecordReader returns a RecordReader for segments of segSize bytes.
func NewRecordReader(segSize uint64) *RecordReader {
	return &RecordReader{segSize: segSize}
}

// Pending reports whether a record begun in the segments read so far
// continues past them: reading the next segment completes it.
func (r *RecordReader) Pending() bool { return r.need > 0 }

// Segment reads data, the segment starting at LSN start from its first
// byte (a copy cut short ends the stream there), and calls fn with each
// record completed in it, in order; it stops at fn's first error and
// returns it.
func (r *RecordReader) Segment(start uint64, data []byte, fn func(Record) error) error {
	if start != r.next || r.next == 0 {
		r.reset()
	}
	r.next = 0 // set again only when the segment is read to its end
	le := binary.LittleEndian
	var magic uint16
	var bs int
	skip := -1 // continuation bytes to skip at a fresh start; -1: none known yet
	if r.need > 0 {
		skip = 0
	}
	for off := 0; off < len(data); off += bs {
		hdrSize := shortPageHeaderSize
		if off == 0 {
			hdrSize = PageHeaderSize
		}
		if len(data)-off < hdrSize {
			r.reset()
			return nil
		}
		h := data[off:]
		info, addr, remLen := le.Uint16(h[2:]), le.Uint64(h[8:]), le.Uint32(h[16:])
		if off == 0 {
			b := le.Uint32(h[36:])
			if b < 1024 || b > 1<<15 || b&(b-1) != 0 || uint64(le.Uint32(h[32:])) != r.segSize {
				r.reset()
				return nil
			}
			magic, bs = le.Uint16(h), int(b)
		} else if le.Uint16(h) != magic {
			r.reset()
			return nil
		}
		if addr != start+uint64(off) {
			r.reset()
			return nil
		}
		page := data[off+hdrSize : min(off+bs, len(data))]
		pos := 0
		switch {
		case info&firstIsOverwrite != 0:
			// The pending record lost its continuation in a crash;
			// the WAL after it starts here.
			r.rec, r.need = r.rec[:0], 0
		case r.need > 0:
			if info&firstIsContRecord == 0 || int(remLen) != r.need {
				r.reset()
				return nil
			}
			n := min(r.need, len(page))
			r.rec = append(r.rec, page[:n]...)
			r.need -= n
			pos = n
			if r.need > 0 {
				if len(page) == n && off+bs <= len(data) {
					continue // on the next page
				}
				r.reset()
				return nil
			}
			if ok, err := r.finish(start+uint64(off+hdrSize+pos), fn); !ok {
				r.reset()
				return err
			}
		case skip < 0 && off == 0 && info&firstIsContRecord != 0:
			skip = int(remLen)
			fallthrough
		case skip > 0:
			if info&firstIsContRecord == 0 {
				r.reset()
				return nil
			}
			n := min(skip, len(page))
			skip -= n
			pos = n
			if skip > 0 {
				continue
			}
		}
		skip = 0
		for {
			pos = (pos + maxAlign - 1) &^ (maxAlign - 1)
			if pos >= len(page) {
				break
			}
			rest := page[pos:]
			if len(rest) < 4 {
				r.reset()
				return nil
			}
			total := le.Uint32(rest)
			if total < recordHeaderSize || total > maxRecordSize {
				// Zeros after the end of the WAL, or no record.
				r.reset()
				return nil
			}
			r.lsn = start + uint64(off+hdrSize+pos)
			n := min(int(total), len(rest))
			r.rec = append(r.rec[:0], rest[:n]...)
			r.need = int(total) - n
			pos += n
			if r.need > 0 {
				if off+bs > len(data) {
					r.reset() // the copy ends in it
					return nil
				}
				break // on the next page
			}
			ok, err := r.finish(start+uint64(off+hdrSize+pos), fn)
			if !ok {
				r.reset()
				return err
			}
			if r.switched() {
				// The rest of the segment holds no WAL.
				r.rec, r.need = r.rec[:0], 0
				r.next = start + r.segSize
				return nil
			}
		}
	}
	if uint64(len(data)) == r.segSize {
		r.next = start + r.segSize
	} else {
		r.reset()
	}
	return nil
}

// finish checks the record just put together, whose last byte ends
// before end, and delivers it; ok is false when it is not valid or fn
// failed (err).
func (r *RecordReader) finish(end uint64, fn func(Record) error) (bool, error) {
	rec := r.rec
	le := binary.LittleEndian
	if len(rec) < recordHeaderSize || r.prev != 0 && le.Uint64(rec[8:]) != r.prev {
		return false, nil
	}
	crc := crc32.Update(crc32.Update(0, castagnoli, rec[recordHeaderSize:]), castagnoli, rec[:recordCRCOffset])
	if crc != le.Uint32(rec[recordCRCOffset:]) {
		return false, nil
	}
	r.prev = r.lsn
	if err := fn(Record{LSN: r.lsn, End: end, Raw: rec}); err != nil {
		return false, err
	}
	return true, nil
}

// switched reports whether the last record delivered is an XLOG_SWITCH.
func (r *RecordReader) switched() bool {
	return len(r.rec) >= recordHeaderSize && r.rec[17] == rmXLogID && r.rec[16]&^recordInfoMask == xlogSwitch
}

// reset forgets the record being put together and the last valid one:
// the next segment starts afresh.
func (r *RecordReader) reset() {
	r.rec, r.need, r.prev, r.next = r.rec[:0], 0, 0, 0
}
