package storage

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
)

// TestStalledStoreFails checks that a request to an HTTP store that accepts
// the connection and then never answers gives up (and the backend's own
// retry opens a new connection) instead of hanging: without the stall
// timeout each of these Stats waits for ever on its first connection.
func TestStalledStoreFails(t *testing.T) {
	old := StallTimeout
	StallTimeout = 300 * time.Millisecond
	t.Cleanup(func() { StallTimeout = old })

	for _, kind := range []string{"s3", "google", "azure"} {
		t.Run(kind, func(t *testing.T) {
			host := "127.0.0.1"
			port, accepted := testio.StallServer(t)
			c := Config{Type: kind, BucketName: "stalled"}
			switch kind {
			case "s3":
				c.Host, c.Port = host, port
				c.AccessKeyID, c.SecretAccessKey, c.Region = "key", "secret", "us-east-1"
			case "google":
				t.Setenv("STORAGE_EMULATOR_HOST", net.JoinHostPort(host, strconv.Itoa(port)))
			case "azure":
				c.Host, c.Port = host, port
				c.AccountName = "account"
				c.AccountKey = base64.StdEncoding.EncodeToString([]byte("not a real key"))
			}
			// The context is a safety net far beyond the stall timeout (and
			// what ends Google's retries).
			limit := 45 * time.Second
			if kind == "google" {
				limit = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), limit)
			defer cancel()
			s, err := Open(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := s.Stat(ctx, "some/key")
				done <- err
			}()
			// Google's client retries idempotent requests until its context
			// ends; the others give up after a few tries. Either way a
			// stalled connection must be abandoned for a new one.
			var err2 error
			select {
			case err2 = <-done:
			case <-ctx.Done():
				err2 = <-done
			}
			if n := accepted.Load(); n < 2 {
				t.Fatalf("%s: %d connection(s) accepted: the stalled one was never abandoned (Stat: %v)", kind, n, err2)
			}
			if err2 == nil {
				t.Fatalf("%s: Stat of a store that never answers succeeded", kind)
			}
			if kind != "google" && errors.Is(err2, context.DeadlineExceeded) {
				t.Fatalf("%s: Stat ran until the test's own deadline: %v", kind, err2)
			}
			t.Logf("%s: %d connections, %v", kind, accepted.Load(), err2)
		})
	}
}
