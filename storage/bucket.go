package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

var _ Store = (*Bucket)(nil)

// Bucket is a Store on a gocloud.dev/blob bucket (S3, GCS, Azure, memory or
// any gocloud URL). It translates PGHoard's metadata spelling for the
// backend, aborts failed uploads and classifies permanent errors.
type Bucket struct {
	b    *blob.Bucket
	kind string // "s3", "google", "azure", "mem" or the URL scheme
	name string // bucket or container name, for messages
	// endpoint is the URL of a server given by host and port (MinIO,
	// Azurite) or STORAGE_EMULATOR_HOST, for messages; "" for the
	// provider's own.
	endpoint string
	prefix   string // object_storage.prefix as applied to keys, with a trailing '/'

	partSize    int // WriterOptions.BufferSize; 0 for the driver's default
	concurrency int // WriterOptions.MaxConcurrency; 0 for the driver's default
	// planFor chooses the part size of a Put of at most maxSize bytes (< 0:
	// unknown) and the memory it holds; nil: partSize, memory not known.
	planFor func(maxSize int64) writePlan
	// tune applies what WriterOptions cannot say of a plan (S3's one-PUT
	// threshold) in BeforeWrite; nil where nothing is needed.
	tune func(p writePlan) func(asFunc func(any) bool) error

	// rawMetadata overrides gocloud's escaping of metadata so that the wire
	// spelling is PGHoard's; nil where gocloud stores keys as given.
	rawMetadata func(md map[string]string) func(asFunc func(any) bool) error
	// afterAbort cleans up after a Put that was abandoned (S3: parts of a
	// multipart upload that the SDK could not abort with a cancelled ctx).
	afterAbort func(ctx context.Context, fullKey string)
	secrets    []string

	bucketOK atomic.Bool // the bucket answered a listing once
}

// newBucket wraps b. prefix is applied with blob.PrefixedBucket.
func newBucket(b *blob.Bucket, kind, name, prefix string) *Bucket {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
		b = blob.PrefixedBucket(b, prefix)
	}
	return &Bucket{b: b, kind: kind, name: name, prefix: prefix}
}

// endpoint is the URL of c's host (and port, where set): https with
// is_secure, else http.
func endpoint(c Config) string {
	scheme := "http"
	if c.IsSecure {
		scheme = "https"
	}
	host := c.Host
	if c.Port != 0 {
		host = net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	}
	return scheme + "://" + host
}

// partSize is c's segment_size where it is set, else the backend's
// default part (or chunk, or block) size def.
func partSize(c Config, def int) int {
	if c.SegmentSize > 0 {
		return int(c.SegmentSize)
	}
	return def
}

// rawMetadata returns a BeforeWrite hook that hands set the entries of md
// that can travel unescaped (safeKey(k), and a value of safe ASCII), with
// the driver's upload options of type O: the backends' way to store
// metadata in PGHoard's wire spelling instead of gocloud's escaped one.
func rawMetadata[O any](md map[string]string, safeKey func(string) bool, set func(opts O, k, v string)) func(func(any) bool) error {
	return func(as func(any) bool) error {
		var opts O
		if !as(&opts) {
			return nil
		}
		for k, v := range md {
			if safeKey(k) && safeASCII(v) {
				set(opts, k, v)
			}
		}
		return nil
	}
}

// where names the bucket, and the endpoint when one was given, for
// messages.
func (b *Bucket) where() string {
	w := fmt.Sprintf("%s bucket %q", b.kind, b.name)
	if b.endpoint != "" {
		w += " at " + b.endpoint
	}
	return w
}

// As exposes the backend's client types, as gocloud's Bucket.As does (for
// example **s3.Client or **container.Client), for tests and diagnostics.
func (b *Bucket) As(i any) bool { return b.b.As(i) }

// wireMetadata turns PGHoard metadata into the backend's spelling: empty
// values are dropped (as rohmu drops them), Azure gets '_' for '-' and S3
// lowercase keys.
func (b *Bucket) wireMetadata(md Metadata) map[string]string {
	out := make(map[string]string, len(md))
	for k, v := range md {
		if v != "" {
			out[b.metadataKey(k, "-", "_")] = v
		}
	}
	return out
}

// readMetadata turns backend metadata back into PGHoard's spelling.
func (b *Bucket) readMetadata(md map[string]string) Metadata {
	out := make(Metadata, len(md))
	for k, v := range md {
		out[b.metadataKey(k, "_", "-")] = v
	}
	return out
}

// metadataKey spells metadata key k for the backend, or back: on Azure
// each from becomes to, on S3 the key is lowercase.
func (b *Bucket) metadataKey(k, from, to string) string {
	switch b.kind {
	case "azure":
		return strings.ReplaceAll(k, from, to)
	case "s3":
		return strings.ToLower(k)
	}
	return k
}

// Put streams r to the backend through blob.Bucket.Upload. An error from r
// or a cancelled ctx cancels the upload's context before the driver sees the
// error, which is gocloud's way to abort a write ("To abort a write, cancel
// ctx"): no object becomes visible and an existing one stays as it was.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, md Metadata) error {
	return b.put(ctx, "put", key, r, md, false)
}

// Create is Put with the backend's create-if-absent precondition (gocloud's
// IfNotExist: S3 If-None-Match: *, on the single PUT or on
// CompleteMultipartUpload; GCS ifGenerationMatch=0; Azure If-None-Match: *).
// The backend refuses a write to an existing key with 412 Precondition
// Failed, which Create returns as ErrExist.
func (b *Bucket) Create(ctx context.Context, key string, r io.Reader, md Metadata) error {
	err := b.put(ctx, "create", key, r, md, true)
	if err == nil {
		return nil
	}
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		return fmt.Errorf("create %s: %w", key, ErrExist)
	}
	// A store may refuse a conditional write before reading its body and
	// close the connection (MinIO does with objects of a few MiB), so the
	// refusal arrives as a broken connection. If the object exists now,
	// another writer won, or this one's bytes landed before the connection
	// broke: either way the caller must compare, as after ErrExist.
	if ctx.Err() == nil {
		if ok, xerr := b.b.Exists(ctx, key); xerr == nil && ok {
			return fmt.Errorf("create %s: %w (the upload failed: %v)", key, ErrExist, err)
		}
	}
	return err
}

func (b *Bucket) put(ctx context.Context, op, key string, r io.Reader, md Metadata, ifNotExist bool) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wmd := b.wireMetadata(md)
	plan := b.plan(MaxSize(ctx))
	opts := &blob.WriterOptions{
		ContentType:    "application/octet-stream",
		Metadata:       wmd,
		BufferSize:     plan.part,
		MaxConcurrency: b.concurrency,
		IfNotExist:     ifNotExist,
	}
	var before []func(func(any) bool) error
	if b.rawMetadata != nil {
		before = append(before, b.rawMetadata(wmd))
	}
	if b.tune != nil {
		before = append(before, b.tune(plan))
	}
	if len(before) > 0 {
		opts.BeforeWrite = func(as func(any) bool) error {
			for _, f := range before {
				if err := f(as); err != nil {
					return err
				}
			}
			return nil
		}
	}
	src := &abortReader{ctx: wctx, r: r, cancel: cancel}
	err := b.b.Upload(wctx, key, src, opts)
	if err == nil && src.err != nil {
		// No driver commits after its source failed; should one ever do
		// it, the object is incomplete and must not stay.
		_ = b.b.Delete(context.WithoutCancel(ctx), key)
		err = src.err
	}
	if err != nil {
		b.abandoned(ctx, key)
		if src.err != nil && !errors.Is(err, src.err) {
			return fmt.Errorf("%s %s: %w", op, key, src.err)
		}
		return b.putError(ctx, op, key, err)
	}
	return nil
}

// abortReader cancels the upload's context as soon as the source fails or
// the caller's context ends, before handing the error to the driver.
type abortReader struct {
	ctx    context.Context
	r      io.Reader
	cancel context.CancelFunc
	err    error // the first error other than io.EOF
}

func (a *abortReader) Read(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	if err := a.ctx.Err(); err != nil {
		a.err = err
		return 0, err
	}
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		a.err = err
		a.cancel()
	}
	return n, err
}

// putError reports a failed Put. When ctx was cancelled the SDKs often
// return their own text for it, so ctx's error is put back in the chain.
func (b *Bucket) putError(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s %s: %w (%v)", op, key, cerr, b.redact(err))
	}
	return b.errorf(ctx, op, key, err)
}

// abandoned runs the backend's clean-up after a failed Put, even when ctx is
// already cancelled.
func (b *Bucket) abandoned(ctx context.Context, key string) {
	if b.afterAbort != nil {
		b.afterAbort(context.WithoutCancel(ctx), b.prefix+key)
	}
}

// Open returns the object's bytes and metadata; an error that ends the
// read names the key and the bucket (readError). The metadata is read with a
// separate request before the body; an object replaced between the two
// (its size or time differs) is opened again, so that the metadata and
// the time returned are those of the bytes read.
func (b *Bucket) Open(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	for attempt := 1; ; attempt++ {
		attrs, err := b.b.Attributes(ctx, key)
		if err != nil {
			return nil, Object{}, b.errorf(ctx, "open", key, err)
		}
		r, err := b.b.NewReader(ctx, key, nil)
		if err != nil {
			return nil, Object{}, b.errorf(ctx, "open", key, err)
		}
		// HTTP's Last-Modified, from which some drivers take the reader's
		// time, has whole seconds only.
		if r.Size() == attrs.Size && r.ModTime().Truncate(time.Second).Equal(attrs.ModTime.Truncate(time.Second)) {
			return &namedReader{ReadCloser: r, key: key, where: b.where()}, Object{Key: key, Size: r.Size(), Modified: attrs.ModTime, Changed: attrs.ModTime, Metadata: b.readMetadata(attrs.Metadata)}, nil
		}
		_ = r.Close()
		if attempt == 3 {
			return nil, Object{}, fmt.Errorf("open %s: the object changes between reading its metadata and its bytes", key)
		}
	}
}

// OpenRange streams length bytes from offset (length < 0: to the end).
func (b *Bucket) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	r, err := b.b.NewRangeReader(ctx, key, offset, length, nil)
	if err != nil {
		return nil, b.errorf(ctx, "open", key, err)
	}
	return &namedReader{ReadCloser: r, key: key, where: b.where()}, nil
}

// Stat returns the object's size, time and metadata.
func (b *Bucket) Stat(ctx context.Context, key string) (Object, error) {
	attrs, err := b.b.Attributes(ctx, key)
	if err != nil {
		return Object{}, b.errorf(ctx, "stat", key, err)
	}
	return Object{Key: key, Size: attrs.Size, Modified: attrs.ModTime, Changed: attrs.ModTime, Metadata: b.readMetadata(attrs.Metadata)}, nil
}

// List calls fn for each object under prefix in lexical order; every backend
// lists in that order without a delimiter. The order is that of the stored
// names, which gocloud reports unescaped: a name stored as "x/__0x01__"
// (hoard writes none) is reported as "x/\x01", out of that order
// (WithRetry's List passes such keys on).
func (b *Bucket) List(ctx context.Context, prefix string, fn func(Object) error) error {
	it := b.b.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return b.errorf(ctx, "list", prefix, err)
		}
		if o.IsDir {
			continue
		}
		if err := fn(Object{Key: o.Key, Size: o.Size, Modified: o.ModTime, Changed: o.ModTime}); err != nil {
			return err
		}
	}
}

// Delete removes the object; a missing key is not an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	err := b.b.Delete(ctx, key)
	if err == nil || gcerrors.Code(err) == gcerrors.NotFound && !bucketMissing(err) {
		return nil
	}
	return b.errorf(ctx, "delete", key, err)
}

// Close releases the bucket.
func (b *Bucket) Close() error { return b.b.Close() }

// redact hides the bucket's secrets in err (redactedError), and a SAS
// signature whatever the bucket was opened with: a gocloud azblob:// URL
// takes its token from AZURE_STORAGE_SAS_TOKEN, which hoard never sees.
func (b *Bucket) redact(err error) error {
	return &redactedError{err: err, secrets: b.secrets}
}

// errorf wraps a backend error: a missing object becomes ErrNotFound (after
// making sure, once, that the bucket itself exists, so that a wrong bucket
// name never reads as "no such WAL segment"), and permanent failures become
// ErrPermanent.
func (b *Bucket) errorf(ctx context.Context, op, key string, err error) error {
	err = b.redact(err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if gcerrors.Code(err) == gcerrors.NotFound && !bucketMissing(err) {
		if b.bucketOK.Load() || b.kind == "mem" {
			return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
		}
		ok, aerr := b.b.IsAccessible(ctx)
		switch {
		case aerr != nil:
			return errorf(b.kind, b.name, op, key, b.redact(aerr))
		case !ok:
			return fmt.Errorf("%s %s: %w", op, key, &permanentError{
				msg: fmt.Sprintf("%s bucket %q does not exist: create it or fix bucket_name", b.kind, b.name),
				err: err,
			})
		}
		b.bucketOK.Store(true)
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	}
	return errorf(b.kind, b.name, op, key, err)
}
