package restore

import (
	"encoding/binary"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/wal"
)

// GuardCheckpoint is the checkpoint location restore writes into a
// restored pg_control (see guardCheckpoint): 0/DEAD lies in the first WAL
// segment, which PostgreSQL never writes (BootStrapXLOG in xlog.c puts
// initdb's first checkpoint at the start of segment 1, and WAL only grows
// from there), so no WAL holds a checkpoint record there. pg_controldata shows it as "Latest checkpoint
// location: 0/DEAD".
const GuardCheckpoint pglogrepl.LSN = 0xDEAD

// PostgreSQL 18 has no pg_control field that itself demands a
// backup_label (a backupLabelRequired flag was proposed but not
// committed), so the invalid checkpoint (guardCheckpoint) is the guard
// for every version.

// errControlLayout says pg_control is of a layout guardCheckpoint does not
// know: it is written as the backup holds it.
var errControlLayout = wal.ErrControlLayout

// ErrControlCRC is returned when the backup's pg_control fails
// PostgreSQL's own CRC check: the backup is damaged, and PostgreSQL would
// refuse to start on it.
var ErrControlCRC = wal.ErrControlCRC

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
	crcAt, err := wal.ControlCRCOffset(data)
	if err != nil {
		return data, err
	}
	if err := wal.CheckControlCRC(data); err != nil {
		return nil, err
	}
	out := append([]byte(nil), data...)
	binary.LittleEndian.PutUint64(out[wal.ControlCheckpointOffset:], uint64(GuardCheckpoint))
	binary.LittleEndian.PutUint32(out[crcAt:], wal.ControlCRC(out[:crcAt]))
	return out, nil
}
