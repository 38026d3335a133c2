package testio

import (
	"archive/tar"
	"io"
	"testing"
)

// EachTarMember calls fn with each member of the tar stream r, in order,
// and the reader of the member's data (valid until fn returns). A stream
// that is not a tar, or is cut short, fails the test, naming what (the
// object or file it came from).
func EachTarMember(t testing.TB, what string, r io.Reader, fn func(h *tar.Header, data io.Reader)) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s: read tar: %v", what, err)
		}
		fn(h, tr)
	}
}
