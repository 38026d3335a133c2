package basebackup

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/hoardbackup/hoard/storage"
)

// stageSum is the CRC-32C and length of the bytes written to a staging
// file, taken as they are written (a writer beside the file, no copy).
type stageSum struct {
	crc uint32
	n   int64
}

func (s *stageSum) Write(p []byte) (int, error) {
	s.add(p)
	return len(p), nil
}

func (s *stageSum) add(p []byte) {
	s.crc = crc32.Update(s.crc, castagnoli, p)
	s.n += int64(len(p))
}

// stagedReader reads a staging or spool file back for upload, checking it against
// the stageSum of what was written: at the end of the file, a length or
// CRC-32C that differs is an error instead of io.EOF, so the store's
// Put or Create aborts and stores nothing. It rewinds (a retried upload
// starts again at offset 0) and checks the new pass from its start.
type stagedReader struct {
	f    *os.File
	want stageSum
	got  stageSum
	what string // what the file holds, for the error ("the staged copy of PATH")
	dir  string // Options.TempDir
	lost string // what the change cost, for the error
	bad  error
}

func (r *stagedReader) Read(p []byte) (int, error) {
	if r.bad != nil {
		return 0, r.bad
	}
	n, err := r.f.Read(p)
	r.got.add(p[:n])
	if r.got.n > r.want.n || errors.Is(err, io.EOF) && r.got != r.want {
		r.bad = &stagedChangedError{what: r.what, dir: r.dir, lost: r.lost, want: r.want, got: r.got}
		return 0, r.bad
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("basebackup: read back %s in %s: %w", r.what, r.dir, err)
	}
	return n, err
}

// Seek moves within the file; only a rewind to its start (or a seek that
// stays where the reader is) keeps the check possible.
func (r *stagedReader) Seek(off int64, whence int) (int64, error) {
	pos, err := r.f.Seek(off, whence)
	if err != nil {
		return pos, err
	}
	switch pos {
	case r.got.n:
	case 0:
		r.got, r.bad = stageSum{}, nil
	default:
		r.bad = fmt.Errorf("basebackup: %s read from offset %d: cannot be checked", r.what, pos)
		return pos, r.bad
	}
	return pos, nil
}

// stagedChangedError is a file of the local disk (a staged delta object,
// a spooled part of the control object) that reads back other bytes than
// were written to it: the disk (or something else) changed it. It is
// permanent: reading it again gives the same wrong bytes.
type stagedChangedError struct {
	what, dir, lost string
	want, got       stageSum
}

func (e *stagedChangedError) Error() string {
	return fmt.Sprintf("basebackup: %s changed on the local disk (directory %s) between writing and reading it back: "+
		"wrote %d bytes with CRC-32C %08x, read back %d bytes with %08x; %s; check that disk (dmesg, SMART) and take the backup again",
		e.what, e.dir, e.want.n, e.want.crc, e.got.n, e.got.crc, e.lost)
}

func (e *stagedChangedError) Is(target error) bool { return target == storage.ErrPermanent }
