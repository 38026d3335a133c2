package archive

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hoardbackup/hoard/wal"
)

// WALSystemID returns the system identifier of the cluster that wrote the
// WAL file at path. A segment or .partial file carries it in its long page
// header (xlp_sysid). Other files (.history, .backup) carry none: it is
// read from global/pg_control of the data directory whose pg_wal holds the
// file, as for the %p of archive_command (pg_control starts with the
// system identifier, in the server's byte order: little-endian here, as
// wal.DecodePageHeader reads it).
func WALSystemID(path string) (uint64, error) {
	name := filepath.Base(path)
	if wal.IsSegmentName(name) || wal.IsPartialName(name) {
		b, err := readHead(path, wal.PageHeaderSize)
		if err != nil {
			return 0, err
		}
		h, err := wal.DecodePageHeader(b)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		return h.SystemID, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, err
	}
	id, err := ClusterSystemID(filepath.Dir(filepath.Dir(abs)))
	if err != nil {
		return 0, fmt.Errorf("system identifier of %s: %w", path, err)
	}
	return id, nil
}

// ClusterSystemID returns the system identifier of the cluster whose data
// directory is pgdata, from global/pg_control.
func ClusterSystemID(pgdata string) (uint64, error) {
	b, err := readHead(filepath.Join(pgdata, "global", "pg_control"), 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// readHead returns the first n bytes of the file at path.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
