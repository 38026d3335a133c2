package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoDaemon is returned (wrapped) by RequestBackup when no daemon answers
// on the configured HTTP address.
var ErrNoDaemon = errors.New("no hoard daemon answers")

// requestTimeout bounds a RequestBackup round trip: the daemon answers as
// soon as it has queued the backup.
const requestTimeout = 30 * time.Second

// RequestBackup asks a running daemon for a basebackup of site over its
// HTTP API (POST /<site>/basebackup on h.Address:h.Port, with h.Username
// and h.Password, over HTTPS when h.TLSCertFile is set: the daemon's
// certificate is pinned to that file, so no CA or host name is involved).
// An unset or wildcard address means this host's loopback. It returns an
// error wrapping ErrNoDaemon when nothing listens there, so a caller can
// take the backup itself; any other error means a daemon answered and
// refused. On success it returns the request's id, for WaitBackup; ""
// from a daemon too old to name it.
//
// destination is the site's Site.Destination as the caller's
// configuration builds it ("" skips the check): a daemon whose site of
// that name stores elsewhere (another configuration's daemon on the same
// address and port) refuses the request.
func RequestBackup(ctx context.Context, h HTTPConfig, site, destination string) (id string, err error) {
	path := "/" + site + "/basebackup"
	if destination != "" {
		path += "?destination=" + destinationDigest(destination)
	}
	_, hdr, _, err := call(ctx, h, http.MethodPost, path)
	if err != nil {
		return "", err
	}
	prefix := "/" + site + "/basebackup/"
	if loc := hdr.Get("Location"); strings.HasPrefix(loc, prefix) {
		return strings.TrimPrefix(loc, prefix), nil
	}
	return "", nil
}

// BackupRequest asks a running daemon, as RequestBackup reaches it (GET
// /<site>/basebackup/<id>), what became of basebackup request id. A
// daemon that does not know the id answers 404: the error wraps
// ErrUnknownRequest.
func BackupRequest(ctx context.Context, h HTTPConfig, site, id string) (RequestStatus, error) {
	st, _, err := backupRequest(ctx, h, site, id)
	return st, err
}

// backupRequest is BackupRequest, with the answer's status code (0 for
// none) for WaitBackup to tell a transient failure.
func backupRequest(ctx context.Context, h HTTPConfig, site, id string) (RequestStatus, int, error) {
	code, _, body, err := call(ctx, h, http.MethodGet, "/"+site+"/basebackup/"+id)
	if err != nil {
		if code == http.StatusNotFound {
			err = fmt.Errorf("%w: %v", ErrUnknownRequest, err)
		}
		return RequestStatus{}, code, err
	}
	var st RequestStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return RequestStatus{}, code, fmt.Errorf("the daemon's answer about request %s: %w", id, err)
	}
	return st, code, nil
}

// Defaults of WaitOptions.
const (
	// DefaultWaitRetry is how long WaitBackup goes on asking a daemon
	// whose answers fail transiently, in a row: a daemon restarting
	// answers "connection refused" (not transient), so what stays is a
	// proxy's 502/503 or a daemon too busy to answer, and a minute covers
	// a proxy's reload without hiding a daemon that is gone.
	DefaultWaitRetry = time.Minute
	// DefaultPollTimeout bounds one poll: the daemon answers from memory
	// at once, so a poll taking longer is as good as failed, and a daemon
	// that accepts the connection and never answers cannot hold the wait.
	DefaultPollTimeout = 10 * time.Second
	// maxRetryDelay caps the backoff between failed polls.
	maxRetryDelay = 10 * time.Second
)

// WaitOptions say how WaitBackup asks.
type WaitOptions struct {
	// Interval is the time between polls (a second when 0), and the first
	// delay after a failed one (doubled after each further failure, up to
	// 10 s).
	Interval time.Duration
	// RetryFor is how long polls may fail transiently in a row before
	// WaitBackup gives up (DefaultWaitRetry when 0).
	RetryFor time.Duration
	// PollTimeout bounds each poll (DefaultPollTimeout when 0).
	PollTimeout time.Duration
	// OnState, when set, is called with each new state.
	OnState func(RequestStatus)
	// OnRetry, when set, is called after each transient failure with its
	// error and the delay before the next poll.
	OnRetry func(err error, delay time.Duration)
}

// WaitBackup polls the daemon (BackupRequest) until request id is done
// (RequestStatus.Done) and returns its last status: with a nil error only
// when its backup is stored. A failed backup, a dropped request, a daemon
// that forgot the request or no longer answers (its requests live in
// memory only: they went with it) are errors that say so, as is any
// answer that is not transient (a 401 for wrong credentials, a
// certificate that is not the pinned one). A transient failure (a poll
// timed out, a connection reset or closed before the answer, a 502, 503,
// 504, 500, 408 or 429, as a proxy in front of the daemon answers while
// the daemon goes on with the backup) is asked again with backoff, for
// o.RetryFor in a row at most.
func WaitBackup(ctx context.Context, h HTTPConfig, site, id string, o WaitOptions) (RequestStatus, error) {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.RetryFor <= 0 {
		o.RetryFor = DefaultWaitRetry
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = DefaultPollTimeout
	}
	var st RequestStatus // the last status the daemon gave
	var failingSince time.Time
	delay := o.Interval
	for {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, o.PollTimeout)
		next, code, err := backupRequest(pctx, h, site, id)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return st, fmt.Errorf("stopped waiting for basebackup request %s (%s; the daemon goes on with it): %w", id, orUnknown(st.State), ctx.Err())
		case err != nil && transient(code, err):
			if failingSince.IsZero() {
				failingSince, delay = start, o.Interval
			} else {
				delay = min(2*delay, maxRetryDelay)
			}
			left := o.RetryFor - time.Since(failingSince)
			if left <= 0 {
				return st, fmt.Errorf("gave up waiting for basebackup request %s after %s of failed polls (last state seen: %s): "+
					"the daemon may go on with it; see hoard list: %w", id, time.Since(failingSince).Round(time.Second), orUnknown(st.State), err)
			}
			// The last poll comes when the time is up, not after it.
			delay = min(delay, left)
			if o.OnRetry != nil {
				o.OnRetry(err, delay)
			}
			if err := sleep(ctx, delay); err != nil {
				return st, fmt.Errorf("stopped waiting for basebackup request %s (%s; the daemon goes on with it): %w", id, orUnknown(st.State), err)
			}
			continue
		case errors.Is(err, ErrNoDaemon):
			return st, fmt.Errorf("the daemon stopped answering while basebackup request %s was %s: "+
				"its requests went with it; see hoard list, and request the backup again: %w", id, orUnknown(st.State), err)
		case errors.Is(err, ErrUnknownRequest):
			return st, fmt.Errorf("basebackup request %s was %s, and the daemon no longer knows it "+
				"(it restarted since, and the request was dropped): see hoard list, and request the backup again: %w", id, orUnknown(st.State), err)
		case err != nil:
			return st, fmt.Errorf("ask the daemon about basebackup request %s: %w", id, err)
		}
		failingSince = time.Time{}
		if next.State != st.State && o.OnState != nil {
			o.OnState(next)
		}
		st = next
		switch st.State {
		case RequestStored:
			return st, nil
		case RequestFailed:
			return st, fmt.Errorf("the daemon's basebackup for request %s failed: %s", id, st.Error)
		case RequestDropped:
			return st, fmt.Errorf("the daemon dropped basebackup request %s: %s; request it again", id, st.Error)
		}
		if err := sleep(ctx, o.Interval); err != nil {
			return st, fmt.Errorf("stopped waiting for basebackup request %s (%s; the daemon goes on with it): %w", id, st.State, err)
		}
	}
}

// transient reports whether a poll's failure (its status code, 0 for
// none, and error) may pass while the daemon goes on with the backup: a
// timeout (the daemon or a proxy too busy, or the network), a connection
// reset or closed before the whole answer, and the status codes a proxy
// or an overloaded server answers for a while (500, 502, 503, 504, 408,
// 429). Not transient: a refused connection (nothing listens: the daemon
// is gone, and its requests with it), an answer that says no for good
// (401 and 403: credentials; 404: the daemon does not know the request;
// 501: a daemon without the API) and TLS errors (not the pinned
// certificate).
func transient(code int, err error) bool {
	switch code {
	case 0, http.StatusOK: // no answer, or one cut short
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	default:
		return false
	}
	// A dial that timed out is no proof that nothing listens: a daemon's
	// full accept queue drops connections unanswered.
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, ErrNoDaemon) {
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// sleep waits for d or until ctx is done, and returns ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// orUnknown is a request's last state seen, for a message.
func orUnknown(state string) string {
	if state == "" {
		return "made"
	}
	return state
}

// NoteBackupStored tells a running daemon, as RequestBackup reaches it
// (POST /<site>/backup-stored), that a backup was stored in site, so that
// it lists the site's backups now rather than within the minute: a
// daemon streaming from a standby then stores the WAL through the newest
// backup's end. The request carries no position: the daemon reads the
// backup from the site. destination is as RequestBackup's ("" skips the
// check): a daemon whose site of that name stores elsewhere refuses the
// note (421), so that the caller does not count another configuration's
// daemon as one that streams its site's WAL. Errors are as
// RequestBackup's.
func NoteBackupStored(ctx context.Context, h HTTPConfig, site, destination string) error {
	path := "/" + site + "/backup-stored"
	if destination != "" {
		path += "?destination=" + destinationDigest(destination)
	}
	_, _, _, err := call(ctx, h, http.MethodPost, path)
	return err
}

// call sends an empty request to path on the daemon h names and returns
// the answer's status code, header and (first 64 KiB of) body; an error
// unless it answers 200, 201 or 202, and ErrNoDaemon (wrapped) when
// nothing listens there.
func call(ctx context.Context, h HTTPConfig, method, path string) (int, http.Header, []byte, error) {
	host := h.Address
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(h.Port))
	scheme := "http"
	tr := &http.Transport{Proxy: nil}
	if h.TLSCertFile != "" {
		pin, err := certLeaf(h.TLSCertFile)
		if err != nil {
			return 0, nil, nil, err
		}
		scheme = "https"
		tr.TLSClientConfig = &tls.Config{
			// The certificate is compared byte for byte with the one in
			// the configuration instead of being verified against CAs.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], pin) {
					return fmt.Errorf("the daemon's certificate is not the one in http_tls_cert_file %s", h.TLSCertFile)
				}
				return nil
			},
			MinVersion: tls.VersionTLS12,
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+"://"+addr+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if h.Username != "" {
		req.SetBasicAuth(h.Username, h.Password)
	}
	client := &http.Client{Transport: tr, Timeout: requestTimeout}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return 0, nil, nil, fmt.Errorf("%w on %s: %w", ErrNoDaemon, addr, err)
		}
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusAccepted:
		if err != nil {
			return resp.StatusCode, resp.Header, nil, fmt.Errorf("read the daemon's answer: %w", err)
		}
		return resp.StatusCode, resp.Header, body, nil
	}
	return resp.StatusCode, resp.Header, nil, fmt.Errorf("the daemon answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
}

// certLeaf returns the DER bytes of the first certificate in a PEM file.
func certLeaf(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read http_tls_cert_file: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("http_tls_cert_file %s holds no PEM certificate", path)
		}
		if b.Type == "CERTIFICATE" {
			return b.Bytes, nil
		}
	}
}
