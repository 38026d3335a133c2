package replication

import (
	"encoding/binary"
	"fmt"
	"io"
)

// framer is the reader under pgx's Frontend: every byte pgx receives comes
// through it. It passes reads through untouched, except during a
// BASE_BACKUP: there it follows the protocol's message boundaries and
// hands pgx at most the rest of the current message, so that pgx never
// holds bytes of the next one, and the backup's Read can take the tar
// bytes of CopyData messages itself, straight from the socket into the
// caller's buffer (readDirect). That saves pgx's copy of every archive
// byte and most of its small reads: the payload of a 32 kB message comes
// in one read, with the next message's header.
//
// Every other message (the result sets, errors, notices, the new form's
// progress and archive messages, CopyDone) still goes through pgx, which
// decodes it as before. A framer is not safe for concurrent use; pgx and
// the backup read from it in turn, on one goroutine at a time.
type framer struct {
	r io.Reader // pgx's background reader, over the socket

	framing bool // following message boundaries (during a BASE_BACKUP)
	// buf[rp:wp] holds bytes read from r and not yet handed out: the
	// headers of messages, and what came with them.
	buf    []byte
	rp, wp int
	// left is what the current message has not handed out yet (header
	// included while pgx reads it); 0 between messages.
	left int
	// direct counts the payload bytes readDirect delivered.
	direct int64
}

// framerBufSize holds a few messages' headers and the small messages
// between archives; archive payloads bypass it.
const framerBufSize = 16 << 10

// copyDataType is the type byte of a CopyData message, and of the new
// form's archive data in its first byte.
const copyDataType = 'd'

func newFramer(r io.Reader) *framer {
	return &framer{r: r}
}

// Read is what pgx reads.
func (f *framer) Read(p []byte) (int, error) {
	if !f.framing {
		if f.rp < f.wp {
			n := copy(p, f.buf[f.rp:f.wp])
			f.rp += n
			return n, nil
		}
		return f.r.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.left == 0 {
		// A new message: learn its length from its header.
		if err := f.fill(5); err != nil {
			return 0, err
		}
		l := int(binary.BigEndian.Uint32(f.buf[f.rp+1:]))
		if l < 4 {
			return 0, fmt.Errorf("%w: message length %d", ErrProtocol, l)
		}
		f.left = 1 + l
	}
	p = p[:min(len(p), f.left)]
	var n int
	var err error
	if f.rp < f.wp {
		n = copy(p, f.buf[f.rp:f.wp])
		f.rp += n
	} else {
		n, err = f.r.Read(p)
	}
	f.left -= n
	return n, err
}

// fill reads until buf holds at least n unread bytes, reading no more
// than a message header needs beyond them when it must read at all (the
// rest of a message goes to its reader's own buffer).
func (f *framer) fill(n int) error {
	if f.buf == nil {
		f.buf = make([]byte, framerBufSize)
	}
	if f.wp-f.rp >= n {
		return nil
	}
	if f.rp > 0 {
		f.wp = copy(f.buf, f.buf[f.rp:f.wp])
		f.rp = 0
	}
	for f.wp < n {
		m, err := f.r.Read(f.buf[f.wp:n])
		f.wp += m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// start follows message boundaries from here on. Call it only between
// messages, with nothing of a message read: when pgx's buffer is empty
// and the server has nothing to send until the next command.
func (f *framer) start() {
	f.framing = true
	f.left = 0
}

// stop passes reads through again, when that is safe (between messages);
// it reports whether it stopped.
func (f *framer) stop() bool {
	if f.left != 0 {
		return false
	}
	f.framing = false
	return true
}

// nextData looks at the next message, between messages only: when it is a
// CopyData of archive bytes (with typed, the new form's, whose first byte
// is 'd'), it consumes the header (and the type byte) and reports the
// payload's length; any other message is left for pgx, whole.
func (f *framer) nextData(typed bool) (int, bool, error) {
	if !f.framing || f.left != 0 {
		return 0, false, nil
	}
	if err := f.fill(5); err != nil {
		return 0, false, err
	}
	if f.buf[f.rp] != copyDataType {
		return 0, false, nil
	}
	body := int(binary.BigEndian.Uint32(f.buf[f.rp+1:])) - 4
	if body < 0 {
		return 0, false, fmt.Errorf("%w: message length %d", ErrProtocol, body+4)
	}
	if !typed {
		f.rp += 5
		f.left = body
		return body, true, nil
	}
	if body == 0 {
		// Empty: pgx's path reports the violation.
		return 0, false, nil
	}
	if err := f.fill(6); err != nil {
		return 0, false, err
	}
	if f.buf[f.rp+5] != copyDataType {
		return 0, false, nil
	}
	f.rp += 6
	f.left = body - 1
	return body - 1, true, nil
}

// readDirect reads payload of the message nextData consumed the header
// of into p, at most what is left of it. What is buffered comes first;
// after that it reads from the socket straight into p, up to the rest of
// the payload and the next message's header, which it keeps (p beyond
// the returned count is scratch space, as io.Reader allows).
func (f *framer) readDirect(p []byte) (int, error) {
	if len(p) == 0 || f.left == 0 {
		return 0, nil
	}
	if f.rp < f.wp {
		n := copy(p[:min(len(p), f.left)], f.buf[f.rp:f.wp])
		f.rp += n
		f.left -= n
		f.direct += int64(n)
		return n, nil
	}
	if f.buf == nil {
		f.buf = make([]byte, framerBufSize)
	}
	const header = 6 // the next message's header and the new form's type byte
	n, err := f.r.Read(p[:min(len(p), f.left+header)])
	if n > f.left {
		f.rp, f.wp = 0, copy(f.buf, p[f.left:n])
		n = f.left
	}
	f.left -= n
	f.direct += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
