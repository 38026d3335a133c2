package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// TestErrorf_SchemeMismatch: is_secure true against an endpoint that
// speaks plain HTTP (MinIO as it starts, without certificates) is named
// as such, with the key to change, and is not retried: the SDK's
// "http: server gave HTTP response to HTTPS client" came after its three
// attempts and the store's retries, with nothing saying which setting it
// is about.
func TestErrorf_SchemeMismatch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "plain http", http.StatusBadRequest)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	for _, c := range []Config{
		{Type: TypeS3, BucketName: "hoard", Region: "us-east-1", Host: host, Port: p, IsSecure: true,
			AccessKeyID: "hoard-test-key", SecretAccessKey: "hoard-test-secret"},
		{Type: TypeAzure, BucketName: "hoard", Host: host, Port: p, IsSecure: true,
			AccountName: "devstoreaccount1", AccountKey: "aG9hcmQtdGVzdC1rZXk="},
	} {
		t.Run(c.Type, func(t *testing.T) {
			if testing.Short() && c.Type == TypeAzure {
				t.Skip("the Azure SDK's own retries take 10 s")
			}
			st, err := Open(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			err = st.List(context.Background(), "site/basebackup/", func(Object) error { return nil })
			if err == nil || !strings.Contains(err.Error(), "is_secure") || !errors.Is(err, ErrPermanent) {
				t.Errorf("List over HTTPS from a plain HTTP endpoint = %v, want a permanent error naming is_secure", err)
			}
		})
	}
}
