package basebackup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestConnectSQL_PassfileGroupReadable: the ordinary connection of a
// basebackup ignores a passfile that group or others may read, as libpq
// does, and its error names the file and the fix; at 0600 it connects.
func TestConnectSQL_PassfileGroupReadable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", "")
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], Conf: map[string]string{"password_encryption": "scram-sha-256"}, HBA: []string{
		"local all all trust",
		"host all postgres 127.0.0.1/32 trust",
		"host all bob 127.0.0.1/32 scram-sha-256",
	}})
	c.Exec(t, "create role bob login password 'secret'")
	pf := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(pf, fmt.Appendf(nil, "127.0.0.1:%d:*:bob:secret\n", c.Port), 0o644); err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprintf("host=127.0.0.1 port=%d user=bob dbname=postgres sslmode=disable passfile=%s", c.Port, pf)
	ctx := context.Background()
	conn, err := connectSQL(ctx, s)
	if err == nil {
		conn.Close(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "has group or world access") || !strings.Contains(err.Error(), "chmod 0600 "+pf) {
		t.Errorf("0644: %v: want it refused, naming the file's permissions and the fix", err)
	}
	if err := os.Chmod(pf, 0o600); err != nil {
		t.Fatal(err)
	}
	conn, err = connectSQL(ctx, s)
	if err != nil {
		t.Fatalf("0600: %v", err)
	}
	conn.Close(ctx)
}
