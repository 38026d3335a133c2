package replication

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestConnect_PassfileReplication: a passfile line for the database
// "replication", as PostgreSQL's documentation tells a standby's
// ~/.pgpass to say and as pg_receivewal, pg_basebackup and a standby's
// walreceiver look the password up for a physical replication
// connection, gives the replication connection its password; the
// ordinary connections look it up under their dbname, as libpq does; a
// line for the dbname alone still serves both, as before; and a
// password in the connection string or PGPASSWORD wins over the file.
func TestConnect_PassfileReplication(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", "")
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], Conf: map[string]string{"password_encryption": "scram-sha-256"}, HBA: []string{
		"local all all trust",
		"host all postgres 127.0.0.1/32 trust",
		"host replication bob 127.0.0.1/32 scram-sha-256",
		"host all bob 127.0.0.1/32 scram-sha-256",
	}})
	c.Exec(t, "create role bob login replication password 'secret'")
	passfile := func(t *testing.T, lines ...string) string {
		p := filepath.Join(t.TempDir(), "pgpass")
		var s string
		for _, l := range lines {
			s += l + "\n"
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hp := fmt.Sprintf("127.0.0.1:%d", c.Port)
	kv := func(pf, extra string) string {
		return fmt.Sprintf("host=127.0.0.1 port=%d user=bob dbname=postgres sslmode=disable passfile=%s %s", c.Port, pf, extra)
	}
	uri := func(pf string) string {
		return fmt.Sprintf("postgres://bob@%s/postgres?sslmode=disable&passfile=%s", hp, url.QueryEscape(pf))
	}
	replicate := func(t *testing.T, s string) error {
		conn, err := Connect(testContext(t), s)
		if err == nil {
			conn.Close(context.Background())
		}
		return err
	}
	query := func(t *testing.T, s string) error {
		_, err := QueryServer(testContext(t), s)
		return err
	}

	t.Run("OK", func(t *testing.T) {
		repl := passfile(t, hp+":replication:bob:secret")
		for _, s := range []string{kv(repl, ""), uri(repl)} {
			if err := replicate(t, s); err != nil {
				t.Errorf("replication connection with a passfile line for database replication: %v", err)
			}
		}
		if err := query(t, kv(passfile(t, hp+":postgres:bob:secret", hp+":replication:bob:wrong"), "")); err != nil {
			t.Errorf("ordinary connection with a passfile line for its dbname: %v", err)
		}
		// PGPASSFILE names the file; no dbname.
		t.Setenv("PGPASSFILE", repl)
		if err := replicate(t, fmt.Sprintf("host=127.0.0.1 port=%d user=bob sslmode=disable", c.Port)); err != nil {
			t.Errorf("replication connection with PGPASSFILE: %v", err)
		}
	})
	t.Run("DBNameOnly", func(t *testing.T) {
		pf := passfile(t, hp+":postgres:bob:secret")
		if err := replicate(t, kv(pf, "")); err != nil {
			t.Errorf("replication connection with a passfile line for its dbname only: %v", err)
		}
	})
	// A passfile that group or others can read is ignored, as libpq
	// ignores it (PasswordFromFile in fe-connect.c), and the failure
	// names the file and the fix; at 0600 it serves again. Each kind of
	// connection, and each way of naming the file.
	t.Run("GroupReadable", func(t *testing.T) {
		pf := passfile(t, hp+":*:bob:secret")
		home := t.TempDir()
		if err := os.WriteFile(filepath.Join(home, ".pgpass"), []byte(hp+":*:bob:secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("HOME", home)
		noFile := fmt.Sprintf("host=127.0.0.1 port=%d user=bob dbname=postgres sslmode=disable", c.Port)
		for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
			for _, f := range []string{pf, filepath.Join(home, ".pgpass")} {
				if err := os.Chmod(f, mode); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("PGPASSFILE", "")
			cases := map[string]string{"keyword/value": kv(pf, ""), "URI": uri(pf), "~/.pgpass": noFile}
			for name, s := range cases {
				for kind, connect := range map[string]func(*testing.T, string) error{"replication": replicate, "ordinary": query} {
					err := connect(t, s)
					if err == nil || !strings.Contains(err.Error(), "has group or world access") || !strings.Contains(err.Error(), "chmod 0600") {
						t.Errorf("%04o, %s, %s connection: %v: want it refused, naming the file's permissions and the fix", mode, name, kind, err)
					}
				}
			}
			t.Setenv("PGPASSFILE", pf)
			if err := replicate(t, noFile); err == nil || !strings.Contains(err.Error(), pf) {
				t.Errorf("%04o, PGPASSFILE: %v: want it refused, naming %s", mode, err, pf)
			}
		}
		if err := os.Chmod(pf, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, connect := range []func(*testing.T, string) error{replicate, query} {
			if err := connect(t, kv(pf, "")); err != nil {
				t.Errorf("0600: %v", err)
			}
		}
	})
	t.Run("ExplicitWins", func(t *testing.T) {
		pf := passfile(t, hp+":replication:bob:wrong")
		if err := replicate(t, kv(pf, "password=secret")); err != nil {
			t.Errorf("password in the connection string: %v", err)
		}
		t.Setenv("PGPASSWORD", "secret")
		if err := replicate(t, kv(pf, "")); err != nil {
			t.Errorf("PGPASSWORD: %v", err)
		}
	})
}
