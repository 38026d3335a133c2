package storage

import (
	"context"
	"net"
	"net/http"
	"time"
)

// StallTimeout bounds how long a connection to an HTTP object store (S3,
// Google Cloud Storage, Azure) may make no progress: a read or a write that
// moves no byte for this long fails the request with a timeout, which the
// retry layer treats as transient. Without it a store that accepts a
// connection and then stops answering would hold an archive_command, and so
// PostgreSQL's archiver, forever. Large objects are unaffected: every byte
// that moves restarts the clock. An SFTP store closes its connection when a
// keepalive has gone unanswered this long with no byte from the server
// (see SFTP.watch). A store takes the value it has when it is opened.
var StallTimeout = 2 * time.Minute

// stallConn is a net.Conn whose every Read and Write must make progress
// within StallTimeout.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// stallDial wraps dial so that its connections fail when they stall.
func stallDial(dial dialFunc) dialFunc {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	timeout := StallTimeout
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &stallConn{Conn: conn, timeout: timeout}, nil
	}
}

// stallTransport is a clone of http.DefaultTransport whose connections fail
// when they stall.
func stallTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = stallDial(t.DialContext)
	return t
}
