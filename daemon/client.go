package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
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
// refused.
func RequestBackup(ctx context.Context, h HTTPConfig, site string) error {
	return post(ctx, h, "/"+site+"/basebackup")
}

// NoteBackupStored tells a running daemon, as RequestBackup reaches it
// (POST /<site>/backup-stored), that a backup was stored in site, so that
// it lists the site's backups now rather than within the minute: a
// daemon streaming from a standby then stores the WAL through the newest
// backup's end. The request carries no position: the daemon reads the
// backup from the site. Errors are as RequestBackup's.
func NoteBackupStored(ctx context.Context, h HTTPConfig, site string) error {
	return post(ctx, h, "/"+site+"/backup-stored")
}

// post sends an empty POST to path on the daemon h names and returns an
// error unless it answers 200, 201 or 202; ErrNoDaemon (wrapped) when
// nothing listens there.
func post(ctx context.Context, h HTTPConfig, path string) error {
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
			return err
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+path, nil)
	if err != nil {
		return err
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
			return fmt.Errorf("%w on %s: %v", ErrNoDaemon, addr, err)
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusAccepted:
		return nil
	}
	return fmt.Errorf("the daemon answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
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
