package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/wal"
)

// ClusterReplayStart returns a lower bound of where recovery of the
// cluster whose data directory is pgdata starts: the REDO location of
// pg_control's latest checkpoint, or backup_label's START WAL LOCATION
// where that is earlier (PostgreSQL reads history files through
// restore_command before it reads backup_label and updates pg_control),
// with pg_control's WAL segment size, from a whole pg_control whose CRC
// matches (wal.ReadControlFile: a torn read is read again, and one that
// keeps failing is an error wrapping wal.ErrControlCRC, not a wrong
// bound). The zero ReplayStart (no bound) for a pg_control of another
// layout.
func ClusterReplayStart(pgdata string) (ReplayStart, error) {
	b, err := wal.ReadControlFile(filepath.Join(pgdata, "global", "pg_control"))
	if err != nil {
		return ReplayStart{}, err
	}
	if !wal.ControlLayoutKnown(binary.LittleEndian.Uint32(b[wal.ControlVersionOffset:])) {
		return ReplayStart{}, nil
	}
	r := ReplayStart{
		LSN:         pglogrepl.LSN(binary.LittleEndian.Uint64(b[wal.ControlRedoOffset:])),
		SegmentSize: uint64(binary.LittleEndian.Uint32(b[wal.ControlSegSizeOffset:])),
	}
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

// ClusterSegmentSize returns the WAL segment size (xlog_seg_size) that
// global/pg_control of the cluster whose data directory is pgdata
// records, read whole and checked as PostgreSQL's tools read it
// (wal.ReadControlFile): 0 with a nil error for a pg_control of a layout
// hoard does not know (its CRC cannot be checked), an error wrapping
// fs.ErrNotExist where there is none, one wrapping wal.ErrControlCRC
// where its CRC fails read after read, and one for a file cut short of
// its CRC.
func ClusterSegmentSize(pgdata string) (uint64, error) {
	b, err := wal.ReadControlFile(filepath.Join(pgdata, "global", "pg_control"))
	if err != nil {
		return 0, err
	}
	if !wal.ControlLayoutKnown(binary.LittleEndian.Uint32(b[wal.ControlVersionOffset:])) {
		return 0, nil
	}
	return uint64(binary.LittleEndian.Uint32(b[wal.ControlSegSizeOffset:])), nil
}

// labelStart returns backup_label's START WAL LOCATION.
func labelStart(label string) (pglogrepl.LSN, error) {
	l, err := parseLabel(label)
	return l.Start, err
}
