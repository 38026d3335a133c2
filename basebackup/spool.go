package basebackup

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// spool is a temporary file in Options.TempDir that holds one part of a
// backup's control object while the backup ends (PostgreSQL's
// backup_manifest, the manifest's JSON, the control tar), so that the
// memory of the end of a backup does not grow with the number of files:
// the control tar is streamed from its spool through the codec to the
// store. The file is unlinked as soon as it is created, so it goes with
// its descriptor on every exit path, an error or a crash included. It is
// not fsynced (nothing reads it after the process); its CRC-32C and length
// are taken as it is written and checked as it is read back (reader), so
// that a copy the disk lost or changed fails the backup instead of being
// stored.
type spool struct {
	f    *os.File
	w    *bufio.Writer
	sum  stageSum
	what string // what it holds, for errors
	dir  string // Options.TempDir
	err  error  // the first write error
}

// newSpool creates a spool in dir (created if missing; "" means
// os.TempDir(), as for Options.TempDir) for what.
func newSpool(dir, what string) (*spool, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("basebackup: %s is spooled in %s: %w", what, dir, err)
	}
	f, err := os.CreateTemp(dir, ".hoard-control-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("basebackup: %s is spooled in %s: %w", what, dir, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("basebackup: spool of %s: %w", what, err)
	}
	return &spool{f: f, w: bufio.NewWriterSize(f, 64<<10), what: what, dir: dir}, nil
}

// Write appends p to the spool.
func (s *spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	s.sum.add(p[:n])
	if err != nil {
		s.err = fmt.Errorf("basebackup: spool of %s in %s: %w", s.what, s.dir, err)
		return n, s.err
	}
	return n, nil
}

// size is the number of bytes written.
func (s *spool) size() int64 { return s.sum.n }

// reader flushes the spool and returns a reader of its whole content from
// the start, which fails if the file does not read back as written. One
// reader at a time: each call starts over.
func (s *spool) reader() (io.Reader, error) {
	if s.err != nil {
		return nil, s.err
	}
	if err := s.w.Flush(); err != nil {
		s.err = fmt.Errorf("basebackup: spool of %s in %s: %w", s.what, s.dir, err)
		return nil, s.err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("basebackup: spool of %s in %s: %w", s.what, s.dir, err)
	}
	return bufio.NewReaderSize(&stagedReader{f: s.f, want: s.sum, what: "the spooled " + s.what, dir: s.dir,
		lost: "the control object was not stored"}, 64<<10), nil
}

// Close closes the file, which frees its space: it has no name. Safe on a
// nil spool.
func (s *spool) Close() error {
	if s == nil {
		return nil
	}
	return s.f.Close()
}
