package archive

import (
	"fmt"
	"io"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// TestReadCut: wal-fetch downloads a WAL file again after a cut
// connection, never after a mismatch with the store's checksum (Swift's
// ETag): that object is damaged and reads the same again. Before, the
// mismatch was tried 3 times.
func TestReadCut(t *testing.T) {
	read := func(err error) error {
		return fmt.Errorf("fetch x: %w", &storage.ReadError{Key: "site/xlog/x", Where: "swift container", Err: err})
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"Cut", read(io.ErrUnexpectedEOF), true},
		{"ErrChecksum", read(fmt.Errorf("%w (Swift's ETag): Object Corrupted", storage.ErrChecksum)), false},
		{"ErrDecode", &DecodeError{Key: "site/xlog/x", Err: read(io.ErrUnexpectedEOF)}, false},
	} {
		if got := readCut(c.err); got != c.want {
			t.Errorf("%s: readCut(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
