package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// global/pg_control holds PostgreSQL's ControlFileData
// (src/include/catalog/pg_control.h), written by the server in one 8 KiB
// write and ending with a CRC-32C of the bytes before it. Where its fields
// lie, the same in every layout hoard knows (ControlLayoutKnown, seen
// with initdb --wal-segsize of PostgreSQL 13 to 18): system_identifier
// (8 bytes), pg_control_version, catalog_version_no, state (4 each) and
// time (8, aligned to 24), then checkPoint, the LSN of the latest
// checkpoint record, then checkPointCopy, whose first field is its REDO
// location; xlog_seg_size, the WAL segment size, comes later.
const (
	ControlSystemIDOffset   = 0
	ControlVersionOffset    = 8
	ControlCheckpointOffset = 32
	ControlRedoOffset       = 40
	ControlSegSizeOffset    = 228
)

// controlCRCOffsets is, for each pg_control_version whose layout was
// checked against real clusters (initdb of PostgreSQL 13 to 18 on x86-64,
// pg_controldata 15), where the CRC-32C of the bytes before it lies:
// offsetof(ControlFileData, crc). 1300 (PostgreSQL 13 to 16) and 1700
// (17 added wal_level to CheckPoint, in its trailing padding) end with
// mock_authentication_nonce at 256; 1800 added default_char_signedness
// before it, which moves the nonce to 257 and the CRC, aligned, to 292.
var controlCRCOffsets = map[uint32]int{1300: 288, 1700: 288, 1800: 292}

// ControlLayoutKnown reports whether pg_control_version version is of a
// layout hoard knows: the offsets above and its CRC's.
func ControlLayoutKnown(version uint32) bool {
	_, ok := controlCRCOffsets[version]
	return ok
}

// ErrControlLayout says a pg_control is of a layout hoard does not know:
// its CRC cannot be checked.
var ErrControlLayout = errors.New("pg_control of a layout not known to hoard")

// ErrControlCRC says a pg_control fails PostgreSQL's own CRC check: it is
// damaged, or was read while the server rewrote it (a torn read), and
// PostgreSQL would refuse to start on it.
var ErrControlCRC = errors.New("pg_control fails its CRC check")

// ControlCRCOffset returns where the CRC of pg_control data lies, or an
// error wrapping ErrControlLayout for data too short or of a
// pg_control_version whose layout is not known.
func ControlCRCOffset(data []byte) (int, error) {
	if len(data) < ControlVersionOffset+4 {
		return 0, fmt.Errorf("%d bytes: %w", len(data), ErrControlLayout)
	}
	version := binary.LittleEndian.Uint32(data[ControlVersionOffset:])
	at, ok := controlCRCOffsets[version]
	if !ok {
		return 0, fmt.Errorf("pg_control_version %d: %w", version, ErrControlLayout)
	}
	if len(data) < at+4 {
		return 0, fmt.Errorf("pg_control_version %d in %d bytes: %w", version, len(data), ErrControlLayout)
	}
	return at, nil
}

// CheckControlCRC returns nil when pg_control data's CRC matches, an error
// wrapping ErrControlCRC when it does not, and one wrapping
// ErrControlLayout when it cannot be checked (ControlCRCOffset).
func CheckControlCRC(data []byte) error {
	at, err := ControlCRCOffset(data)
	if err != nil {
		return err
	}
	if got, want := ControlCRC(data[:at]), binary.LittleEndian.Uint32(data[at:]); got != want {
		return fmt.Errorf("pg_control_version %d: CRC %08x, stored %08x: %w",
			binary.LittleEndian.Uint32(data[ControlVersionOffset:]), got, want, ErrControlCRC)
	}
	return nil
}

// ControlCRC is PostgreSQL's CRC of pg_control bytes: CRC-32C.
func ControlCRC(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}
