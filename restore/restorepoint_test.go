package restore

import (
	"bytes"
	"testing"
)

// restorePointRecord builds an XLOG_RESTORE_POINT record as PostgreSQL
// writes it: the 24-byte XLogRecord header, XLR_BLOCK_ID_DATA_SHORT with
// length 72, the timestamp, then the name copied with strlcpy into a
// 64-byte field whose tail holds leftover bytes.
func restorePointRecord(name string, junk byte) []byte {
	rec := make([]byte, 24+2+8+restorePointNameSize)
	rec[16] = 0x70 // XLOG_RESTORE_POINT
	rec[17] = 0    // RM_XLOG_ID
	rec[24], rec[25] = 0xFF, 72
	field := rec[34:]
	for i := range field {
		field[i] = junk
	}
	copy(field, name)
	field[len(name)] = 0
	return rec
}

func TestFindRestorePointRecord(t *testing.T) {
	rec := restorePointRecord("after_step1", 0xA5)
	t.Run("OK", func(t *testing.T) {
		data := append(bytes.Repeat([]byte{0x11}, 1000), rec...)
		data = append(data, bytes.Repeat([]byte{0x22}, 500)...)
		if got, want := findRestorePointRecord(data, append([]byte("after_step1"), 0)), 1000+34; got != want {
			t.Errorf("offset = %d, want %d", got, want)
		}
	})
	t.Run("OKLastOfTwo", func(t *testing.T) {
		data := append(append(append([]byte{}, rec...), make([]byte, 100)...), rec...)
		if got, want := findRestorePointRecord(data, append([]byte("after_step1"), 0)), len(rec)+100+34; got != want {
			t.Errorf("offset = %d, want %d", got, want)
		}
	})
	t.Run("ErrPrefixOfLongerName", func(t *testing.T) {
		data := restorePointRecord("after_step10", 0)
		if got := findRestorePointRecord(data, append([]byte("after_step1"), 0)); got != -1 {
			t.Errorf("found %q inside the record of a longer name at %d", "after_step1", got)
		}
	})
	t.Run("ErrNotARecord", func(t *testing.T) {
		data := append(make([]byte, 100), []byte("after_step1\x00")...)
		if got := findRestorePointRecord(data, append([]byte("after_step1"), 0)); got != -1 {
			t.Errorf("found the name outside a restore point record at %d", got)
		}
	})
}
