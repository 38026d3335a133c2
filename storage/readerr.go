package storage

import (
	"fmt"
	"io"
)

// readError names the object key and the storage it was read from
// (where: "s3 bucket \"b\" at http://host:9000", "sftp server host:22")
// in an error that ended a download. A connection cut or stalled in the
// middle of an object fails the read with the transport's own words
// ("unexpected EOF", "connection lost", "i/o timeout"), which tell the
// operator neither what was being read nor from where. io.EOF, the
// object's clean end, passes unchanged; the cause stays in the chain.
func readError(err error, key, where string) error {
	if err == nil || err == io.EOF {
		return err
	}
	return fmt.Errorf("read %s from %s: %w", key, where, err)
}

// namedReader is a download whose read errors name the object and the
// storage (readError).
type namedReader struct {
	io.ReadCloser
	key, where string
}

func (r *namedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	return n, readError(err, r.key, r.where)
}
