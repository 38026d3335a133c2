package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// tarTrailerSize is the end-of-archive marker of a tar stream: two
// 512-byte blocks of zeroes. Servers before 15 leave it out of each
// tablespace's tar (the protocol documentation says so; pg_basebackup
// appends it); from 15 the server sends it.
const tarTrailerSize = 2 * 512

// NextArchive moves to the next archive: a tablespace's tar stream
// (ArchiveTablespace), then, when requested, the manifest
// (ArchiveManifest). Unread bytes of the current archive are skipped. It
// returns io.EOF when there are no more archives; call Finish then.
func (b *BaseBackup) NextArchive(ctx context.Context) (Archive, error) {
	if b.err != nil {
		return Archive{}, b.err
	}
	if b.finished {
		return Archive{}, io.EOF
	}
	for !b.ended {
		b.pending = nil
		b.trailer = 0
		if _, err := b.fill(ctx); err != nil && err != io.EOF {
			return Archive{}, err
		}
	}
	b.pending, b.trailer = nil, 0
	if b.newForm {
		return b.nextNewForm(ctx)
	}
	return b.nextOldForm(ctx)
}

// nextNewForm reads up to the next 'n' (new archive) or 'm' (manifest)
// message, or the end of the COPY.
func (b *BaseBackup) nextNewForm(ctx context.Context) (Archive, error) {
	for {
		msg, err := b.receive(ctx)
		if err != nil {
			return Archive{}, err
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				return Archive{}, b.fail(fmt.Errorf("%w: empty CopyData", ErrProtocol))
			}
			switch msg.Data[0] {
			case 'n':
				a, err := b.newArchive(msg.Data[1:])
				if err != nil {
					return Archive{}, b.fail(err)
				}
				b.cur, b.ended = a, false
				b.began(a)
				return a, nil
			case 'm':
				b.cur = Archive{Kind: ArchiveManifest, Name: "backup_manifest"}
				b.ended = false
				b.began(b.cur)
				return b.cur, nil
			case 'p':
				if err := b.progressMessage(msg.Data[1:]); err != nil {
					return Archive{}, err
				}
			default:
				return Archive{}, b.fail(fmt.Errorf("%w: CopyData type %q outside an archive", ErrProtocol, msg.Data[0]))
			}
		case *pgproto3.CopyDone:
			b.inCopy, b.finished = false, true
			return Archive{}, io.EOF
		default:
			return Archive{}, b.fail(fmt.Errorf("%w: got %T between archives", ErrProtocol, msg))
		}
	}
}

// newArchive decodes an 'n' message: archive name and tablespace path,
// both NUL-terminated; the path is empty for the main data directory.
func (b *BaseBackup) newArchive(data []byte) (Archive, error) {
	name, rest, ok := bytes.Cut(data, []byte{0})
	if !ok {
		return Archive{}, fmt.Errorf("%w: unterminated archive name", ErrProtocol)
	}
	path, _, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return Archive{}, fmt.Errorf("%w: unterminated tablespace path", ErrProtocol)
	}
	for _, ts := range b.Tablespaces {
		if ts.Location == string(path) {
			return Archive{Kind: ArchiveTablespace, Name: string(name), Tablespace: ts}, nil
		}
	}
	return Archive{}, fmt.Errorf("%w: archive %s for unlisted tablespace %q", ErrProtocol, name, path)
}

// progressMessage decodes a 'p' message: the bytes done so far, int64.
func (b *BaseBackup) progressMessage(data []byte) error {
	if len(data) != 8 {
		return b.fail(fmt.Errorf("%w: progress message of %d bytes", ErrProtocol, len(data)))
	}
	b.server.Store(int64(binary.BigEndian.Uint64(data)))
	return nil
}

// nextOldForm reads the next CopyOutResponse: the next tablespace's tar,
// or after the last one the manifest; the end position's RowDescription
// means there are no more archives.
func (b *BaseBackup) nextOldForm(ctx context.Context) (Archive, error) {
	for {
		msg, err := b.receive(ctx)
		if err != nil {
			return Archive{}, err
		}
		switch msg.(type) {
		case *pgproto3.CopyOutResponse:
			i := b.copies
			b.copies++
			switch {
			case i < len(b.Tablespaces):
				ts := b.Tablespaces[i]
				name := "base.tar"
				if ts.OID != 0 {
					name = strconv.FormatUint(uint64(ts.OID), 10) + ".tar"
				}
				b.cur = Archive{Kind: ArchiveTablespace, Name: name, Tablespace: ts}
			case i == len(b.Tablespaces) && b.manifest:
				b.cur = Archive{Kind: ArchiveManifest, Name: "backup_manifest"}
			default:
				return Archive{}, b.fail(fmt.Errorf("%w: COPY number %d with %d tablespaces", ErrProtocol, i+1, len(b.Tablespaces)))
			}
			b.inCopy, b.ended = true, false
			b.began(b.cur)
			return b.cur, nil
		case *pgproto3.CommandComplete:
			// Ends the tablespace list when the server sends one.
		case *pgproto3.RowDescription:
			b.peeked = msg
			b.finished = true
			return Archive{}, io.EOF
		default:
			return Archive{}, b.fail(fmt.Errorf("%w: got %T between archives", ErrProtocol, msg))
		}
	}
}

// Read reads the current archive's bytes; it returns io.EOF at the end of
// the archive. Tar streams always end with the end-of-archive marker, in
// both wire forms. Read waits on the network without a context of its own:
// cancel the context given to StartBaseBackup to interrupt it.
func (b *BaseBackup) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	for len(b.pending) == 0 && b.trailer == 0 {
		if b.ended {
			return 0, io.EOF
		}
		if b.framed && b.peeked == nil {
			n, ok, err := b.readDirect(p)
			if err != nil {
				return 0, err
			}
			if n > 0 {
				return n, nil
			}
			if ok {
				continue // an empty message
			}
		}
		if _, err := b.fill(context.Background()); err != nil {
			return 0, err
		}
	}
	if len(b.pending) > 0 {
		n := copy(p, b.pending)
		b.pending = b.pending[n:]
		return n, nil
	}
	n := min(len(p), b.trailer)
	clear(p[:n])
	b.trailer -= n
	return n, nil
}

// readDirect reads archive bytes of a CopyData message into p straight
// from the connection, without pgx: ok is false when the next message is
// not archive data, which fill then receives through pgx. It returns 0
// bytes with ok for a message without any.
func (b *BaseBackup) readDirect(p []byte) (n int, ok bool, err error) {
	fr := b.conn.framer
	if !b.direct {
		size, data, err := fr.nextData(b.newForm)
		if err != nil {
			return 0, false, b.receiveErr(err)
		}
		if !data {
			return 0, false, nil
		}
		if size == 0 {
			return 0, true, nil
		}
		b.direct = true
	}
	n, err = fr.readDirect(p)
	b.addReceived(n)
	if fr.left == 0 {
		b.direct = false
	}
	if err != nil {
		return 0, false, b.receiveErr(err)
	}
	return n, true, nil
}

// skipDirect reads and drops the rest of the payload readDirect is in.
func (b *BaseBackup) skipDirect() error {
	var scratch [4096]byte
	for b.direct {
		if _, _, err := b.readDirect(scratch[:]); err != nil {
			return err
		}
	}
	return nil
}

// receiveErr fails the backup after the connection failed, saying so
// when the backup was canceled (which closes the connection).
func (b *BaseBackup) receiveErr(err error) error {
	if c := b.canceled.Load(); c != nil {
		err = fmt.Errorf("%w (%w)", *c, err)
	}
	return b.fail(fmt.Errorf("receive: %w", err))
}

// unframe ends the framer's following of message boundaries once the
// backup is over and the connection between messages again.
func (b *BaseBackup) unframe() {
	if b.framed && b.conn.framer.stop() {
		b.framed = false
	}
}

// fill receives the next message of the current archive. It sets pending
// (or trailer) when data arrived, or ended when the archive is over;
// io.EOF reports the latter.
func (b *BaseBackup) fill(ctx context.Context) (int, error) {
	msg, err := b.receive(ctx)
	if err != nil {
		return 0, err
	}
	switch msg := msg.(type) {
	case *pgproto3.CopyData:
		if !b.newForm {
			b.addReceived(len(msg.Data))
			b.pending = msg.Data
			return len(msg.Data), nil
		}
		if len(msg.Data) == 0 {
			return 0, b.fail(fmt.Errorf("%w: empty CopyData", ErrProtocol))
		}
		switch msg.Data[0] {
		case 'd':
			b.addReceived(len(msg.Data) - 1)
			b.pending = msg.Data[1:]
			return len(b.pending), nil
		case 'p':
			return 0, b.progressMessage(msg.Data[1:])
		case 'n', 'm':
			b.peeked, b.ended = msg, true
			return 0, io.EOF
		default:
			return 0, b.fail(fmt.Errorf("%w: unknown CopyData type %q", ErrProtocol, msg.Data[0]))
		}
	case *pgproto3.CopyDone:
		if b.newForm {
			b.peeked = msg
		} else {
			b.inCopy = false
			if b.cur.Kind == ArchiveTablespace {
				b.trailer = tarTrailerSize
			}
		}
		b.ended = true
		return 0, io.EOF
	default:
		return 0, b.fail(fmt.Errorf("%w: got %T inside an archive", ErrProtocol, msg))
	}
}

// addReceived counts archive bytes, not manifest bytes, for Progress.
func (b *BaseBackup) addReceived(n int) {
	if b.cur.Kind == ArchiveTablespace {
		b.received.Add(int64(n))
	}
}

// began notes that archive a began, for complete.
func (b *BaseBackup) began(a Archive) {
	if a.Kind == ArchiveManifest {
		b.sentManifest = true
		return
	}
	if b.sent == nil {
		b.sent = map[string]bool{}
	}
	b.sent[a.Tablespace.Location] = true
}

// complete reports whether the server began every archive it announced:
// one for each tablespace of its list, and the manifest when one was
// asked for (perform_base_backup sends all of them, even for a
// tablespace dropped meanwhile).
func (b *BaseBackup) complete() bool {
	for _, ts := range b.Tablespaces {
		if !b.sent[ts.Location] {
			return false
		}
	}
	return !b.manifest || b.sentManifest
}

// Finish skips what is left of the archives, reads the end position and
// waits for the server to be ready again; the connection can then run
// other commands. The backup is only restorable with the WAL from
// StartLSN up to the returned end LSN, on the returned timeline. A backup
// the server fails for damaged data pages returns a *ChecksumError; when
// the caller had read every archive, the server had sent each one it
// announced (complete) and the failure came after the end position, as
// basebackup.c sends it, its Ended is set and End and Timeline hold the
// end position.
func (b *BaseBackup) Finish(ctx context.Context) (pglogrepl.LSN, int32, error) {
	defer b.stop()
	if b.closed {
		return 0, 0, fmt.Errorf("base backup: already finished")
	}
	b.closed = true
	// Whether the caller read every archive, and the server sent every
	// one it announced: a backup that failed after the end position is
	// complete only then (ChecksumError.Ended).
	read := b.finished && b.err == nil && b.complete()
	for {
		_, err := b.NextArchive(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, err
		}
	}
	b.failures.end()
	rows, next, err := b.readResult(ctx, b.takePeeked())
	if err != nil {
		return 0, 0, err
	}
	end, tli, err := parsePosition(rows)
	if err != nil {
		return 0, 0, b.fail(fmt.Errorf("base backup: end position: %w", err))
	}
	for {
		if next == nil {
			if next, err = b.receive(ctx); err != nil {
				var ce *ChecksumError
				if read && errors.As(err, &ce) {
					// basebackup.c fails a backup with damaged pages
					// only after the end position, which is here.
					ce.Ended, ce.End, ce.Timeline = true, end, tli
				}
				return 0, 0, err
			}
		}
		switch next.(type) {
		case *pgproto3.CommandComplete:
		case *pgproto3.ReadyForQuery:
			b.unframe()
			return end, tli, nil
		default:
			return 0, 0, b.fail(fmt.Errorf("%w: got %T after the end position", ErrProtocol, next))
		}
		next = nil
	}
}

func (b *BaseBackup) takePeeked() pgproto3.BackendMessage {
	m := b.peeked
	b.peeked = nil
	return m
}

// readResult reads one ordinary result set: RowDescription (first, when
// already received), DataRows, CommandComplete. A result set ended by
// another message (the tablespace list by CopyOutResponse) returns that
// message as next.
func (b *BaseBackup) readResult(ctx context.Context, first pgproto3.BackendMessage) (rows [][][]byte, next pgproto3.BackendMessage, err error) {
	msg := first
	if msg == nil {
		if msg, err = b.receive(ctx); err != nil {
			return nil, nil, err
		}
	}
	if _, ok := msg.(*pgproto3.RowDescription); !ok {
		return nil, nil, b.fail(fmt.Errorf("%w: got %T, want RowDescription", ErrProtocol, msg))
	}
	for {
		if msg, err = b.receive(ctx); err != nil {
			return nil, nil, err
		}
		switch msg := msg.(type) {
		case *pgproto3.DataRow:
			row := make([][]byte, len(msg.Values))
			for i, v := range msg.Values {
				if v != nil {
					row[i] = append([]byte{}, v...)
				}
			}
			rows = append(rows, row)
		case *pgproto3.CommandComplete:
			return rows, nil, nil
		default:
			return rows, msg, nil
		}
	}
}

// receive returns the next protocol message, the peeked one first. It
// skips asynchronous messages. A server error ends the backup: receive
// reads on to ReadyForQuery, so the connection stays usable, and returns
// the *pgconn.PgError. Any other failure closes the connection.
func (b *BaseBackup) receive(ctx context.Context) (pgproto3.BackendMessage, error) {
	if m := b.takePeeked(); m != nil {
		return m, nil
	}
	if b.direct {
		// The rest of a payload Read did not take (NextArchive and
		// Finish skip what is left of an archive).
		if err := b.skipDirect(); err != nil {
			return nil, err
		}
	}
	for {
		msg, err := b.conn.pg.ReceiveMessage(ctx)
		if err != nil {
			return nil, b.receiveErr(err)
		}
		switch msg := msg.(type) {
		case *pgproto3.NoticeResponse:
			b.notice(msg)
			continue
		case *pgproto3.ParameterStatus:
			continue
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(msg)
			b.drain(ctx)
			b.unframe()
			b.stop()
			var err error = pgErr
			if pgErr.Code == codeDataCorrupted {
				err = &ChecksumError{Warnings: b.warnings, Omitted: b.omitted,
					Files: b.failures.files, Blocks: b.failures.blocks(),
					FilesUnknown: len(b.failures.files) == 0, Err: pgErr}
			}
			b.err = fmt.Errorf("base backup: %w", err)
			return nil, b.err
		}
		return msg, nil
	}
}

// notice keeps a WARNING for a ChecksumError. The server's checksum
// failures come as warnings without a SQLSTATE of their own (01000), in
// the server's lc_messages, so every warning is kept, not only those that
// read as checksum failures in English.
func (b *BaseBackup) notice(msg *pgproto3.NoticeResponse) {
	sev := msg.SeverityUnlocalized
	if sev == "" {
		sev = msg.Severity
	}
	if sev != "WARNING" {
		return
	}
	b.failures.add(msg.Message)
	if len(b.warnings) == maxWarnings {
		b.omitted++
		return
	}
	b.warnings = append(b.warnings, msg.Message)
}

// drain reads up to ReadyForQuery after a server error; on failure it
// closes the connection.
func (b *BaseBackup) drain(ctx context.Context) {
	for {
		msg, err := b.conn.pg.ReceiveMessage(ctx)
		if err != nil {
			_ = b.conn.pg.Close(context.WithoutCancel(ctx))
			return
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return
		}
	}
}

// fail records err as the backup's final error and closes the
// connection: after a protocol or network failure its state is unknown.
func (b *BaseBackup) fail(err error) error {
	if b.err == nil {
		b.err = fmt.Errorf("base backup: %w", err)
	}
	b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = b.conn.pg.Close(ctx)
	return b.err
}
