package storetest

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
)

// TestServers_PortTaken: another process binds the port a server was
// given between FreePort and the server's own bind (two packages' tests
// run at once, PostgreSQL clusters start beside them). The server cannot
// listen there; the start moves to other ports, and the store that comes
// back is the test's own server: an object put there reads back.
func TestServers_PortTaken(t *testing.T) {
	// take is the port taken, counted in the order the server's start
	// asks FreePort for them: Swift's object server (the fourth) starts
	// after memcached and two Swift servers that its retry must stop, and
	// it tries to bind for 30 s rather than exit.
	take := map[string]int{"MinIO": 0, "Azurite": 0, "FakeGCS": 0, "Swift": 3, "SFTP": 0}
	for _, s := range Servers {
		n, ok := take[s.Name]
		if !ok {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			testio.TakePort(t, n)
			st := Open(t, s.Config(t))
			ctx := context.Background()
			if err := st.Put(ctx, "k", strings.NewReader("v"), nil); err != nil {
				t.Fatalf("put: %v", err)
			}
			r, _, err := st.Open(ctx, "k")
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer r.Close()
			if b, err := io.ReadAll(r); err != nil || string(b) != "v" {
				t.Fatalf("read %q, %v; want \"v\"", b, err)
			}
		})
	}
}
