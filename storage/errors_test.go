package storage

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestErrorf_Unreachable: an endpoint that does not answer (a wrong port
// or host in object_storage) is named as such, with the keys to check, and
// stays transient so that the retries and the daemon's backoff still apply.
func TestErrorf_Unreachable(t *testing.T) {
	refused := fmt.Errorf("operation error S3: ListObjectsV2, exceeded maximum number of attempts, 3: %w",
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")})
	noHost := fmt.Errorf("request send failed: %w", &net.DNSError{Err: "no such host", Name: "minio.invalid"})
	for name, cause := range map[string]error{"Refused": refused, "NoHost": noHost} {
		t.Run(name, func(t *testing.T) {
			err := errorf("s3", "hoard", "list", "site/basebackup/", cause)
			want := "list site/basebackup/: cannot reach the s3 endpoint (check host, port and is_secure"
			if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), cause.Error()) {
				t.Errorf("errorf = %q, want it to start %q and keep %q", err, want, cause)
			}
			if !IsTransient(err) || !errors.Is(err, cause) {
				t.Errorf("errorf = %v: transient %v, wraps the cause %v; want both", err, IsTransient(err), errors.Is(err, cause))
			}
		})
	}
	// A read cut off mid-transfer is no dial error: no hint.
	cut := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	if err := errorf("s3", "hoard", "open", "k", cut); strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("errorf(read error) = %q, want no endpoint hint", err)
	}
}
