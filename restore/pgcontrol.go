package restore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/jackc/pglogrepl"
)

// GuardCheckpoint is the checkpoint location restore writes into a
// restored pg_control (see guardCheckpoint): 0/DEAD lies in the first WAL
// segment, which PostgreSQL never writes (BootStrapXLOG in xlog.c puts
// initdb's first checkpoint at the start of segment 1, and WAL only grows
// from there), so no WAL holds a checkpoint record there. pg_controldata shows it as "Latest checkpoint
// location: 0/DEAD".
const GuardCheckpoint pglogrepl.LSN = 0xDEAD

// Offsets in ControlFileData (src/include/catalog/pg_control.h): after
// system_identifier (8 bytes), pg_control_version, catalog_version_no,
// state (4 each) and time (8, aligned to 24) comes checkPoint, the LSN of
// the latest checkpoint record, then checkPointCopy, whose first field,
// redo, archive.ClusterReplayStart reads at 40.
const (
	controlVersionOffset    = 8
	controlCheckpointOffset = 32
)

// controlCRCOffsets is, for each pg_control_version whose layout was
// checked against real clusters (initdb of PostgreSQL 13 to 18 on x86-64,
// pg_controldata 15), where the CRC-32C of the bytes before it lies:
// offsetof(ControlFileData, crc). 1300 (PostgreSQL 13 to 16) and 1700
// (17 added wal_level to CheckPoint, in its trailing padding) end with
// mock_authentication_nonce at 256; 1800 added default_char_signedness
// before it, which moves the nonce to 257 and the CRC, aligned, to 292.
// PostgreSQL 18 has no pg_control field that itself demands a
// backup_label (a backupLabelRequired flag was proposed but not
// committed), so the invalid checkpoint is the guard for every version.
var controlCRCOffsets = map[uint32]int{1300: 288, 1700: 288, 1800: 292}

// errControlLayout says pg_control is of a layout guardCheckpoint does not
// know: it is written as the backup holds it.
var errControlLayout = errors.New("pg_control of a layout not known to hoard")

// ErrControlCRC is returned when the backup's pg_control fails
// PostgreSQL's own CRC check: the backup is damaged, and PostgreSQL would
// refuse to start on it.
var ErrControlCRC = errors.New("pg_control fails its CRC check")

// guardCheckpoint returns a copy of pg_control data with its checkpoint
// location (checkPoint) set to GuardCheckpoint and its CRC recomputed, the
// rest, checkPointCopy (REDO and all) included, unchanged. With
// backup_label in the data directory PostgreSQL takes the checkpoint
// location from backup_label (read_backup_label in xlogrecovery.c) and
// never reads pg_control's. Without it PostgreSQL would start crash
// recovery at pg_control's checkpoint: for a backup of a running cluster
// one written during the backup, after pages the backup copied earlier,
// and with no backup end to reach, so it would start a cluster that is
// silently corrupt. With 0/DEAD it fails instead: "could not locate a
// valid checkpoint record". pgBackRest does the same (its PR #2232).
//
// A pg_control too short, or of an unknown pg_control_version, is
// returned unchanged with an error wrapping errControlLayout; one whose
// stored CRC does not match is refused with ErrControlCRC, so that a
// damaged file never gets a valid CRC.
func guardCheckpoint(data []byte) ([]byte, error) {
	if len(data) < controlVersionOffset+4 {
		return data, fmt.Errorf("%d bytes: %w", len(data), errControlLayout)
	}
	version := binary.LittleEndian.Uint32(data[controlVersionOffset:])
	crcAt, ok := controlCRCOffsets[version]
	if !ok {
		return data, fmt.Errorf("pg_control_version %d: %w", version, errControlLayout)
	}
	if len(data) < crcAt+4 {
		return data, fmt.Errorf("pg_control_version %d in %d bytes: %w", version, len(data), errControlLayout)
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	if got, want := crc32.Checksum(data[:crcAt], table), binary.LittleEndian.Uint32(data[crcAt:]); got != want {
		return nil, fmt.Errorf("pg_control_version %d: CRC %08x, stored %08x: %w", version, got, want, ErrControlCRC)
	}
	out := append([]byte(nil), data...)
	binary.LittleEndian.PutUint64(out[controlCheckpointOffset:], uint64(GuardCheckpoint))
	binary.LittleEndian.PutUint32(out[crcAt:], crc32.Checksum(out[:crcAt], table))
	return out, nil
}
