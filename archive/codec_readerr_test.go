package archive

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// failAfter reads the first n bytes of data, then fails with err: a
// store that stops answering n bytes into an object.
type failAfter struct {
	data []byte
	n    int
	err  error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	k := copy(p[:min(len(p), f.n)], f.data)
	f.data, f.n = f.data[k:], f.n-k
	return k, nil
}

// TestCodec_ErrStoreFirstRead: a store that fails on the very first
// bytes of an object (its first Read, or inside the pghoa1 header or a
// compressed stream's magic) is the store's error, kept whole (a retry
// decision, "could not be checked"), never a DecodeError nor anything
// IsDamage takes for damage, for every compression and with encryption:
// neither compress.NewReader nor crypto.NewReader reads when created,
// so no header read can fail inside Decode itself and be wrapped there.
func TestCodec_ErrStoreFirstRead(t *testing.T) {
	plain := walData(100 << 10)
	for name, c := range codecs(t) {
		data, md := encodeBytes(t, c, plain, true)
		for _, n := range []int{0, 1, 4, 9, 40} {
			for _, storeErr := range []error{
				errors.New("https response error StatusCode: 503, SlowDown"),
				&storage.ReadError{Key: "obj", Where: `s3 bucket "b"`, Err: io.ErrUnexpectedEOF},
			} {
				t.Run(fmt.Sprintf("%s/%d/%T", name, n, storeErr), func(t *testing.T) {
					rc, err := c.Decode("obj", &failAfter{data: data, n: n, err: storeErr}, md)
					if err == nil {
						_, err = io.ReadAll(rc)
						rc.Close()
					}
					var de *DecodeError
					if !errors.Is(err, storeErr) || errors.As(err, &de) || IsDamage(err) {
						t.Fatalf("store failing %d bytes in: err = %v (DecodeError %v, damage %v), want the store's error, not damage",
							n, err, errors.As(err, &de), IsDamage(err))
					}
				})
			}
		}
	}
}
