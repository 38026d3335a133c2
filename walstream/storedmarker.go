package walstream

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hoardbackup/hoard/wal"
)

// This file lets a look at a spool tell a .partial whose copy a stop
// stored from one no run stored (SpoolUnstored). Every clean stop (the
// daemon's SIGTERM, a reload that removes the site) stores the segment
// in progress as <segment>.partial and leaves the file in the spool,
// where the next run of the site streams into it again. The file alone
// cannot say whether that copy was stored: a run killed, or stopped
// while its storage failed, leaves the same file. So when a stream
// end's copy is stored (streamEndStored), the Receiver writes a marker
// into the spool, StoredMarkerName, naming the file, the stored length
// and the CRC-32C of those bytes, atomically (temporary file, fsync,
// rename, directory fsync: storage.WriteFileAtomic).
//
// The marker is a claim checked against the file each time it is read,
// never trusted on its own: it counts only while it names the leftover,
// the file's valid WAL (validWAL, as a run's leftover is stored) ends
// within the stored length, and the first stored-length bytes of the
// file still have its CRC-32C. A later run that fsynced more WAL into
// the file and died, or a spool reused by another cluster (the same
// segment names with other bytes), no longer matches, and the file
// counts as unstored again. So no run has to remove or update it, and a
// crash between the copy's upload and the marker's rename only leaves
// an older marker or none: the file then counts, which is the safe side
// (a false alarm, never a silent loss). The marker is a dot file: no
// lister of the spool takes it for WAL (readSpool) or for a temporary
// file (cleanSpool), and the daemon's look at spools ignores dot names.

// StoredMarkerName is the marker file in the spool naming the last
// stream end's copy of a .partial a Run stored (see storedmarker.go).
const StoredMarkerName = ".hoard-stored-partial"

// storedMarkerMagic starts the marker's one line, with its version.
const storedMarkerMagic = "hoard-stored-partial 1"

// storedMarkerMax bounds how much of a marker is read: a valid one is
// well below it.
const storedMarkerMax = 256

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// storedMarker says that the first length bytes of the spool's .partial
// name, whose CRC-32C is crc, are stored.
type storedMarker struct {
	name   string
	length uint64
	crc    uint32
}

// encode returns the marker's file contents: one line.
func (m storedMarker) encode() []byte {
	return fmt.Appendf(nil, "%s %s %d %08x\n", storedMarkerMagic, m.name, m.length, m.crc)
}

// parseStoredMarker decodes a marker's file contents.
func parseStoredMarker(b []byte) (storedMarker, error) {
	line, ok := bytes.CutSuffix(b, []byte("\n"))
	rest, ok2 := strings.CutPrefix(string(line), storedMarkerMagic+" ")
	f := strings.Fields(rest)
	if !ok || !ok2 || len(f) != 3 || !wal.IsPartialName(f[0]) || len(f[2]) != 8 {
		return storedMarker{}, fmt.Errorf("not a marker of a stored .partial (%q)", b)
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || n == 0 {
		return storedMarker{}, fmt.Errorf("bad stored length in %q", b)
	}
	crc, err := strconv.ParseUint(f[2], 16, 32)
	if err != nil {
		return storedMarker{}, fmt.Errorf("bad CRC-32C in %q", b)
	}
	return storedMarker{name: f[0], length: n, crc: uint32(crc)}, nil
}

// prefixCRC returns the CRC-32C of the first length bytes of the file
// at path; a file shorter than that is an error.
func prefixCRC(path string, length uint64) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, io.LimitReader(f, int64(length)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	if uint64(n) != length {
		return 0, fmt.Errorf("%s holds %d bytes, fewer than %d", path, n, length)
	}
	return h.Sum32(), nil
}

// writeStoredMarker writes the marker of the spool dir saying that the
// first length bytes of its .partial name are stored, their CRC-32C read
// from src, the file the stored copy was made of.
func writeStoredMarker(dir, name, src string, length uint64) error {
	crc, err := prefixCRC(src, length)
	if err != nil {
		return fmt.Errorf("write %s: %w", StoredMarkerName, err)
	}
	m := storedMarker{name: name, length: length, crc: crc}
	if err := writeFileAtomic(dir, StoredMarkerName, m.encode()); err != nil {
		return fmt.Errorf("write %s: %w", StoredMarkerName, err)
	}
	return nil
}

// readStoredMarker reads the marker of the spool dir; its error wraps
// os.ErrNotExist when there is none.
func readStoredMarker(dir string) (storedMarker, error) {
	p := filepath.Join(dir, StoredMarkerName)
	f, err := os.Open(p)
	if err != nil {
		return storedMarker{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, storedMarkerMax+1))
	if err != nil {
		return storedMarker{}, fmt.Errorf("read %s: %w", p, err)
	}
	m, err := parseStoredMarker(b)
	if err != nil {
		return storedMarker{}, fmt.Errorf("%s: %w", p, err)
	}
	return m, nil
}

// storedByMarker tells whether the marker of the spool dir says that
// the leftover .partial name, holding valid bytes of WAL, is stored: it
// names the file, valid is within its length and the file's first
// length bytes have its CRC-32C. A marker that is missing does not;
// one that cannot be read does not either, with the error.
func storedByMarker(dir, name string, valid uint64) (bool, error) {
	m, err := readStoredMarker(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if m.name != name || valid > m.length {
		return false, nil
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err != nil || uint64(fi.Size()) < m.length {
		// Gone, or shorter than the stored copy: not that file.
		return false, nil
	}
	crc, err := prefixCRC(p, m.length)
	if err != nil {
		return false, err
	}
	return crc == m.crc, nil
}
