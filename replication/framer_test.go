package replication

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"testing"
	"testing/iotest"

	"github.com/jackc/pgx/v5/pgproto3"
)

// chunkReader returns its bytes in pieces of random sizes (1 to max), so
// that headers and payloads are split everywhere a socket may split them.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rng.Intn(c.max))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// encode returns the wire bytes of msgs.
func encode(t *testing.T, msgs []pgproto3.BackendMessage) []byte {
	t.Helper()
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// framerScript is a BASE_BACKUP response in the new form (typed) or the
// old one, with archive data of several sizes (empty, 1 byte, 32 kB and
// 40 kB payloads) among the messages that pgx decodes: progress and
// archive messages, notices, CopyDone, a result set, ReadyForQuery.
func framerScript(typed bool) ([]pgproto3.BackendMessage, []byte) {
	rng := rand.New(rand.NewSource(3))
	var data []byte
	data1 := func(n int) pgproto3.BackendMessage {
		b := make([]byte, n)
		rng.Read(b)
		data = append(data, b...)
		if typed {
			b = append([]byte{'d'}, b...)
		}
		return &pgproto3.CopyData{Data: b}
	}
	var msgs []pgproto3.BackendMessage
	msgs = append(msgs, &pgproto3.CopyOutResponse{})
	if typed {
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte("nbase.tar\x00\x00")})
	}
	msgs = append(msgs, data1(1), data1(32<<10), data1(0),
		&pgproto3.NoticeResponse{Severity: "NOTICE", Message: "between"},
		data1(40<<10), data1(7))
	if typed {
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte("p\x00\x00\x00\x00\x00\x00\x10\x00")}, data1(5000))
	}
	msgs = append(msgs, data1(3))
	if typed {
		// The manifest's 'd' messages are read as data too.
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte("m")}, data1(2))
	}
	msgs = append(msgs,
		&pgproto3.CopyDone{},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("recptr")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("0/3000000")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return msgs, data
}

// TestFramer reads a BASE_BACKUP response as BaseBackup does, the archive
// payloads through nextData and readDirect into buffers of random sizes,
// every other message through pgx's Frontend on top of the framer, from a
// reader that splits the bytes at random (and one byte at a time): the
// payloads are exactly the archive bytes, and pgx decodes every other
// message, in order.
func TestFramer(t *testing.T) {
	for _, typed := range []bool{true, false} {
		msgs, want := framerScript(typed)
		wire := encode(t, msgs)
		for _, maxChunk := range []int{1, 5, 7, 100, 40000, 1 << 20} {
			t.Run(fmt.Sprintf("typed=%v/chunks=%d", typed, maxChunk), func(t *testing.T) {
				rng := rand.New(rand.NewSource(int64(maxChunk)))
				var src io.Reader = &chunkReader{data: wire, rng: rng, max: maxChunk}
				if maxChunk == 1 {
					src = iotest.OneByteReader(bytes.NewReader(wire))
				}
				fr := newFramer(src)
				fe := pgproto3.NewFrontend(fr, io.Discard)
				fr.start()
				var got []byte
				var other []string
				scratch := make([]byte, 50000)
				for {
					n, ok, err := fr.nextData(typed)
					if err != nil {
						t.Fatal(err)
					}
					if ok {
						for left := n; left > 0; {
							p := scratch[:1+rng.Intn(len(scratch))]
							m, err := fr.readDirect(p)
							if err != nil {
								t.Fatal(err)
							}
							got = append(got, p[:m]...)
							left -= m
							if left != fr.left {
								t.Fatalf("%d payload bytes left, framer says %d", left, fr.left)
							}
						}
						continue
					}
					msg, err := fe.Receive()
					if err != nil {
						t.Fatalf("after %q: %v", other, err)
					}
					if fe.ReadBufferLen() != 0 {
						t.Fatalf("pgx holds %d bytes past a %T", fe.ReadBufferLen(), msg)
					}
					other = append(other, fmt.Sprintf("%T", msg))
					if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
						break
					}
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("payloads: %d bytes, want %d", len(got), len(want))
				}
				if fr.direct != int64(len(want)) {
					t.Errorf("direct = %d, want %d", fr.direct, len(want))
				}
				var wantOther []string
				for _, m := range msgs {
					if d, ok := m.(*pgproto3.CopyData); ok && (!typed || d.Data[0] == 'd') {
						continue
					}
					wantOther = append(wantOther, fmt.Sprintf("%T", m))
				}
				if fmt.Sprint(other) != fmt.Sprint(wantOther) {
					t.Errorf("pgx received %v\nwant %v", other, wantOther)
				}
				if !fr.stop() {
					t.Error("framer does not stop between messages")
				}
			})
		}
	}
}

// TestFramer_ErrShort: a connection that ends inside a payload or a header
// is an unexpected EOF, not the end of the archive.
func TestFramer_ErrShort(t *testing.T) {
	msgs, _ := framerScript(true)
	wire := encode(t, msgs)
	for _, cut := range []int{len(wire) - 1, 40, 22, 3} {
		fr := newFramer(bytes.NewReader(wire[:cut]))
		fe := pgproto3.NewFrontend(fr, io.Discard)
		fr.start()
		var err error
		for err == nil {
			var ok bool
			if _, ok, err = fr.nextData(true); err == nil && ok {
				for fr.left > 0 && err == nil {
					_, err = fr.readDirect(make([]byte, 1000))
				}
				continue
			}
			if err == nil {
				var msg pgproto3.BackendMessage
				if msg, err = fe.Receive(); err == nil {
					if _, done := msg.(*pgproto3.ReadyForQuery); done {
						t.Fatalf("cut at %d: read to the end", cut)
					}
				}
			}
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}

// TestFramer_ErrLength: a message length under 4 is a protocol violation.
func TestFramer_ErrLength(t *testing.T) {
	fr := newFramer(bytes.NewReader([]byte{'d', 0, 0, 0, 3, 'd'}))
	fr.start()
	if _, _, err := fr.nextData(true); !errors.Is(err, ErrProtocol) {
		t.Fatalf("nextData: %v, want ErrProtocol", err)
	}
	fr = newFramer(bytes.NewReader([]byte{'Z', 0, 0, 0, 1, 'I'}))
	fr.start()
	if _, err := fr.Read(make([]byte, 10)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Read: %v, want ErrProtocol", err)
	}
}
