package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/wal"
)

// ClusterControl is what wal-fetch takes from global/pg_control of the
// data directory it delivers to, all from one read (ReadClusterControl):
// the startup process rewrites the file while recovery runs
// (restartpoints, a standby's minRecoveryPoint), so answers from separate
// reads could come from different versions of it.
type ClusterControl struct {
	// SystemID is system_identifier, the database system the WAL must
	// name.
	SystemID uint64
	// Timeline is checkPointCopy.ThisTimeLineID, the timeline of the
	// latest checkpoint (restartpoint, in recovery; the backup's
	// checkpoint in a restored backup).
	Timeline uint32
	// Redo is checkPointCopy.redo, the latest checkpoint's REDO location,
	// and SegmentSize is xlog_seg_size; both 0 for a layout hoard does
	// not know, whose CRC cannot be checked.
	Redo        pglogrepl.LSN
	SegmentSize uint64
}

// controlTimelineOffset is where pg_control (PostgreSQL 11 and later)
// holds checkPointCopy.ThisTimeLineID, the timeline of the latest
// checkpoint: after system_identifier (8 bytes), pg_control_version,
// catalog_version_no and state (4 each, then 4 of padding), time,
// checkPoint and checkPointCopy.redo (8 each).
const controlTimelineOffset = 48

// ReadClusterControl reads global/pg_control of the data directory pgdata
// once, whole, and checks it as PostgreSQL's tools do
// (wal.ReadControlFile: a torn read is read again, and one that keeps
// failing is an error wrapping wal.ErrControlCRC, not wrong answers). A
// pg_control of a layout hoard does not know gives its system identifier
// (every layout starts with it) and the timeline at the same offset as
// all layouts since PostgreSQL 11, but no Redo and no SegmentSize.
// Errors: one wrapping fs.ErrNotExist where there is none, one wrapping
// io.ErrUnexpectedEOF for a file cut short of its CRC (or, of another
// layout, of its timeline), and the read's.
func ReadClusterControl(pgdata string) (ClusterControl, error) {
	path := filepath.Join(pgdata, "global", "pg_control")
	b, err := wal.ReadControlFile(path)
	if err != nil {
		return ClusterControl{}, err
	}
	if len(b) < controlTimelineOffset+4 {
		return ClusterControl{}, fmt.Errorf("read %s: %d bytes, short of the timeline: %w", path, len(b), io.ErrUnexpectedEOF)
	}
	c := ClusterControl{
		SystemID: binary.LittleEndian.Uint64(b[wal.ControlSystemIDOffset:]),
		Timeline: binary.LittleEndian.Uint32(b[controlTimelineOffset:]),
	}
	if wal.ControlLayoutKnown(binary.LittleEndian.Uint32(b[wal.ControlVersionOffset:])) {
		c.Redo = pglogrepl.LSN(binary.LittleEndian.Uint64(b[wal.ControlRedoOffset:]))
		c.SegmentSize = uint64(binary.LittleEndian.Uint32(b[wal.ControlSegSizeOffset:]))
	}
	return c, nil
}

// ReplayStart returns a lower bound of where recovery of the cluster
// whose data directory is pgdata, and whose pg_control is c, starts: c's
// REDO location, or backup_label's START WAL LOCATION where that is
// earlier (PostgreSQL reads history files through restore_command before
// it reads backup_label and updates pg_control), with c's WAL segment
// size. The zero ReplayStart (no bound) for a pg_control of another
// layout.
func (c ClusterControl) ReplayStart(pgdata string) (ReplayStart, error) {
	if c.SegmentSize == 0 {
		return ReplayStart{}, nil
	}
	r := ReplayStart{LSN: c.Redo, SegmentSize: c.SegmentSize}
	label, err := os.ReadFile(filepath.Join(pgdata, "backup_label"))
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return ReplayStart{}, err
	}
	start, err := labelStart(string(label))
	if err != nil {
		return ReplayStart{}, fmt.Errorf("%s: %w", filepath.Join(pgdata, "backup_label"), err)
	}
	r.LSN = min(r.LSN, start)
	return r, nil
}

// ClusterReplayStart is ReadClusterControl's ReplayStart, for a caller
// that needs nothing else from pg_control.
func ClusterReplayStart(pgdata string) (ReplayStart, error) {
	c, err := ReadClusterControl(pgdata)
	if err != nil {
		return ReplayStart{}, err
	}
	return c.ReplayStart(pgdata)
}

// ClusterTimeline is ReadClusterControl's Timeline, for a caller that
// needs nothing else from pg_control.
func ClusterTimeline(pgdata string) (uint32, error) {
	c, err := ReadClusterControl(pgdata)
	if err != nil {
		return 0, err
	}
	return c.Timeline, nil
}

// labelStart returns backup_label's START WAL LOCATION.
func labelStart(label string) (pglogrepl.LSN, error) {
	l, err := parseLabel(label)
	return l.Start, err
}
