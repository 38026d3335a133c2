package archive

import (
	"errors"
	"fmt"

	"github.com/hoardbackup/hoard/wal"
)

// ErrWALTooLarge is wrapped by the error for a WAL file whose object
// decodes to more bytes than a file of its kind holds: a segment or
// .partial more than the segment size its first page declares, a history
// or backup history file more than maxHistorySize. Someone who can write
// to the bucket can store such an object without any key (a compression
// bomb, or, in a site with keys, another object of the site, which
// authenticates, under a WAL name); it is refused at that size, before
// more is decoded or written.
var ErrWALTooLarge = errors.New("WAL file decodes to more than its kind holds")

// maxHistorySize bounds a timeline history or backup history file. A
// history file holds a line of about 70 bytes per ancestor timeline
// (writeTimeLineHistory in PostgreSQL's timeline.c), a backup history
// file a dozen short lines: 16 MiB is over 200,000 timelines.
const maxHistorySize = 16 << 20

// copyBufferSize is the buffer copyChecked decodes into.
const copyBufferSize = 1 << 20

// walSizeCap is a writer that refuses to take a WAL file past the most
// bytes a file of its kind holds. For a segment or .partial that is
// wal.MaxSegmentSize until the first page header has been written to
// head (which must be written before the cap), then the segment size the
// header declares. Without the keys, the header is the attacker's too:
// wal.MaxSegmentSize is the bound that holds for any object.
type walSizeCap struct {
	segment bool // a segment or .partial whose first page is not in yet
	head    *headBuffer
	max     int64
	what    string // what max is, for the error
	n       int64
}

func newWALSizeCap(name string, head *headBuffer) *walSizeCap {
	if segment, partial, _ := walKind(name); segment || partial {
		return &walSizeCap{segment: true, head: head, max: wal.MaxSegmentSize, what: "the largest segment size"}
	}
	return &walSizeCap{head: head, max: maxHistorySize, what: "the most a history file holds"}
}

func (c *walSizeCap) Write(p []byte) (int, error) {
	if c.segment && len(c.head.b) == wal.PageHeaderSize {
		c.segment = false
		// A header that does not decode keeps the largest size:
		// wal.CheckSegment refuses it at the end, after the checks of
		// the object's integrity, whose verdict comes first.
		if h, err := wal.DecodePageHeader(c.head.b); err == nil {
			c.max, c.what = int64(h.SegmentSize), "the segment size its first page declares"
		}
	}
	if c.n+int64(len(p)) > c.max {
		return 0, fmt.Errorf("%w: more than %d bytes, %s", ErrWALTooLarge, c.max, c.what)
	}
	c.n += int64(len(p))
	return len(p), nil
}
