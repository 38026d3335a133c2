package archive

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// A spooled segment waits on disk before wal-fetch takes it: seconds
// behind the prefetch worker, the whole restore behind the check of a
// backup's consistency range (CheckWAL), long enough for its pages to
// leave the page cache and be read back from the disk. A disk that fails
// halfway can give back other bytes than those written and fsynced: a
// flipped bit, a lost write read as zeros. The first page header and the
// size, all spool.take checked before, do not see that; PostgreSQL,
// given such a segment, takes the first record whose CRC fails for the
// end of the WAL and, outside standby mode, ends recovery there without
// an error, before WAL the archive holds. So the download records the
// CRC-32C and size of the bytes it checked beside the segment
// (<segment>.crc32c, written durably before the segment gets its name),
// and take hands over only a segment whose bytes still match them; any
// other is removed and the segment downloaded again, with a warning
// (logSpoolRefused): the operator must hear of a disk that changes what
// it stored. The CRC guards against a disk, not an attacker: whoever can
// write pg_wal needs no spool to hand PostgreSQL other WAL.
const spoolSumSuffix = ".crc32c"

// spoolCRC is the CRC-32C table of the spool's checksums.
var spoolCRC = crc32.MakeTable(crc32.Castagnoli)

// maxSpoolSum bounds what is read of a checksum file.
const maxSpoolSum = 64

// spoolSum is the checksum of a spooled segment's bytes.
type spoolSum struct {
	crc  uint32
	size int64
}

func (s spoolSum) String() string { return fmt.Sprintf("%08x %d\n", s.crc, s.size) }

// errNoSpoolSum is a spooled segment without its checksum file: spooled
// by a hoard older than the checksums (an upgrade during a restore), or
// its checksum removed by hand. Nothing says its disk failed: it is
// downloaded again and only noted (logSpoolRefused).
var errNoSpoolSum = errors.New("no checksum recorded (spooled by an older hoard)")

// spoolChangedError is a spooled segment whose bytes are not those its
// download checked: the disk changed them, or a file was put there.
type spoolChangedError struct {
	path      string // the spooled file
	got, want spoolSum
}

func (e *spoolChangedError) Error() string {
	return fmt.Sprintf("%s changed on disk since it was spooled (CRC-32C %08x of %d bytes, %08x of %d recorded): "+
		"a failing disk, or a file put there", e.path, e.got.crc, e.got.size, e.want.crc, e.want.size)
}

// logSpoolRefused logs why take refused the spooled segment name, the
// file path, which is downloaded again: unheard of, a disk that flips
// bits or loses writes goes on damaging what no download replaces.
// PostgreSQL puts wal-fetch's stderr in its log.
func (a *Archive) logSpoolRefused(name, path string, err error) {
	if changed, ok := errors.AsType[*spoolChangedError](err); ok {
		a.Log.Warn().Str("site", a.Site).Str("segment", name).Str("spool", path).
			Int64("size", changed.got.size).Int64("want_size", changed.want.size).
			Str("crc32c", fmt.Sprintf("%08x", changed.got.crc)).Str("want_crc32c", fmt.Sprintf("%08x", changed.want.crc)).
			Msg("spooled wal segment changed on disk since its download was checked (a failing disk, or a file put there): removed and downloaded again")
		return
	}
	if errors.Is(err, errNoSpoolSum) {
		a.Log.Info().Str("site", a.Site).Str("segment", name).Str("spool", path).
			Msg("spooled wal segment has no checksum, as an older hoard spooled it: removed and downloaded again")
		return
	}
	// Not a regular file, a checksum file that cannot be read, a read
	// error, a page header or system that does not fit.
	a.Log.Warn().Str("site", a.Site).Str("segment", name).Str("spool", path).Err(err).
		Msg("spooled wal segment refused: removed and downloaded again")
}

// spoolSumSegment returns the segment whose checksum file is name.
func spoolSumSegment(name string) (string, bool) {
	seg, ok := strings.CutSuffix(name, spoolSumSuffix)
	return seg, ok && wal.IsSegmentName(seg)
}

// writeSpoolSum records sum as the checksum of the segment name about to
// be renamed into the spool dir. It replaces the file of an earlier copy
// and is durable before it returns (storage.WriteFileIn): a crash after
// the segment's rename never leaves the segment with another copy's
// checksum, and one before it leaves a checksum file alone, which the
// spool's clear and dropBefore remove with the segments.
func writeSpoolSum(dir *os.Root, name string, sum spoolSum) error {
	if err := storage.WriteFileIn(dir, name+spoolSumSuffix, strings.NewReader(sum.String()), nil); err != nil {
		return fmt.Errorf("record the checksum of %s: %w", name, err)
	}
	return nil
}

// readSum returns the recorded checksum of the spooled segment name.
func (s *spool) readSum(name string) (spoolSum, error) {
	f, err := s.root.Open(name + spoolSumSuffix)
	if err != nil {
		return spoolSum{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSpoolSum))
	if err != nil {
		return spoolSum{}, err
	}
	var sum spoolSum
	if _, err := fmt.Sscanf(string(b), "%08x %d\n", &sum.crc, &sum.size); err != nil {
		return spoolSum{}, fmt.Errorf("%s: %w", s.path(name+spoolSumSuffix), err)
	}
	return sum, nil
}

// check reads the spooled segment name, fi its Lstat, whole: its bytes
// must be those spooled (their recorded checksum and size), and its page
// header must fit its name and size. It returns the page header.
func (s *spool) check(name string, fi fs.FileInfo) (wal.PageHeader, error) {
	if !fi.Mode().IsRegular() {
		return wal.PageHeader{}, fmt.Errorf("%s is not a regular file", s.path(name))
	}
	want, err := s.readSum(name)
	if errors.Is(err, fs.ErrNotExist) {
		return wal.PageHeader{}, fmt.Errorf("%s: %w", s.path(name), errNoSpoolSum)
	}
	if err != nil {
		return wal.PageHeader{}, fmt.Errorf("%s: its checksum: %w", s.path(name), err)
	}
	f, err := s.root.Open(name)
	if err != nil {
		return wal.PageHeader{}, err
	}
	defer f.Close()
	var head headBuffer
	crc := crc32.New(spoolCRC)
	n, err := io.CopyBuffer(io.MultiWriter(&head, crc), f, make([]byte, copyBufferSize))
	if err != nil {
		return wal.PageHeader{}, fmt.Errorf("read %s: %w", s.path(name), err)
	}
	if got := (spoolSum{crc: crc.Sum32(), size: n}); got != want {
		return wal.PageHeader{}, &spoolChangedError{path: s.path(name), got: got, want: want}
	}
	return wal.CheckSegment(name, head.b, n)
}

// remove removes the spooled segment name and its checksum file.
func (s *spool) remove(name string) {
	s.root.Remove(name)
	s.root.Remove(name + spoolSumSuffix)
}

// spooled returns the segments that have a file or a checksum file in
// the spool: a crash between the two writes leaves the checksum alone.
func (s *spool) spooled() []string {
	var out []string
	for _, e := range readDir(s.root) {
		n := e.Name()
		if seg, ok := spoolSumSegment(n); ok {
			n = seg
		} else if !wal.IsSegmentName(n) {
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
