package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// EndOfTimeline reports that the server streamed all WAL of the requested
// timeline, which is not its latest: streaming goes on with NextTimeline
// from SwitchLSN (fetch its history with TimelineHistory first). It is
// returned as an error by StartReplication and ReceiveMessage; test with
// errors.As.
type EndOfTimeline struct {
	NextTimeline int32
	SwitchLSN    pglogrepl.LSN
}

func (e *EndOfTimeline) Error() string {
	return fmt.Sprintf("end of timeline: next timeline %d at %s", e.NextTimeline, e.SwitchLSN)
}

// StartOptions say where START_REPLICATION begins.
type StartOptions struct {
	Slot     string        // physical slot to stream from; "" streams without a slot
	Start    pglogrepl.LSN // start position; streaming should start at a segment boundary
	Timeline int32         // timeline to stream; 0 means the server's current one
}

// MessageKind tells what a Message holds.
type MessageKind int

const (
	// MessageXLogData is WAL ('w').
	MessageXLogData MessageKind = iota + 1
	// MessageKeepalive is the server's keepalive ('k').
	MessageKeepalive
)

// Message is one message of a replication stream.
type Message struct {
	Kind MessageKind
	// XLogData is set for MessageXLogData. Its WALData aliases the
	// connection's receive buffer: it is valid only until the next
	// ReceiveMessage.
	XLogData pglogrepl.XLogData
	// Keepalive is set for MessageKeepalive. When ReplyRequested is set,
	// answer with SendStandbyStatus soon, or the server drops the
	// connection after wal_sender_timeout.
	Keepalive pglogrepl.PrimaryKeepaliveMessage
}

// StandbyStatus is the standby status update ('r') a receiver sends.
type StandbyStatus struct {
	Write pglogrepl.LSN // WAL received and written locally
	Flush pglogrepl.LSN // WAL fsynced locally: the server may recycle what precedes it (with a slot)
	Apply pglogrepl.LSN // WAL applied; a receiver that does not replay reports Flush
	// ReplyRequested asks the server for an immediate keepalive.
	ReplyRequested bool
}

// StartReplication starts physical streaming (START_REPLICATION [SLOT s]
// PHYSICAL X/Y [TIMELINE t]). When it returns nil, the connection is in
// streaming mode: call ReceiveMessage in a loop. When the start is exactly
// the end of an older timeline, the server skips streaming and
// StartReplication returns an *EndOfTimeline.
func (c *Conn) StartReplication(ctx context.Context, opts StartOptions) error {
	cmd := "START_REPLICATION"
	if opts.Slot != "" {
		cmd += " SLOT " + quoteIdent(opts.Slot)
	}
	cmd += " PHYSICAL " + opts.Start.String()
	if opts.Timeline != 0 {
		cmd += " TIMELINE " + strconv.FormatInt(int64(opts.Timeline), 10)
	}
	c.pg.Frontend().Send(&pgproto3.Query{String: cmd})
	if err := c.flush(ctx); err != nil {
		return fmt.Errorf("start replication: %w", err)
	}
	for {
		msg, err := c.pg.ReceiveMessage(ctx)
		if err != nil {
			return fmt.Errorf("start replication: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyBothResponse:
			c.streaming = true
			return nil
		case *pgproto3.RowDescription:
			eot, err := c.readEndOfTimeline(ctx, msg)
			if err == nil {
				err = c.readUntilReady(ctx)
			}
			if err != nil {
				return fmt.Errorf("start replication: %w", err)
			}
			return eot
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(msg)
			if err := c.readUntilReady(ctx); err != nil {
				return fmt.Errorf("start replication: %w (then %w)", pgErr, err)
			}
			if pgErr.Code == codeObjectInUse && opts.Slot != "" {
				// The server's message names the holder's PID.
				return fmt.Errorf("start replication: %w: %w; another process streams from it (another hoard daemon, a pg_receivewal, a standby whose primary_slot_name is %s): stop it, or give this site a slot of its own",
					ErrSlotInUse, pgErr, opts.Slot)
			}
			return fmt.Errorf("start replication: %w", pgErr)
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return fmt.Errorf("start replication: %w: got %T", ErrProtocol, msg)
		}
	}
}

// ReceiveMessage returns the next XLogData or keepalive. When the server
// ends the timeline, ReceiveMessage completes the exchange and returns an
// *EndOfTimeline; the connection then accepts commands again. When the
// server shuts down it ends the stream with an error wrapping
// ErrStreamEnded; the connection is then useless. When ctx
// ends first, the error satisfies pgconn.Timeout and the connection stays
// usable: a receive loop may use a short deadline to wake up and send
// status updates.
func (c *Conn) ReceiveMessage(ctx context.Context) (Message, error) {
	if !c.streaming {
		return Message{}, fmt.Errorf("receive message: not streaming")
	}
	for {
		msg, err := c.pg.ReceiveMessage(ctx)
		if err != nil {
			return Message{}, fmt.Errorf("receive message: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			return parseStreamMessage(msg.Data)
		case *pgproto3.CopyDone:
			// The server ends COPY BOTH at the end of a timeline: answer
			// with our CopyDone, then read the next timeline.
			c.streaming = false
			return Message{}, c.finishStream(ctx)
		case *pgproto3.ErrorResponse:
			c.streaming = false
			pgErr := pgconn.ErrorResponseToPgError(msg)
			_ = c.readUntilReady(ctx)
			return Message{}, fmt.Errorf("receive message: %w", pgErr)
		case *pgproto3.CommandComplete:
			// A walsender told to shut down sends CommandComplete ("COPY
			// 0") without CopyDone once the receiver has everything, then
			// exits (WalSndDone in walsender.c).
			c.streaming = false
			return Message{}, fmt.Errorf("receive message: %w", ErrStreamEnded)
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return Message{}, fmt.Errorf("receive message: %w: got %T", ErrProtocol, msg)
		}
	}
}

// parseStreamMessage decodes the CopyData payload of a replication stream.
func parseStreamMessage(data []byte) (Message, error) {
	if len(data) == 0 {
		return Message{}, fmt.Errorf("receive message: %w: empty CopyData", ErrProtocol)
	}
	switch data[0] {
	case 'w':
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return Message{}, fmt.Errorf("receive message: %w: %w", ErrProtocol, err)
		}
		return Message{Kind: MessageXLogData, XLogData: x}, nil
	case 'k':
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return Message{}, fmt.Errorf("receive message: %w: %w", ErrProtocol, err)
		}
		return Message{Kind: MessageKeepalive, Keepalive: k}, nil
	}
	return Message{}, fmt.Errorf("receive message: %w: unknown message type %q", ErrProtocol, data[0])
}

// finishStream answers the server's CopyDone and reads what follows: the
// next timeline's result set when the timeline ended (*EndOfTimeline), or
// nothing when the server is going away (ErrStreamEnded).
func (c *Conn) finishStream(ctx context.Context) error {
	eot, err := c.endCopy(ctx, true)
	switch {
	case err != nil:
		return fmt.Errorf("end stream: %w", err)
	case eot == nil:
		return ErrStreamEnded
	}
	return eot
}

// endCopy sends CopyDone and reads up to ReadyForQuery, returning the
// next timeline's result set when the timeline ended (nil otherwise).
// byServer says who ended COPY BOTH. When the server did (its CopyDone
// was read), a message other than the command's CommandComplete, notices
// and that result set is a protocol violation, and a failed connection
// wraps ErrStreamEnded: the server may be going away. When we did
// (StopReplication), the WAL still in flight, the server's CopyDone and
// whatever else comes before ReadyForQuery are skipped.
func (c *Conn) endCopy(ctx context.Context, byServer bool) (*EndOfTimeline, error) {
	lost := func(err error) error {
		if byServer {
			return fmt.Errorf("%w: %w", ErrStreamEnded, err)
		}
		return err
	}
	c.pg.Frontend().Send(&pgproto3.CopyDone{})
	if err := c.flush(ctx); err != nil {
		return nil, lost(err)
	}
	var eot *EndOfTimeline
	for {
		msg, err := c.pg.ReceiveMessage(ctx)
		if err != nil {
			return nil, lost(err)
		}
		switch msg := msg.(type) {
		case *pgproto3.RowDescription:
			if eot, err = c.readEndOfTimeline(ctx, msg); err != nil {
				return nil, err
			}
		case *pgproto3.ReadyForQuery:
			return eot, nil
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(msg)
			_ = c.readUntilReady(ctx)
			return nil, pgErr
		case *pgproto3.CommandComplete, *pgproto3.NoticeResponse, *pgproto3.ParameterStatus, *pgproto3.CopyData:
		default:
			if byServer {
				return nil, fmt.Errorf("%w: got %T", ErrProtocol, msg)
			}
		}
	}
}

// readEndOfTimeline reads the rest of the (next_tli int8, next_tli_startpos
// text) result set whose RowDescription was received, up to and including
// its CommandComplete.
func (c *Conn) readEndOfTimeline(ctx context.Context, _ *pgproto3.RowDescription) (*EndOfTimeline, error) {
	var eot *EndOfTimeline
	for {
		msg, err := c.pg.ReceiveMessage(ctx)
		if err != nil {
			return nil, err
		}
		switch msg := msg.(type) {
		case *pgproto3.DataRow:
			if len(msg.Values) != 2 {
				return nil, fmt.Errorf("%w: next timeline row has %d columns", ErrProtocol, len(msg.Values))
			}
			tli, err := strconv.ParseInt(string(msg.Values[0]), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parse next timeline: %w", err)
			}
			lsn, err := pglogrepl.ParseLSN(string(msg.Values[1]))
			if err != nil {
				return nil, fmt.Errorf("parse timeline switch position: %w", err)
			}
			eot = &EndOfTimeline{NextTimeline: int32(tli), SwitchLSN: lsn}
		case *pgproto3.CommandComplete:
			if eot == nil {
				return nil, fmt.Errorf("%w: next timeline result set without a row", ErrProtocol)
			}
			return eot, nil
		default:
			return nil, fmt.Errorf("%w: got %T in the next timeline result set", ErrProtocol, msg)
		}
	}
}

// StopReplication ends streaming from our side: it sends CopyDone, skips
// the WAL still in flight and waits until the connection accepts commands
// again. It returns an *EndOfTimeline if the timeline happened to end
// meanwhile.
func (c *Conn) StopReplication(ctx context.Context) error {
	if !c.streaming {
		return nil
	}
	c.streaming = false
	eot, err := c.endCopy(ctx, false)
	switch {
	case err != nil:
		return fmt.Errorf("stop replication: %w", err)
	case eot != nil:
		return eot
	}
	return nil
}

// readUntilReady skips messages up to ReadyForQuery.
func (c *Conn) readUntilReady(ctx context.Context) error {
	for {
		msg, err := c.pg.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return nil
		}
	}
}

// pgEpoch is PostgreSQL's timestamp epoch, 2000-01-01 UTC.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// SendStandbyStatus sends a standby status update ('r'). The positions
// are sent as given: report as flushed only WAL that is fsynced locally.
func (c *Conn) SendStandbyStatus(ctx context.Context, s StandbyStatus) error {
	if !c.streaming {
		return fmt.Errorf("send standby status: not streaming")
	}
	c.pg.Frontend().Send(&pgproto3.CopyData{Data: s.encode(time.Now())})
	if err := c.flush(ctx); err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

// encode lays out the message: 'r', write, flush and apply positions,
// the client's clock in microseconds since 2000-01-01, reply flag.
func (s StandbyStatus) encode(now time.Time) []byte {
	buf := make([]byte, 0, 34)
	buf = append(buf, 'r')
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.Write))
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.Flush))
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.Apply))
	buf = binary.BigEndian.AppendUint64(buf, uint64(now.Sub(pgEpoch).Microseconds()))
	if s.ReplyRequested {
		buf = append(buf, 1)
	} else {
		buf = append(buf, 0)
	}
	return buf
}

// IsEndOfTimeline returns the *EndOfTimeline in err's chain, if any.
func IsEndOfTimeline(err error) (*EndOfTimeline, bool) {
	var eot *EndOfTimeline
	ok := errors.As(err, &eot)
	return eot, ok
}
