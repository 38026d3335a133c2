package storetest

import (
	"io"

	"github.com/hoardbackup/hoard/storage"
)

// CutHalf returns rc, the download of key whose object is o, cut in the
// middle: it reads half of o's bytes, then fails with a
// storage.ReadError wrapping err, as a download the network cuts does.
func CutHalf(rc io.ReadCloser, o storage.Object, key string, err error) io.ReadCloser {
	return &cutReader{rc: rc, left: o.Size / 2, err: &storage.ReadError{Key: key, Where: `s3 bucket "b"`, Err: err}}
}

// cutReader reads left bytes of rc, then fails with err.
type cutReader struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (r *cutReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, r.err
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	return n, err
}

func (r *cutReader) Close() error { return r.rc.Close() }
