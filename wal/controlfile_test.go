package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// controlFile returns a pg_control of pg_control_version version with
// its CRC (none for a layout hoard does not know).
func controlFile(version uint32) []byte {
	b := make([]byte, controlFileSize)
	binary.LittleEndian.PutUint64(b[ControlSystemIDOffset:], 7000000000000000001)
	binary.LittleEndian.PutUint32(b[ControlVersionOffset:], version)
	binary.LittleEndian.PutUint32(b[ControlSegSizeOffset:], 1<<20)
	if at, err := ControlCRCOffset(b); err == nil {
		binary.LittleEndian.PutUint32(b[at:], ControlCRC(b[:at]))
	}
	return b
}

// TestReadControlFile: pg_control is read again while its CRC fails, as
// PostgreSQL's tools do (get_controlfile_by_exact_path): a read during
// the server's rewrite is followed by one of the whole file; the same bad
// CRC twice in a row is damage, and a CRC that keeps failing is given up
// after 10 more reads. A layout hoard does not know cannot be checked and
// is taken as read; a file cut short of its version or CRC is an error.
func TestReadControlFile(t *testing.T) {
	good := controlFile(1300)
	// A read that fails its CRC: each i a different one.
	tornAt := func(i int) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[ControlSegSizeOffset:], uint32(i))
		return b
	}
	unknown := tornAt(1)
	binary.LittleEndian.PutUint32(unknown[ControlVersionOffset:], 1100)
	for _, tc := range []struct {
		name    string
		reads   [][]byte
		want    []byte // the bytes returned, for OK
		made    int    // reads made
		wantErr error
	}{
		{name: "OK", reads: [][]byte{good}, want: good, made: 1},
		{name: "OKTornRead", reads: [][]byte{tornAt(1), tornAt(2), good}, want: good, made: 3},
		{name: "OKLayoutNotKnown", reads: [][]byte{unknown}, want: unknown, made: 1},
		{name: "ErrDamaged", reads: [][]byte{tornAt(1), tornAt(1), good}, made: 2, wantErr: ErrControlCRC},
		{name: "ErrKeepsFailing", reads: [][]byte{tornAt(1), tornAt(2), tornAt(3), tornAt(4), tornAt(5), tornAt(6),
			tornAt(7), tornAt(8), tornAt(9), tornAt(10), tornAt(11), good}, made: 11, wantErr: ErrControlCRC},
		{name: "ErrShortOfVersion", reads: [][]byte{good[:10]}, made: 1, wantErr: io.ErrUnexpectedEOF},
		{name: "ErrShortOfCRC", reads: [][]byte{good[:290]}, made: 1, wantErr: io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			b, err := readControl("/pgdata/global/pg_control", func(string) ([]byte, error) {
				n++
				return bytes.Clone(tc.reads[n-1]), nil
			})
			if n != tc.made {
				t.Errorf("%d reads, want %d", n, tc.made)
			}
			if strings.HasPrefix(tc.name, "OK") {
				if err != nil || !bytes.Equal(b, tc.want) {
					t.Errorf("readControl = %v; want the pg_control of the last read", err)
				}
			} else if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "/pgdata/global/pg_control") {
				t.Errorf("readControl = %v; want an error naming the file and wrapping %v", err, tc.wantErr)
			}
		})
	}
}

// TestReadControlFile_File: a file on disk is read whole, at most 8 KiB;
// none is an error wrapping fs.ErrNotExist.
func TestReadControlFile_File(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pg_control")
	good := controlFile(1800)
	if err := os.WriteFile(path, append(bytes.Clone(good), 1, 2, 3), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadControlFile(path); err != nil || !bytes.Equal(b, good) {
		t.Errorf("ReadControlFile = %d bytes, %v; want the first %d bytes", len(b), err, len(good))
	}
	if _, err := ReadControlFile(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadControlFile of no file = %v; want an error wrapping fs.ErrNotExist", err)
	}
}
