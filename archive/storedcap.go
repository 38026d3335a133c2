package archive

import (
	"errors"
	"fmt"
	"io"
)

// ErrStoredTooLarge is wrapped by the DecodeError of an object whose stored
// bytes go on far past what they decode to (storedLimit): filler that
// every format lets a stream carry and its decoder reads through without
// output (zstd's and lz4's skippable frames, snappy's padding chunks, xz's
// stream padding), or bytes appended to an encrypted object, whose HMAC
// fails only at its end. Each reader bounds what an object decodes to
// (a WAL segment its segment size, a control object 4 GiB, ...); this
// bounds what it downloads for that.
var ErrStoredTooLarge = errors.New("object stores far more than it decodes to")

// storedSlack is what a decoder may read ahead of its output: a block
// (lz4's largest, 4 MiB; zstd's 128 KiB), the envelope's header (at most
// 64 KiB) and read buffer (32 KiB), and one decodeReadMax of output.
const storedSlack = 16 << 20

// decodeReadMax bounds the output one Read asks of the decompressor, so
// that the decoded count storedLimit is checked against lags the stored
// bytes by one such read at most, whatever the caller's buffer.
const decodeReadMax = 1 << 20

// storedLimit returns how many stored bytes an object may take to decode
// to decoded bytes. Data a format cannot compress costs it a few bytes
// per block: 3 per 128 KiB in zstd, 4 per block of at least 64 KiB in
// lz4, 8 per 64 KiB snappy chunk, 3 per 64 KiB LZMA2 chunk; the
// envelope adds its header and 32-byte trailer. Twice the decoded bytes
// leaves room for streams cut into small blocks (the daemon's .partial
// copies flush a block per append of WAL), and storedSlack for what a
// decoder reads before it outputs anything.
func storedLimit(decoded int64) int64 { return 2*decoded + storedSlack }

// storedCap passes on an object's stored bytes while they stay within
// storedLimit of what its decoder has output, and fails with
// ErrStoredTooLarge past that, before reading more.
type storedCap struct {
	r   io.Reader
	dec *decoder // its count of decoded bytes
	n   int64
}

func (s *storedCap) Read(p []byte) (int, error) {
	limit := storedLimit(s.dec.n)
	if s.n >= limit {
		return 0, fmt.Errorf("%w: %d stored bytes read for %d decoded (at most twice the decoded bytes and %d MiB)",
			ErrStoredTooLarge, s.n, s.dec.n, storedSlack>>20)
	}
	if rest := limit - s.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}
