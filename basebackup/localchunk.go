package basebackup

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// readBufferSize is how much of a file a worker reads at once: a multiple
// of every block size PostgreSQL allows (up to 32 kB), small enough to
// stay in a core's cache while it is checked, summed and compressed.
const readBufferSize = 256 << 10

// uploadBufferSize batches the tar writer's 512-byte headers before they
// reach the compressor.
const uploadBufferSize = 64 << 10

// Reporting limits of checksum failures: PostgreSQL logs the first five
// failing blocks of a file (sendFile in basebackup.c).
const (
	loggedBlocksPerFile = 5
	keptBlocksPerFile   = 20  // block numbers the manifest keeps per file
	keptFiles           = 100 // files the manifest keeps
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pageCheck is what verifying data page checksums needs to know.
type pageCheck struct {
	blockSize int
	segBlocks uint32 // blocks in a 1 GB relation segment (RELSEG_SIZE)
	start     uint64 // the backup's start LSN: newer pages are not checked
	report    *checksumReport
	log       zerolog.Logger
}

// chunkResult is one chunk as stored.
type chunkResult struct {
	filename string
	key      string
	input    int64          // tar bytes
	stored   archive.Stored // set once stored
	// entries and members are the scan's entries and the plan's
	// indexes into them: the chunk's member names (fileNames) and
	// backup_manifest entries (manifestFiles) are read off them when the
	// control object is written, not copied into lists of their own.
	entries []entry
	members []int
}

// fileNames yields the names of the chunk's members, for the manifest's
// "files": its directories and links, and the regular files it holds
// (not those gone since the scan).
func (r *chunkResult) fileNames(yield func(string) bool) {
	for _, i := range r.members {
		e := &r.entries[i]
		if (e.typ != tar.TypeReg || e.sent) && !yield(e.name()) {
			return
		}
	}
}

// manifestFiles yields the backup_manifest entries of the regular files
// the chunk holds.
func (r *chunkResult) manifestFiles(yield func(pgManifestFile) bool) {
	for _, i := range r.members {
		e := &r.entries[i]
		if e.typ == tar.TypeReg && e.sent && !yield(pgManifestFile{path: e.manifestPath(), size: e.size, mtime: e.mtime, crc32c: e.crc}) {
			return
		}
	}
}

// worker writes chunks, one at a time, with its own read buffer.
type worker struct {
	l      *localBackup
	buf    []byte
	pieces []*piece // a delta backup's read buffers, buf the first (readFile)
}

// writeChunk reads plan's members into a chunk tar, streamed through the
// codec to the store. A file that is gone when its turn comes is left
// out; one that shrank is padded with zeros to its scanned size (WAL
// replay restores both, as basebackup.c relies on). On an error nothing
// is stored under the chunk's key.
func (w *worker) writeChunk(ctx context.Context, plan chunkPlan) (*chunkResult, error) {
	l := w.l
	filename := archive.ChunkFilename(l.name, plan.n)
	res := &chunkResult{filename: filename, key: l.o.Archive.Layout.ChunkKey(filename), entries: l.entries, members: plan.entries}
	if l.delta {
		res.key = l.o.Archive.Layout.DeltaChunkKey(filename) // a bundle
	}
	codec, err := w.chunkCodec(plan)
	if err != nil {
		return nil, fmt.Errorf("basebackup: chunk %s: %w", filename, err)
	}
	l.began(res.key)
	md := storage.Metadata{archive.MetaFormat: archive.FormatBBv2}
	up, err := codec.NewUpload(ctx, l.o.Archive.Store, res.key, md,
		archive.UploadOptions{Size: -1, MaxSize: plan.maxSize(), Concurrency: l.compressionThreads})
	if err != nil {
		return nil, fmt.Errorf("basebackup: chunk %s: %w", filename, err)
	}
	if err := w.fill(ctx, up, plan, res); err != nil {
		if perr := up.Abort(err); perr != nil {
			// The store failed first: writes only saw the end.
			return nil, fmt.Errorf("basebackup: store chunk %s: %w", filename, perr)
		}
		return nil, err
	}
	res.stored, err = up.Close()
	if err != nil {
		return nil, fmt.Errorf("basebackup: store chunk %s: %w", filename, err)
	}
	if res.stored.PlainSize != res.input {
		return nil, fmt.Errorf("basebackup: chunk %s: stored %d plain bytes, wrote %d", filename, res.stored.PlainSize, res.input)
	}
	l.chunkStored(res.stored.StoredSize)
	return res, nil
}

// fill writes the chunk tar into up.
func (w *worker) fill(ctx context.Context, up io.Writer, plan chunkPlan, res *chunkResult) error {
	bw := bufio.NewWriterSize(up, uploadBufferSize)
	cw := &storage.CountingWriter{W: bw}
	tw := tar.NewWriter(cw)
	for _, i := range plan.entries {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		e := &w.l.entries[i]
		if e.typ != tar.TypeReg {
			if err := tw.WriteHeader(e.header()); err != nil {
				return fmt.Errorf("basebackup: chunk %s: %s: %w", res.filename, e.name(), err)
			}
			continue
		}
		if err := w.file(tw, e, res); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("basebackup: chunk %s: %w", res.filename, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("basebackup: chunk %s: %w", res.filename, err)
	}
	res.input = cw.N
	return nil
}

// file writes one regular file into the chunk: its scanned size, its
// pages checked when e.check, its CRC-32C kept for backup_manifest (e.crc).
// It sets e.sent once the file is in the chunk, and leaves a file that no
// longer exists out.
func (w *worker) file(tw *tar.Writer, e *entry, res *chunkResult) error {
	f, err := openListed(e)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			w.l.log.Debug().Str("file", e.path()).Msg("file removed during the backup: left out")
			return nil
		}
		return fmt.Errorf("basebackup: %w", err)
	}
	defer f.Close()
	if err := tw.WriteHeader(e.header()); err != nil {
		return fmt.Errorf("basebackup: chunk %s: %s: %w", res.filename, e.name(), err)
	}
	var fc *fileCheck
	if e.check && w.l.check != nil {
		fc = &fileCheck{pageCheck: w.l.check, name: e.name(), path: e.path(), first: e.segno * w.l.check.segBlocks}
	}
	var crc uint32
	var off int64
	for off < e.size {
		n := int(min(int64(len(w.buf)), e.size-off))
		m, err := io.ReadFull(f, w.buf[:n])
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return fmt.Errorf("basebackup: read %s: %w", e.path(), err)
		}
		p := w.buf[:m]
		if fc != nil {
			if err := fc.pages(f, p, off); err != nil {
				return err
			}
		}
		crc = crc32.Update(crc, castagnoli, p)
		if _, err := tw.Write(p); err != nil {
			return fmt.Errorf("basebackup: chunk %s: %s: %w", res.filename, e.name(), err)
		}
		off += int64(m)
		w.l.read.Add(int64(m))
		if m < n {
			break
		}
	}
	if off < e.size {
		// Truncated since the scan: pad with zeros to the size the
		// header promised, as basebackup.c does.
		w.l.log.Debug().Str("file", e.path()).Int64("size", e.size).Int64("read", off).Msg("file shrank during the backup: padded")
		clear(w.buf)
		for off < e.size {
			p := w.buf[:min(int64(len(w.buf)), e.size-off)]
			crc = crc32.Update(crc, castagnoli, p)
			if _, err := tw.Write(p); err != nil {
				return fmt.Errorf("basebackup: chunk %s: %s: %w", res.filename, e.name(), err)
			}
			off += int64(len(p))
		}
	}
	if fc != nil {
		fc.done()
	}
	e.crc, e.sent = crc, true
	return nil
}

// openListed opens e, a regular file when the tree was listed, to read
// it (openRegular).
func openListed(e *entry) (*os.File, error) { return openRegular(e.root, e.rel) }

// openRegular opens rel, a regular file of r, to read it. It resolves
// rel beneath r's descriptor, following no symbolic link in the file's
// place or in place of a directory above it (openBeneath), and does not
// wait: someone who can write the data directory may have put a link
// (to a file or directory that hoard's user may read and the database's
// may not) or a named pipe (whose open(2) waits for a writer, forever)
// there since the scan. Either fails the backup, naming the file:
// PostgreSQL never replaces its files or directories with them, so a
// backup that left the file out could miss what the database needs. A
// file removed since returns an error wrapping fs.ErrNotExist.
func openRegular(r *root, rel string) (*os.File, error) {
	name := r.path(rel)
	if r.fd == nil {
		return nil, fmt.Errorf("open %s: %s not opened", name, r.dir) // a programmer's error
	}
	fd, err := openBeneath(int(r.fd.Fd()), rel, syscall.O_RDONLY|syscall.O_NONBLOCK)
	if err != nil {
		return nil, beneathError("open", name, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file (mode %#o): it was replaced since the backup began; find out what replaced it", name, st.Mode)
	}
	// Reads of a regular file ignore O_NONBLOCK; clear it all the same,
	// so that os.NewFile makes an ordinary blocking file.
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// fileCheck verifies the pages of one file as they are read.
type fileCheck struct {
	*pageCheck
	name, path string
	first      uint32 // block number of the file's first block
	failures   int64
	blocks     []uint32
}

// pages checks the whole pages of p, read at offset off, as basebackup.c
// does: a page that is new or changed since the backup began is not
// checked (WAL replay rewrites it), and a failing page is read once more,
// in case a write tore it, before it counts. A re-read copy replaces the
// page in p. A page cut short by a concurrent truncation is not checked.
func (c *fileCheck) pages(f *os.File, p []byte, off int64) error {
	bs := c.blockSize
	for i := 0; i+bs <= len(p); i += bs {
		page := p[i : i+bs]
		blk := c.first + uint32((off+int64(i))/int64(bs))
		if c.ok(page, blk) {
			continue
		}
		// Read the page again, into place.
		n, err := f.ReadAt(page, off+int64(i))
		if err != nil && err != io.EOF {
			return fmt.Errorf("basebackup: read %s: %w", c.path, err)
		}
		if n < bs {
			// Truncated meanwhile: the rest is padding.
			clear(page[n:])
			return nil
		}
		if c.ok(page, blk) {
			continue
		}
		c.failures++
		if len(c.blocks) < keptBlocksPerFile {
			c.blocks = append(c.blocks, blk)
		}
		if c.failures <= loggedBlocksPerFile {
			c.log.Warn().Str("file", c.path).Uint32("block", blk).
				Str("calculated", fmt.Sprintf("%X", pageChecksum(page, blk))).Str("expected", fmt.Sprintf("%X", storedChecksum(page))).
				Msg("data page checksum verification failed")
		}
	}
	return nil
}

// ok reports whether a page passes: new, newer than the backup's start,
// or with a matching checksum.
func (c *fileCheck) ok(page []byte, blk uint32) bool {
	if pageIsNew(page) || pageLSN(page) >= c.start {
		return true
	}
	return pageChecksum(page, blk) == storedChecksum(page)
}

// done reports the file's failures.
func (c *fileCheck) done() {
	if c.failures == 0 {
		return
	}
	c.log.Warn().Str("file", c.path).Int64("blocks", c.failures).Msg("data page checksum failures in file")
	c.report.add(c.name, c.failures, c.blocks)
}

// checksumReport gathers the checksum failures of a backup's workers.
type checksumReport struct {
	mu     sync.Mutex
	blocks int64
	files  []archive.ChecksumFailure
	// filesUnknown: the server named the files in another language.
	filesUnknown bool
}

func (r *checksumReport) add(name string, count int64, blocks []uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blocks += count
	if len(r.files) < keptFiles {
		r.files = append(r.files, archive.ChecksumFailure{File: name, Count: count, Blocks: blocks})
	}
}

// manifest returns the report for the control tar's manifest.
func (r *checksumReport) manifest() *archive.ChecksumFailures {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &archive.ChecksumFailures{Blocks: r.blocks, Files: append([]archive.ChecksumFailure{}, r.files...),
		FilesUnknown: r.filesUnknown}
}
