package replication

import (
	"context"
	"fmt"
	"time"
)

// flush writes the messages queued on the frontend, giving up when ctx
// ends. pgconn bounds its own exchanges by their context, but a bare
// Frontend().Flush writes to the socket with no deadline: against a
// server that stops reading (a frozen host, a partition) the send buffer
// fills and the write blocks forever, past any shutdown timeout. So the
// write deadline of the connection follows ctx: its deadline up front,
// the past once ctx is cancelled, and none again afterwards. A write cut
// short leaves a partial message on the wire: the connection is then
// useless and the caller closes it.
func (c *Conn) flush(ctx context.Context) error {
	nc := c.pg.Conn()
	if d, ok := ctx.Deadline(); ok {
		if err := nc.SetWriteDeadline(d); err != nil {
			return fmt.Errorf("set write deadline: %w", err)
		}
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = nc.SetWriteDeadline(time.Unix(1, 0))
	})
	err := c.pg.Frontend().Flush()
	if !stop() {
		<-fired // let the cancellation land before it is undone
	}
	_ = nc.SetWriteDeadline(time.Time{})
	if err == nil {
		return nil
	}
	// The socket's deadline may fire a moment before ctx's own timer.
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}
