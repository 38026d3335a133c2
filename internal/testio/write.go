package testio

import (
	"io"
	"testing"
)

// WriteClose writes p to w and closes it, failing the test on an error of
// either: what a compressor, an encrypter or a tar writer wrote is whole
// only after Close.
func WriteClose(tb testing.TB, w io.WriteCloser, p []byte) {
	tb.Helper()
	if _, err := w.Write(p); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}
