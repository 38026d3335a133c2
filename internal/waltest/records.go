package waltest

import (
	"encoding/binary"
	"hash/crc32"
)

// Writer lays WAL records out in segments as PostgreSQL's
// XLogInsertRecord does: each record MAXALIGNed, with a valid xl_prev and
// CRC-32C, a page header on every page (long on a segment's first),
// XLP_FIRST_IS_CONTRECORD and xlp_rem_len on a page a record continues
// on; for tests of record decoding without a server.
type Writer struct {
	segSize, blockSize int
	tli                uint32
	start              uint64 // LSN of the first segment's start
	data               []byte
	prev               uint64
}

// NewWriter returns a Writer of segments of segSize bytes and pages of
// blockSize bytes, on timeline tli, the first starting at LSN start (a
// segment's start).
func NewWriter(segSize, blockSize int, tli uint32, start uint64) *Writer {
	return &Writer{segSize: segSize, blockSize: blockSize, tli: tli, start: start}
}

// LSN returns where the next record would start, were it to start on
// the current page.
func (w *Writer) LSN() uint64 { return w.start + uint64(len(w.data)) }

// pageHeader writes the header of the page starting at data's end.
func (w *Writer) pageHeader(rem int) {
	off := len(w.data)
	size := 24 // SizeOfXLogShortPHD, MAXALIGNed
	if off%w.segSize == 0 {
		size = 40 // SizeOfXLogLongPHD
	}
	h := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint16(h[0:], 0xD110) // XLOG_PAGE_MAGIC of PostgreSQL 15
	info := uint16(0)
	if rem > 0 {
		info |= 0x0001 // XLP_FIRST_IS_CONTRECORD
	}
	if size == 40 {
		info |= 0x0002 // XLP_LONG_HEADER
		le.PutUint64(h[24:], 7123456789012345678)
		le.PutUint32(h[32:], uint32(w.segSize))
		le.PutUint32(h[36:], uint32(w.blockSize))
	}
	le.PutUint16(h[2:], info)
	le.PutUint32(h[4:], w.tli)
	le.PutUint64(h[8:], w.start+uint64(off))
	le.PutUint32(h[16:], uint32(rem))
	w.data = append(w.data, h...)
}

// Record appends a record of resource manager rmid with xl_info info,
// xl_xid xid and main data main (no block references), and returns
// where it starts and where it ends (not MAXALIGNed).
func (w *Writer) Record(rmid, info uint8, xid uint32, main []byte) (lsn, end uint64) {
	body := []byte{255, byte(len(main))} // XLR_BLOCK_ID_DATA_SHORT
	if len(main) > 255 {
		body = binary.LittleEndian.AppendUint32([]byte{254}, uint32(len(main))) // XLR_BLOCK_ID_DATA_LONG
	}
	body = append(body, main...)
	rec := make([]byte, 24, 24+len(body))
	le := binary.LittleEndian
	le.PutUint32(rec[0:], uint32(24+len(body)))
	le.PutUint32(rec[4:], xid)
	le.PutUint64(rec[8:], w.prev)
	rec[16], rec[17] = info, rmid
	rec = append(rec, body...)
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	crc := crc32.Update(crc32.Update(0, castagnoli, rec[24:]), castagnoli, rec[:20])
	le.PutUint32(rec[20:], crc)
	if len(w.data)%w.blockSize == 0 {
		w.pageHeader(0)
	}
	w.prev = w.LSN()
	lsn = w.prev
	for len(rec) > 0 {
		if len(w.data)%w.blockSize == 0 {
			w.pageHeader(len(rec))
		}
		n := min(len(rec), w.blockSize-len(w.data)%w.blockSize)
		w.data = append(w.data, rec[:n]...)
		rec = rec[n:]
	}
	end = w.LSN()
	w.data = append(w.data, make([]byte, (8-len(w.data)%8)%8)...)
	return lsn, end
}

// RestorePoint appends an XLOG_RESTORE_POINT record called name, its
// name field's tail filled with junk as strlcpy leaves it.
func (w *Writer) RestorePoint(name string) (lsn, end uint64) {
	main := make([]byte, 8+64)
	for i := 8; i < len(main); i++ {
		main[i] = 0xA5
	}
	copy(main[8:], name)
	main[8+len(name)] = 0
	return w.Record(0, 0x70, 0, main)
}

// PadTo appends records until the next one starts at page offset at (a
// multiple of 8, past the short page header), on a later page than the
// current one when at is behind it.
func (w *Writer) PadTo(at int) {
	for {
		off := len(w.data) % w.blockSize
		if off == 0 {
			off = 24
		}
		gap := at - off
		if gap < 0 {
			gap += w.blockSize - 24
		}
		if gap == 0 && len(w.data)%w.blockSize != 0 {
			return
		}
		// A record of 24+2+n bytes takes n+26 rounded up to 8.
		n := min(max(gap-26, 0), 200)
		if gap < 32 {
			n = 200 // too close: go round the page
		}
		w.Record(0, 0, 0, make([]byte, n))
	}
}

// Fill appends records until the next one starts at or after lsn, a
// few bytes past it at most.
func (w *Writer) Fill(lsn uint64) {
	for w.LSN() < lsn {
		w.Record(0, 0, 0, make([]byte, min(4000, max(0, int(lsn-w.LSN())-26))))
	}
}

// PadToSegmentEnd appends records until the next one starts before bytes
// before the end of the current segment's last page (a multiple of 8, at
// least 32).
func (w *Writer) PadToSegmentEnd(before int) {
	end := w.start + uint64(len(w.data)/w.segSize+1)*uint64(w.segSize)
	w.Fill(end - uint64(w.blockSize) + 64)
	w.PadTo(w.blockSize - before)
}

// Segments returns the WAL written as whole segments, zeros after its end.
func (w *Writer) Segments() [][]byte {
	data := append(w.data, make([]byte, (w.segSize-len(w.data)%w.segSize)%w.segSize)...)
	var out [][]byte
	for len(data) > 0 {
		out = append(out, data[:w.segSize:w.segSize])
		data = data[w.segSize:]
	}
	return out
}
