package wal

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// walBuilder lays out WAL records on 8 KiB pages from segment offset 0,
// as XLogInsertRecord does: MAXALIGNed, split across pages, a short page
// header on each page after the first.
type walBuilder struct {
	b    []byte
	addr uint64 // the segment's start LSN
}

const testBlock = 8192

func newWALBuilder(addr uint64) *walBuilder {
	w := &walBuilder{addr: addr}
	h := make([]byte, PageHeaderSize)
	binary.LittleEndian.PutUint16(h[0:], 0xD118)
	binary.LittleEndian.PutUint16(h[2:], LongHeader)
	binary.LittleEndian.PutUint32(h[4:], 1)
	binary.LittleEndian.PutUint64(h[8:], addr)
	binary.LittleEndian.PutUint32(h[32:], 1<<20)
	binary.LittleEndian.PutUint32(h[36:], testBlock)
	w.b = h
	return w
}

// pageHeader appends the short header of the page starting at len(w.b),
// with xlp_info info.
func (w *walBuilder) pageHeader(info uint16) {
	h := make([]byte, shortPageHeaderSize)
	binary.LittleEndian.PutUint16(h[0:], 0xD118)
	binary.LittleEndian.PutUint16(h[2:], info)
	binary.LittleEndian.PutUint32(h[4:], 1)
	binary.LittleEndian.PutUint64(h[8:], w.addr+uint64(len(w.b)))
	w.b = append(w.b, h...)
}

// record appends a record of rmgr rmid and xl_info info with data bytes
// of data after its header, xl_prev prev, and returns its LSN. Pages it
// reaches get headers flagged as continuations; stop, when not zero,
// ends the record's bytes at that many (a record cut off by a crash).
func (w *walBuilder) record(prev uint64, rmid, info byte, data []byte, stop int) uint64 {
	for len(w.b)%maxAlign != 0 {
		w.b = append(w.b, 0)
	}
	lsn := w.addr + uint64(len(w.b))
	rec := make([]byte, recordHeaderSize, recordHeaderSize+len(data))
	binary.LittleEndian.PutUint32(rec[0:], uint32(recordHeaderSize+len(data)))
	binary.LittleEndian.PutUint64(rec[8:], prev)
	rec[16], rec[17] = info, rmid
	crc := crc32.Update(0, castagnoli, data)
	crc = crc32.Update(crc, castagnoli, rec[:recordCRCOffset])
	binary.LittleEndian.PutUint32(rec[recordCRCOffset:], crc)
	rec = append(rec, data...)
	if stop > 0 {
		rec = rec[:stop]
	}
	for len(rec) > 0 {
		if len(w.b)%testBlock == 0 {
			w.pageHeader(firstIsContRecord)
		}
		n := min(len(rec), testBlock-len(w.b)%testBlock)
		w.b, rec = append(w.b, rec[:n]...), rec[n:]
	}
	return lsn
}

// TestRecordEnd_OverwriteContrecord: a record whose continuation a crash
// lost, and the WAL recovery wrote after it on the next page, marked
// XLP_FIRST_IS_OVERWRITE_CONTRECORD: the walk skips the broken record
// and goes on, as xlogreader.c does, to the switch that ends the
// segment. Without the skip it stopped at the broken record.
func TestRecordEnd_OverwriteContrecord(t *testing.T) {
	w := newWALBuilder(0x3000000)
	a := w.record(0, 10, 0, make([]byte, 100), 0)
	start := (len(w.b) + maxAlign - 1) &^ (maxAlign - 1)
	w.record(a, 10, 0, make([]byte, 9000), testBlock-start) // cut at the page's end
	w.pageHeader(firstIsOverwrite)
	c := w.record(a, rmXLogID, 0x02, make([]byte, 16), 0) // XLOG_OVERWRITE_CONTRECORD
	w.record(c, rmXLogID, xlogSwitch, nil, 0)
	end := int64(len(w.b))
	seg := make([]byte, 1<<20)
	copy(seg, w.b)

	var r RecordEnd
	_, _ = r.Write(seg)
	if got, want := r.End(), (end+maxAlign-1)&^(maxAlign-1); got != want {
		t.Errorf("End = %d, want %d (the switch's end)", got, want)
	}
	if !r.Switched() || !r.Stopped() {
		t.Errorf("Switched = %v, Stopped = %v, want both", r.Switched(), r.Stopped())
	}

	// Without the flag the broken record ends the WAL.
	w.b[testBlock+2] = 0
	r = RecordEnd{}
	_, _ = r.Write(w.b)
	if r.Switched() || r.End() > testBlock {
		t.Errorf("unflagged page: End = %d, Switched = %v, want the WAL to end at the first record", r.End(), r.Switched())
	}
}
