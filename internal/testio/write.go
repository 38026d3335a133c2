package testio

import (
	"io"
	"os"
	"syscall"
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

// ReplaceFile removes the file p and has plant put something else under
// its name (a FIFO, a directory, a socket, or nothing), failing the test
// on an error of either. Should a read of p wait for a FIFO's writer,
// opening p for writing when the test is done ends the wait.
func ReplaceFile(tb testing.TB, p string, plant func(p string) error) {
	tb.Helper()
	if err := os.Remove(p); err != nil {
		tb.Fatal(err)
	}
	if err := plant(p); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
}
