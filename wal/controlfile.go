package wal

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
)

// Torn reads of pg_control: the server rewrites it in one 8 KiB write, at
// each checkpoint and, in recovery, at each restartpoint and each time the
// minimum recovery point moves, and a read at the same moment can return
// part of the old bytes and part of the new. ReadControlFile reads it
// again as PostgreSQL's own tools do (get_controlfile_by_exact_path,
// src/common/controldata_utils.c): 10 ms later while its CRC fails,
// until the same bad CRC comes twice in a row (damage, not a write in
// progress: a rewrite takes far less than 10 ms) or after 10 retries.
// That rule, not more reads, because it is the one PostgreSQL trusts for
// the same file, and because wal-fetch reads pg_control on every call of
// restore_command: a damaged file is reported after 10 ms, not after the
// half second of a fixed count of reads.
const (
	controlRetries    = 10
	controlRetryPause = 10 * time.Millisecond
	// controlFileSize is PG_CONTROL_FILE_SIZE, the size PostgreSQL
	// writes pg_control at (its data, then zeros), and the most
	// ReadControlFile reads.
	controlFileSize = 8192
)

// ReadControlFile reads the pg_control at path whole (at most
// PG_CONTROL_FILE_SIZE, 8 KiB) and checks its CRC, reading it again while the
// CRC fails (above). It returns the bytes of one whose CRC matches, or of
// one whose layout hoard does not know (ControlLayoutKnown: its CRC cannot
// be checked, and nothing but its version can be trusted from it); an
// error wrapping ErrControlCRC for one whose CRC still fails; one wrapping
// io.ErrUnexpectedEOF for a file cut short of its version or, of a known
// layout, of its CRC; and open's error (wrapping fs.ErrNotExist where
// there is no file).
func ReadControlFile(path string) ([]byte, error) {
	return readControl(path, readControlOnce)
}

// ReadControlFileFrom is ReadControlFile of the file open opens: each
// read opens it afresh (a caller that must not follow links on the way
// opens it its own way). path names it in errors.
func ReadControlFileFrom(path string, open func() (io.ReadCloser, error)) ([]byte, error) {
	return readControl(path, func(path string) ([]byte, error) {
		f, err := open()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readControlAll(path, f)
	})
}

// readControl is ReadControlFile with each read made by read.
func readControl(path string, read func(string) ([]byte, error)) ([]byte, error) {
	var last uint32
	for retries := 0; ; retries++ {
		b, err := read(path)
		if err != nil {
			return nil, err
		}
		if len(b) < ControlVersionOffset+4 {
			return nil, fmt.Errorf("read %s: %d bytes, short of pg_control_version: %w", path, len(b), io.ErrUnexpectedEOF)
		}
		version := binary.LittleEndian.Uint32(b[ControlVersionOffset:])
		if !ControlLayoutKnown(version) {
			return b, nil
		}
		at, err := ControlCRCOffset(b)
		if err != nil {
			// Of a layout hoard knows: too short to hold its CRC.
			return nil, fmt.Errorf("read %s: %d bytes, short of the CRC of pg_control_version %d: %w", path, len(b), version, io.ErrUnexpectedEOF)
		}
		crc := ControlCRC(b[:at])
		if crc == binary.LittleEndian.Uint32(b[at:]) {
			return b, nil
		}
		if retries == controlRetries || (retries > 0 && crc == last) {
			return nil, fmt.Errorf("%s, read %d times %s apart (damaged, or rewritten during every read): %w",
				path, retries+1, controlRetryPause, CheckControlCRC(b))
		}
		last = crc
		time.Sleep(controlRetryPause)
	}
}

// readControlOnce reads the pg_control at path once: at most
// controlFileSize bytes.
func readControlOnce(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readControlAll(path, f)
}

// readControlAll reads at most controlFileSize bytes of r, the pg_control
// at path.
func readControlAll(path string, r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, controlFileSize))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
