package archive

import (
	"encoding/binary"
	"errors"
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
// directory is pgdata, from global/pg_control, for wal-push and
// archive-sync, which need nothing else from it. It reads only the first
// 8 bytes and checks no CRC, unlike wal.ReadControlFile: the system
// identifier is set by initdb and never rewritten, so a read torn by the
// server's rewrite of the file gets the same bytes from the old copy and
// the new, and a pg_control of any layout starts with it. wal-fetch,
// which needs the timeline and REDO location too, takes it from the one
// checked read of ReadClusterControl.
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

// ErrOtherSystem is wrapped by FetchWAL's error for a segment or .partial
// whose first page names another database system than the cluster it is
// fetched for.
var ErrOtherSystem = errors.New("WAL of another database system")

// checkSystemID checks that the segment or .partial name, whose first
// page header is h, was written by system want (0: not checked). The
// page-header checks do not tell apart two clusters' segments of one
// name: another cluster's, encrypted with a key this site knows (a site
// sharing the key pair, an older incarnation of the cluster), can be
// stored under the name without a key. PostgreSQL reads such a page as
// the end of the WAL ("WAL file is from different database system") and,
// outside standby mode, ends recovery there and promotes, without the
// WAL that follows and without an error.
func checkSystemID(name string, h wal.PageHeader, want uint64) error {
	if segment, partial, _ := walKind(name); want == 0 || (!segment && !partial) || h.SystemID == want {
		return nil
	}
	return fmt.Errorf("%w: its first page names database system %d, but the cluster it is fetched for is %d: "+
		"another cluster's WAL stored under this name (if the archive really holds another cluster's WAL from here on, "+
		"after pg_upgrade into the same site, set a recovery target before it)", ErrOtherSystem, h.SystemID, want)
}
