package storage_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestAzure_ErrUnreachableNoSAS checks that an error naming a request
// URL (Go's transport quotes it whole when it cannot reach the endpoint)
// holds no SAS signature: the SDK re-encodes the token's pairs, sorted
// and escaped again, so the token as configured is not in the message.
func TestAzure_ErrUnreachableNoSAS(t *testing.T) {
	const sig = "SIGSECRET+abc/def="
	for name, token := range map[string]string{
		"Escaped":   "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&spr=https,http&sig=SIGSECRET%2Babc%2Fdef%3D",
		"Unescaped": "?sp=rwdlac&sig=SIGSECRET+abc/def=&sv=2022-11-02",
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := storage.Open(ctx, storage.Config{Type: storage.TypeAzure, AccountName: "acct", BucketName: "c1",
				Host: "127.0.0.1", Port: testio.FreePort(t), SASToken: token})
			if err != nil {
				t.Fatal(err)
			}
			err = s.List(ctx, "site/", func(storage.Object) error { return nil })
			if err == nil {
				t.Fatal("List from a closed port: no error")
			}
			msg := err.Error()
			for _, leak := range []string{"SIGSECRET", strings.TrimPrefix(sig, "SIGSECRET")} {
				if strings.Contains(msg, leak) {
					t.Errorf("List from a closed port: %q holds the SAS signature (%q)", msg, leak)
				}
			}
			if !strings.Contains(msg, "cannot reach the azure endpoint") {
				t.Errorf("List from a closed port: %q, want it to say the endpoint cannot be reached", msg)
			}
		})
	}
}

// TestAzure_ErrNotFoundUnreachableNoSAS checks the same for the error of
// the container check that follows an object's first "not found" (is it
// the object or the container that is missing?): a server that answers
// BlobNotFound once and then drops every connection.
func TestAzure_ErrNotFoundUnreachableNoSAS(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			w.Header().Set("x-ms-error-code", "BlobNotFound")
			w.WriteHeader(http.StatusNotFound)
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	port, err := strconv.Atoi(srv.URL[strings.LastIndexByte(srv.URL, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := storage.Open(ctx, storage.Config{Type: storage.TypeAzure, AccountName: "acct", BucketName: "c1",
		Host: "127.0.0.1", Port: port, SASToken: "sp=r&se=2030-01-01T00:00:00Z&sig=SIGSECRET%2Babc%3D&sv=2022-11-02"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Open(ctx, "site/xlog/000000010000000000000001")
	if err == nil {
		t.Fatal("Open: no error")
	}
	if msg := err.Error(); strings.Contains(msg, "SIGSECRET") || requests.Load() < 2 {
		t.Errorf("Open after %d requests: %q, want the container check's error without the SAS signature", requests.Load(), msg)
	}
}
