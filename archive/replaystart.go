package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/wal"
)

// ClusterReplayStart returns a lower bound of where recovery of the
// cluster whose data directory is pgdata starts: the REDO location of
// pg_control's latest checkpoint, or backup_label's START WAL LOCATION
// where that is earlier (PostgreSQL reads history files through
// restore_command before it reads backup_label and updates pg_control),
// with pg_control's WAL segment size. The zero ReplayStart (no bound)
// for a pg_control of another layout.
func ClusterReplayStart(pgdata string) (ReplayStart, error) {
	b, err := readHead(filepath.Join(pgdata, "global", "pg_control"), wal.ControlSegSizeOffset+4)
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
// (readPGControl): 0 with a nil error for a pg_control of a layout hoard
// does not know (its CRC cannot be checked), an error wrapping
// fs.ErrNotExist where there is none, one wrapping wal.ErrControlCRC
// where its CRC fails read after read, and one for a file cut short of
// its CRC.
func ClusterSegmentSize(pgdata string) (uint64, error) {
	b, err := readPGControl(filepath.Join(pgdata, "global", "pg_control"), readPGControlFile)
	if err != nil {
		return 0, err
	}
	if !wal.ControlLayoutKnown(binary.LittleEndian.Uint32(b[wal.ControlVersionOffset:])) {
		return 0, nil
	}
	return uint64(binary.LittleEndian.Uint32(b[wal.ControlSegSizeOffset:])), nil
}

// Torn reads of pg_control: the server rewrites it in one 8 KiB write, at
// each checkpoint and, in recovery, at each restartpoint and each time the
// minimum recovery point moves, and a read at the same moment can return
// part of the old bytes and part of the new. PostgreSQL's own tools read
// it again, 10 ms later, while its CRC fails, until the same bad CRC comes
// twice in a row (damage, not a write in progress) or after 10 retries
// (get_controlfile_by_exact_path, src/common/controldata_utils.c).
const (
	controlRetries    = 10
	controlRetryPause = 10 * time.Millisecond
	// controlFileSize is PG_CONTROL_FILE_SIZE, the size PostgreSQL
	// writes pg_control at (its data, then zeros).
	controlFileSize = 8192
)

// readPGControl reads the pg_control at path with read and checks its CRC
// as PostgreSQL's tools do (above). It returns the bytes of one whose CRC
// matches, or whose layout hoard does not know (nothing but its version
// can be taken from it); an error wrapping wal.ErrControlCRC for one whose
// CRC still fails; an error for a file cut short of its version or its
// CRC; and read's error.
func readPGControl(path string, read func(string) ([]byte, error)) ([]byte, error) {
	var last uint32
	for retries := 0; ; retries++ {
		b, err := read(path)
		if err != nil {
			return nil, err
		}
		if len(b) < wal.ControlVersionOffset+4 {
			return nil, fmt.Errorf("read %s: %d bytes, short of pg_control_version: %w", path, len(b), io.ErrUnexpectedEOF)
		}
		version := binary.LittleEndian.Uint32(b[wal.ControlVersionOffset:])
		if !wal.ControlLayoutKnown(version) {
			return b, nil
		}
		at, err := wal.ControlCRCOffset(b)
		if err != nil {
			// Of a layout hoard knows: too short to hold its CRC.
			return nil, fmt.Errorf("read %s: %d bytes, short of the CRC of pg_control_version %d: %w", path, len(b), version, io.ErrUnexpectedEOF)
		}
		crc := wal.ControlCRC(b[:at])
		if crc == binary.LittleEndian.Uint32(b[at:]) {
			return b, nil
		}
		if retries == controlRetries || (retries > 0 && crc == last) {
			return nil, fmt.Errorf("%s, read %d times %s apart (damaged, or rewritten during every read): %w",
				path, retries+1, controlRetryPause, wal.CheckControlCRC(b))
		}
		last = crc
		time.Sleep(controlRetryPause)
	}
}

// readPGControlFile reads the pg_control at path: at most the size
// PostgreSQL writes it at.
func readPGControlFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, controlFileSize))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// labelStart returns backup_label's START WAL LOCATION.
func labelStart(label string) (pglogrepl.LSN, error) {
	l, err := parseLabel(label)
	return l.Start, err
}
