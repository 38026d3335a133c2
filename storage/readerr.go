package storage

import (
	"fmt"
	"io"
)

// ReadError is an error that ended the read of an object opened on a
// network store (S3, Google, Azure, Swift, SFTP): a connection cut or
// stalled in the middle of the object. It names the object and the
// storage, as the transport's own words ("unexpected EOF", "connection
// lost", "i/o timeout") tell the operator neither. The bytes read before
// it are a part of the object: a caller that wants the object opens it
// again and reads it from its start (or retries the range), when Err is
// transient (IsTransient). Test with errors.As.
type ReadError struct {
	Key   string
	Where string // the bucket and endpoint, "s3 bucket \"b\" at http://host:9000", "sftp server host:22"
	Err   error
}

func (e *ReadError) Error() string { return fmt.Sprintf("read %s from %s: %v", e.Key, e.Where, e.Err) }

func (e *ReadError) Unwrap() error { return e.Err }

// readError returns err as a *ReadError; io.EOF, the object's clean end,
// and nil pass unchanged.
func readError(err error, key, where string) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &ReadError{Key: key, Where: where, Err: err}
}

// namedReader is a download whose read errors are ReadErrors.
type namedReader struct {
	io.ReadCloser
	key, where string
}

func (r *namedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	return n, readError(err, r.key, r.where)
}
