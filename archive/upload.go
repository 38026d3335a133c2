package archive

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// Upload is an object being stored, written as plaintext: Write
// compresses and encrypts in the caller's goroutine and hands the result,
// in pieces of UploadWriteSize bytes, through one io.Pipe to Store.Put,
// which runs in a goroutine the Upload owns. Close stores the object;
// Abort, or any error, stores nothing. An Upload is not safe for
// concurrent use.
type Upload struct {
	key  string
	meta storage.Metadata
	size int64 // promised plaintext size, or -1

	pw   *io.PipeWriter
	bw   *bufio.Writer           // gathers the stored bytes for pw
	out  *storage.CountingWriter // stored bytes
	sink io.WriteCloser
	enc  *crypto.Writer // the envelope, when the object is encrypted
	cw   io.WriteCloser
	n    int64 // plaintext bytes written

	done   chan error // Store.Put's result, received once by wait
	putErr error
	waited bool
	eof    *eofReader
	err    error
	st     storage.Store
	ctx    context.Context
}

// UploadOptions tune how an Upload compresses.
type UploadOptions struct {
	// Size is the plaintext size when known before the upload, recorded as
	// original-file-size; Close fails if a different number of bytes was
	// written. -1 (or any negative value) means unknown.
	Size int64
	// MaxSize, when Size is unknown, is an upper bound of the plaintext
	// size (a basebackup chunk's planned tar), 0 for none. With Size or
	// MaxSize the store learns the object's largest stored size
	// (MaxStoredSize, through storage.WithMaxSize) and sizes its upload
	// buffers for it: small S3 parts for a chunk instead of the parts an
	// object of any size needs.
	MaxSize int64
	// Concurrency is the number of goroutines compressing at once
	// (compress.Options.Concurrency); 0 or 1 compresses in the caller's
	// goroutine.
	Concurrency int
	// create stores through Store.Create: only if the key holds nothing.
	create bool
	// compressed: what is written is already compressed with the codec's
	// algorithm (a compress.Appender's stream): the Upload only encrypts
	// it, and Size is still the plaintext's size, for the metadata.
	compressed bool
}

// UploadWriteSize is how many stored bytes an Upload gathers before it
// hands them to Store.Put: compressors and the envelope write a block at a
// time (lz4's 64 KiB blocks compress to a few kB each), and every piece
// through the pipe costs the two goroutines a hand-over and a local store a
// write(2). Each Upload holds a buffer of this size.
const UploadWriteSize = 256 << 10

// MaxStoredSize bounds the stored size of an object of plain bytes of
// plaintext, whatever its compression and encryption: every compressor
// hoard writes stores an incompressible block as it is, with a few bytes of
// framing per block (lz4 4 per 64 KiB, snappy 8 per 64 KiB, zstd 3 per
// 128 KiB, xz less), and the pghoa1 envelope adds a header and an HMAC. A
// sixteenth and 1 MiB more is far above all of them; the bound only sizes
// upload buffers, where a generous one costs nothing.
func MaxStoredSize(plain int64) int64 {
	return plain + plain/16 + 1<<20
}

// NewUpload starts storing the object key with PGHoard's metadata merged
// over md (see Put). Store.Put begins at once, reading what Write
// produces.
func (c *Codec) NewUpload(ctx context.Context, st storage.Store, key string, md storage.Metadata, o UploadOptions) (*Upload, error) {
	store := st.Put
	if o.create {
		store = st.Create
	}
	return c.newUpload(ctx, st, store, key, md, o)
}

// NewEncoder is NewUpload into w instead of a store: Write compresses and
// encrypts into w, and Close returns what Close of an Upload would have
// stored (its Metadata is the object's, to be stored with w's bytes).
// Nothing is stored anywhere; key only names the stream in errors. On an
// error w holds an incomplete stream.
func (c *Codec) NewEncoder(ctx context.Context, w io.Writer, key string, md storage.Metadata, o UploadOptions) (*Upload, error) {
	return c.newUpload(ctx, nil, func(_ context.Context, _ string, r io.Reader, _ storage.Metadata) error {
		_, err := io.Copy(w, r)
		return err
	}, key, md, o)
}

// newUpload starts an Upload through store; st, when not nil, is the
// store that deletes an object store left short.
func (c *Codec) newUpload(ctx context.Context, st storage.Store, store func(context.Context, string, io.Reader, storage.Metadata) error, key string, md storage.Metadata, o UploadOptions) (*Upload, error) {
	enc, err := c.encrypts()
	if err != nil {
		return nil, fmt.Errorf("put %s: %w", key, err)
	}
	size := o.Size
	if size < 0 {
		size = -1
	}
	pr, pw := io.Pipe()
	bw := bufio.NewWriterSize(pw, UploadWriteSize)
	u := &Upload{
		key:  key,
		meta: c.metadata(md, size, enc),
		size: size,
		pw:   pw,
		bw:   bw,
		out:  &storage.CountingWriter{W: bw},
		done: make(chan error, 1),
		eof:  &eofReader{r: pr},
		st:   st,
		ctx:  ctx,
	}
	if o.compressed {
		// Write counts compressed bytes: Size is not theirs to check.
		u.size = -1
	}
	u.sink = nopWriteCloser{u.out}
	if enc {
		u.enc = crypto.NewWriter(u.out, c.PublicKey)
		u.sink = u.enc
	}
	// Fail before the upload starts on an algorithm we cannot write.
	if !compress.Known(c.Compression) {
		return nil, fmt.Errorf("put %s: compress with %q: %w", key, c.Compression, compress.ErrUnknownAlgorithm)
	}
	putCtx := ctx
	switch {
	case size >= 0:
		putCtx = storage.WithMaxSize(ctx, MaxStoredSize(size))
	case o.MaxSize > 0:
		putCtx = storage.WithMaxSize(ctx, MaxStoredSize(o.MaxSize))
	}
	go func() {
		err := store(putCtx, key, u.eof, u.meta)
		// Unblock a writer if Put returned without reading everything.
		pr.CloseWithError(errUploadEnded)
		u.done <- err
	}()
	if o.compressed {
		u.cw = nopWriteCloser{u.sink}
		return u, nil
	}
	// Put runs already: an xz writer writes its header at once.
	u.cw, err = compress.NewWriterOptions(u.sink, c.Compression, compress.Options{Level: c.Level, Concurrency: o.Concurrency, NoChecksum: enc})
	if err != nil {
		err = fmt.Errorf("put %s: %w", key, err)
		u.pw.CloseWithError(err)
		// Store.Put fails with err: the compressor's error is the story.
		_ = u.wait()
		return nil, err
	}
	return u, nil
}

// Write compresses and encrypts p into the object. A Write fails when the
// upload has failed.
func (u *Upload) Write(p []byte) (int, error) {
	if u.err != nil {
		return 0, u.err
	}
	if u.size >= 0 && u.n+int64(len(p)) > u.size {
		u.fail(fmt.Errorf("encode: source has more than %d bytes", u.size))
		return 0, u.err
	}
	n, err := u.cw.Write(p)
	u.n += int64(n)
	if errors.Is(err, errUploadEnded) {
		// The store returned before it read everything (the pipe is
		// closed only then): its error, a full disk or a refused
		// upload, is what the caller must see, not the closed pipe.
		if perr := u.wait(); perr != nil {
			u.fail(fmt.Errorf("store: %w", perr))
			return n, u.err
		}
	}
	if err != nil {
		u.fail(fmt.Errorf("encode: %w", err))
		return n, u.err
	}
	return n, nil
}

// Written returns the plaintext bytes written so far.
func (u *Upload) Written() int64 { return u.n }

// fail ends the upload with err: Store.Put sees err from the pipe and
// stores nothing.
func (u *Upload) fail(err error) {
	if u.err == nil {
		u.err = err
		u.pw.CloseWithError(err)
	}
}

// Close flushes the compressor and the envelope, ends the stream and waits
// for Store.Put. The object is stored when Close returns no error; on an
// error nothing is stored under key.
func (u *Upload) Close() (Stored, error) {
	if u.err == nil && u.size >= 0 && u.n != u.size {
		u.fail(fmt.Errorf("encode: source has %d bytes, expected %d", u.n, u.size))
	}
	if u.err == nil {
		if err := u.cw.Close(); err != nil {
			u.fail(fmt.Errorf("encode: %w", err))
		}
	}
	if u.err == nil {
		if err := u.sink.Close(); err != nil {
			u.fail(fmt.Errorf("encode: %w", err))
		}
	}
	if u.err == nil {
		if err := u.bw.Flush(); err != nil {
			u.fail(fmt.Errorf("encode: %w", err))
		}
	}
	encErr := u.err
	if encErr == nil {
		u.pw.Close()
	} else {
		// Release the compressor's goroutines and buffers.
		u.cw.Close()
	}
	putErr := u.wait()
	switch {
	case encErr != nil && !errors.Is(encErr, errUploadEnded):
		if putErr == nil {
			// A store that returns success without reading to EOF
			// broke its contract; do not leave a short object.
			u.deleteShort()
		}
		return Stored{}, fmt.Errorf("put %s: %w", u.key, encErr)
	case putErr != nil:
		return Stored{}, fmt.Errorf("put %s: %w", u.key, putErr)
	case encErr != nil || !u.eof.eof:
		u.deleteShort()
		return Stored{}, fmt.Errorf("put %s: store returned before reading the whole object", u.key)
	}
	u.err = errors.New("write after close")
	st := Stored{PlainSize: u.n, StoredSize: u.out.N, Metadata: u.meta}
	if u.enc != nil {
		st.HMAC = u.enc.Tag()
	}
	return st, nil
}

// deleteShort deletes the object of a store that returned success
// without reading the whole stream.
func (u *Upload) deleteShort() {
	if u.st != nil {
		_ = u.st.Delete(context.WithoutCancel(u.ctx), u.key)
	}
}

// Abort ends the upload with err (nil: a generic error) and waits for
// Store.Put: nothing is stored. It returns Store.Put's own error when the
// store failed first (a write that failed then only said the upload had
// ended). Abort after Close does nothing.
func (u *Upload) Abort(err error) error {
	if u.waited {
		return nil
	}
	if err == nil {
		err = errors.New("upload aborted")
	}
	u.fail(err)
	u.cw.Close()
	if perr := u.wait(); perr != nil && !errors.Is(perr, err) && !errors.Is(perr, u.err) {
		return perr
	}
	return nil
}

// wait returns Store.Put's result once it has returned.
func (u *Upload) wait() error {
	if !u.waited {
		u.putErr = <-u.done
		u.waited = true
	}
	return u.putErr
}

// eofReader records whether its reader returned io.EOF: a store that
// reports success must have read the whole stream.
type eofReader struct {
	r   io.Reader
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}
