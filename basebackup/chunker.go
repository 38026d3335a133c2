package basebackup

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// minFillDivisor is PGHoard's rule for cutting chunks: a chunk is closed
// before a member that would take it past the chunk size only once it is at
// least a fifth full, so a large file after a few small ones does not leave
// a tiny chunk behind.
const minFillDivisor = 5

// tarTrailerSize is the end-of-archive marker that closes every chunk.
const tarTrailerSize = 2 * 512

// chunker re-packs the members of the server's tar streams into
// pghoard-bb-v2 chunk tars and uploads each one as it is written: the tar
// writer writes straight into the chunk's archive.Upload, whose compressor
// (lz4 and zstd on conc goroutines) and envelope run as the bytes arrive,
// with no pipe or copy between the stream and the codec. A finished
// chunk's upload is closed (the compressor flushed, the store waited for)
// in the background while the next chunk fills. At most parallel chunks
// are in flight (the one being written included), so memory stays bounded
// whatever the size of the database.
//
// Only the goroutine that calls add, finish and abort touches the chunker's
// state; the background goroutines touch their own chunk's stored field
// and the atomic counters.
type chunker struct {
	a      *archive.Archive
	backup string
	limit  int64
	conc   int // compression goroutines per chunk

	g    *errgroup.Group
	gctx context.Context
	sem  chan struct{}

	chunks []*chunk
	cur    *chunk
	// names is the chunks' lists of member names, for the manifest: a
	// spool in tempDir (made with the first chunk), each name as its
	// length (a uvarint) and its bytes, chunk after chunk, so that they
	// are not held in memory (they grow with the number of files).
	names   *spool
	nameBuf []byte
	tempDir string
	// dirs holds every directory header seen so far, by member name, so
	// that a chunk can repeat the directories its members are in.
	dirs map[string]*tar.Header
	buf  []byte

	uploaded    atomic.Int64 // chunks stored
	storedBytes atomic.Int64 // their stored size
}

// chunk is one chunk tar, being written or uploaded.
type chunk struct {
	filename string // relative to basebackup_chunk/, as the manifest records it
	key      string
	nfiles   int             // member names in the names spool
	written  map[string]bool // directory entries already in this chunk
	maxSize  int64           // tar bytes the chunk holds at most, PAX records aside

	up *archive.Upload
	bw *bufio.Writer // batches the tar writer's headers
	cw *storage.CountingWriter
	tw *tar.Writer

	input  int64          // tar bytes, set when the chunk is closed
	stored archive.Stored // set by the goroutine that closes the upload
}

// newChunker returns a chunker that uploads chunks of the backup called
// backup under g, whose context is gctx. limit is the chunk size and
// parallel the number of chunks in flight; the chunks' lists of names are
// spooled in tempDir (Options.TempDir). The caller closes it.
func newChunker(gctx context.Context, g *errgroup.Group, a *archive.Archive, backup string, limit int64, parallel, conc int, tempDir string) *chunker {
	return &chunker{
		a:       a,
		backup:  backup,
		limit:   limit,
		conc:    conc,
		g:       g,
		gctx:    gctx,
		sem:     make(chan struct{}, parallel),
		dirs:    map[string]*tar.Header{},
		buf:     make([]byte, 128<<10),
		tempDir: tempDir,
	}
}

// close frees the spool of names. Safe to call on a nil chunker.
func (c *chunker) close() {
	if c != nil {
		c.names.Close()
	}
}

// record appends name to the current chunk's list of names.
func (c *chunker) record(name string) error {
	c.nameBuf = binary.AppendUvarint(c.nameBuf[:0], uint64(len(name)))
	c.nameBuf = append(c.nameBuf, name...)
	if _, err := c.names.Write(c.nameBuf); err != nil {
		return err
	}
	c.cur.nfiles++
	return nil
}

// fileLister returns the chunks' lists of names, read back from their
// spool for writeManifest, which asks for each chunk once, in order. The
// spool's check (length and CRC-32C of what was written) runs at its end,
// after the last chunk's names: a spool the disk changed fails the backup
// before its control object is stored. Call it only after every upload
// has returned.
func (c *chunker) fileLister() fileLister {
	var br *bufio.Reader
	var buf []byte
	next := 0
	return func(i int, fn func(string) error) error {
		if i != next || i >= len(c.chunks) {
			return fmt.Errorf("basebackup: the names of chunk %d asked for after those of chunk %d", i+1, next)
		}
		next++
		if br == nil {
			r, err := c.names.reader()
			if err != nil {
				return err
			}
			br = bufio.NewReader(r)
		}
		for range c.chunks[i].nfiles {
			n, err := binary.ReadUvarint(br)
			if err == nil && n > uint64(c.names.size()) {
				err = fmt.Errorf("a name of %d bytes in a spool of %d", n, c.names.size())
			}
			if err == nil {
				buf = slices.Grow(buf[:0], int(n))[:n]
				_, err = io.ReadFull(br, buf)
			}
			if err != nil {
				return c.namesErr(br, err)
			}
			if err := fn(string(buf)); err != nil {
				return err
			}
		}
		if next == len(c.chunks) {
			// The end of the spool, where it is checked.
			if _, err := br.ReadByte(); err != io.EOF {
				if err == nil {
					err = fmt.Errorf("more bytes than the names written")
				}
				return c.namesErr(br, err)
			}
		}
		return nil
	}
}

// namesErr is err reading the spool of names back from br. A spool that
// does not decode is read to its end first, where its check tells whether
// the disk changed it (a stagedChangedError, which says all there is to
// say).
func (c *chunker) namesErr(br io.Reader, err error) error {
	var changed *stagedChangedError
	if !errors.As(err, &changed) {
		if _, derr := io.Copy(io.Discard, br); errors.As(derr, &changed) {
			err = derr
		}
	}
	if errors.As(err, &changed) {
		return err
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("basebackup: read back the spooled %s in %s: %w; the control object was not stored", c.names.what, c.names.dir, err)
}

// tarSize is the size a member takes in a tar: its header and its data
// rounded up to whole blocks. Long names add PAX records, which the
// estimate leaves out: it only decides where chunks are cut, and a chunk
// may overshoot the limit by those.
func tarSize(size int64) int64 {
	return 512 + (size+511)/512*512
}

// add writes one member into the current chunk, opening a new chunk when
// the member would overflow it. name is the member's name in the chunk
// (pgdata/... or tablespaces/<name>/...), h the server's header and r the
// member's data. Members other than directories, regular files and
// symbolic links are skipped, as PGHoard does.
func (c *chunker) add(name string, h *tar.Header, r memberData) error {
	out := &tar.Header{
		Name:    name,
		Mode:    h.Mode,
		Uid:     h.Uid,
		Gid:     h.Gid,
		ModTime: h.ModTime,
	}
	switch h.Typeflag {
	case tar.TypeDir:
		out.Typeflag = tar.TypeDir
		out.Name = name + "/"
		c.dirs[name] = out
	case tar.TypeReg: // archive/tar reports old-style (TypeRegA) regular files as TypeReg
		out.Typeflag = tar.TypeReg
		out.Size = h.Size
	case tar.TypeSymlink:
		out.Typeflag = tar.TypeSymlink
		out.Linkname = h.Linkname
	default:
		return nil
	}
	if c.cur != nil {
		n := c.cur.cw.N
		need := tarSize(out.Size) + int64(len(c.missingParents(name)))*512 + tarTrailerSize
		// Past maxSize the chunk would break the bound its upload was
		// started with: it is closed even when less than a fifth full.
		if n+need > c.limit && n >= c.limit/minFillDivisor || n+need > c.cur.maxSize {
			if err := c.finish(); err != nil {
				return err
			}
		}
	}
	if c.cur == nil {
		// A new chunk's first member, with its parents, can take it past
		// limit: it then holds that member alone.
		need := tarSize(out.Size) + int64(strings.Count(name, "/"))*512 + tarTrailerSize
		if err := c.open(max(c.limit, need)); err != nil {
			return err
		}
	}
	ch := c.cur
	if err := c.parents(name); err != nil {
		return err
	}
	if out.Typeflag == tar.TypeDir {
		if ch.written[name] {
			return nil
		}
		ch.written[name] = true
	}
	if err := ch.tw.WriteHeader(out); err != nil {
		return c.writeErr(name, err)
	}
	if out.Size > 0 {
		n, err := r.copyData(ch.tw, out.Size)
		var se streamError
		if errors.As(err, &se) {
			// The server's stream failed, not the chunk: the
			// caller aborts the chunk.
			return fmt.Errorf("read %s: %w", name, se.err)
		}
		if err != nil {
			return c.writeErr(name, err)
		}
		if n != out.Size {
			return fmt.Errorf("read %s: %w", name, io.ErrUnexpectedEOF)
		}
	}
	return c.record(name)
}

// memberData hands out the data of the member a tar reader is at.
type memberData interface {
	// copyData writes the next n bytes of the member's data into w. An
	// error of the source (the server's stream) comes as a streamError,
	// one of w (the chunk) as it is.
	copyData(w io.Writer, n int64) (written int64, err error)
}

// streamError is an error of the server's stream, not of the chunk.
type streamError struct{ err error }

func (e streamError) Error() string { return e.err.Error() }
func (e streamError) Unwrap() error { return e.err }

// readerData reads a member's data from its tar reader through buf.
type readerData struct {
	r   io.Reader
	buf []byte
}

func (d readerData) copyData(w io.Writer, n int64) (int64, error) {
	src := &sourceReader{r: io.LimitReader(d.r, n)}
	written, err := io.CopyBuffer(w, src, d.buf)
	if src.err != nil {
		return written, streamError{src.err}
	}
	return written, err
}

// sourceReader records its reader's error, so that a failed read of the
// server's stream is not reported as a failed write into the chunk.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// parents writes the directory entries of name's parents that the current
// chunk lacks, outermost first, so that the chunk extracts on its own. The
// roots pgdata/ and tablespaces/<name>/ get no entry, as in PGHoard's
// chunks.
func (c *chunker) parents(name string) error {
	missing := c.missingParents(name)
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		h, ok := c.dirs[d]
		if !ok {
			// The server sends a directory before its contents; this is
			// only a safety net for a stream that does not.
			h = &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o700, ModTime: time.Now()}
		}
		hc := *h
		if err := c.cur.tw.WriteHeader(&hc); err != nil {
			return c.writeErr(d, err)
		}
		c.cur.written[d] = true
		if err := c.record(d); err != nil {
			return err
		}
	}
	return nil
}

// missingParents returns the directories above name that the current
// chunk lacks, innermost first.
func (c *chunker) missingParents(name string) []string {
	var missing []string
	for d := path.Dir(name); !isRoot(d); d = path.Dir(d) {
		if c.cur.written[d] {
			break
		}
		missing = append(missing, d)
	}
	return missing
}

// isRoot reports whether d is a chunk's root: ".", pgdata, tablespaces or
// tablespaces/<name>.
func isRoot(d string) bool {
	if d == "." || d == "pgdata" || d == "tablespaces" {
		return true
	}
	rest, ok := strings.CutPrefix(d, "tablespaces/")
	return ok && !strings.Contains(rest, "/")
}

// open starts the next chunk and its upload, for a chunk tar of at most
// maxSize bytes (the store sizes its upload buffers for it). It waits
// while parallel chunks are in flight.
func (c *chunker) open(maxSize int64) error {
	if c.names == nil {
		var err error
		if c.names, err = newSpool(c.tempDir, "list of the chunks' members"); err != nil {
			return err
		}
	}
	select {
	case c.sem <- struct{}{}:
	case <-c.gctx.Done():
		return context.Cause(c.gctx)
	}
	n := len(c.chunks) + 1
	filename := archive.ChunkFilename(c.backup, n)
	key := c.a.Layout.ChunkKey(filename)
	md := storage.Metadata{archive.MetaFormat: archive.FormatBBv2}
	// PAX records of long names are left out of the sizes add counts:
	// room for one per member (each takes 512 bytes or more).
	bound := maxSize + (maxSize/512+1)*paxAllowance
	up, err := c.a.Codec.NewUpload(c.gctx, c.a.Store, key, md, archive.UploadOptions{Size: -1, MaxSize: bound, Concurrency: c.conc})
	if err != nil {
		<-c.sem
		return fmt.Errorf("chunk %s: %w", filename, err)
	}
	bw := bufio.NewWriterSize(up, uploadBufferSize)
	cw := &storage.CountingWriter{W: bw}
	ch := &chunk{
		filename: filename,
		key:      key,
		written:  map[string]bool{},
		maxSize:  maxSize,
		up:       up,
		bw:       bw,
		cw:       cw,
		tw:       tar.NewWriter(cw),
	}
	c.chunks = append(c.chunks, ch)
	c.cur = ch
	return nil
}

// finish ends the current chunk's tar and closes its upload in the
// background: the compressor's last blocks and the store's Put complete
// while the next chunk fills.
func (c *chunker) finish() error {
	ch := c.cur
	if ch == nil {
		return nil
	}
	c.cur = nil
	if err := ch.tw.Close(); err != nil {
		return c.closeErr(ch, err)
	}
	if err := ch.bw.Flush(); err != nil {
		return c.closeErr(ch, err)
	}
	ch.input = ch.cw.N
	c.g.Go(func() error {
		defer func() { <-c.sem }()
		st, err := ch.up.Close()
		if err != nil {
			return fmt.Errorf("upload chunk %s: %w", ch.key, err)
		}
		ch.stored = st
		c.uploaded.Add(1)
		c.storedBytes.Add(st.StoredSize)
		return nil
	})
	return nil
}

// abort fails the current chunk's upload with err, so that Put stores
// nothing, and waits for it.
func (c *chunker) abort(err error) {
	if ch := c.cur; ch != nil {
		c.cur = nil
		_ = c.drop(ch, err)
	}
}

// drop aborts chunk ch's upload after err and releases its place. It
// returns the store's own error when the store failed first (a write then
// only says that the upload ended), else err.
func (c *chunker) drop(ch *chunk, err error) error {
	if perr := ch.up.Abort(err); perr != nil {
		err = perr
	}
	<-c.sem
	return err
}

// writeErr ends the current chunk after an error writing member name into
// it. A write fails when the upload has failed: the error is then the
// store's.
func (c *chunker) writeErr(name string, err error) error {
	ch := c.cur
	c.cur = nil
	return fmt.Errorf("write %s into chunk %s: %w", name, ch.filename, c.drop(ch, err))
}

// closeErr ends chunk ch, the current one no longer, after err: its upload
// stores nothing.
func (c *chunker) closeErr(ch *chunk, err error) error {
	return fmt.Errorf("close chunk %s: %w", ch.filename, c.drop(ch, err))
}

// manifestChunks returns the chunks for the control tar's manifest, without
// their lists of names (fileLister), and checks that each one was stored
// with the bytes written. Call it only after every upload has returned.
func (c *chunker) manifestChunks() ([]archive.ManifestChunk, error) {
	out := make([]archive.ManifestChunk, 0, len(c.chunks))
	for _, ch := range c.chunks {
		if ch.stored.PlainSize != ch.input {
			return nil, fmt.Errorf("chunk %s: stored %d plain bytes, wrote %d", ch.key, ch.stored.PlainSize, ch.input)
		}
		out = append(out, archive.ManifestChunk{
			ChunkFilename: ch.filename,
			InputSize:     ch.input,
			ResultSize:    ch.stored.StoredSize,
			HMAC:          hex.EncodeToString(ch.stored.HMAC),
		})
	}
	return out, nil
}

// keys returns the keys of every chunk whose upload began.
func (c *chunker) keys() []string {
	out := make([]string, len(c.chunks))
	for i, ch := range c.chunks {
		out[i] = ch.key
	}
	return out
}
