package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

func TestParseServerVersion(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"15.4", 150004},
		{"13.23 (Debian 13.23-1.pgdg120+1)", 130023},
		{"16beta1", 160000},
		{"18.0", 180000},
		{"9.6.24", 0},
		{"", 0},
	}
	for _, tt := range tests {
		if got := parseServerVersion(tt.in); got != tt.want {
			t.Errorf("parseServerVersion(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestConnect(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major})
		conn := connect(t, c)
		if got := conn.ServerVersion() / 10000; got != major {
			t.Errorf("ServerVersion() = %d, want major %d", conn.ServerVersion(), major)
		}
		// A physical replication connection refuses SQL.
		if _, err := conn.exec(testContext(t), "select 1"); err == nil {
			t.Error("select 1 accepted on a replication connection")
		}
	})
}

func TestConnect_ErrUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = Connect(context.Background(), fmt.Sprintf("host=127.0.0.1 port=%d user=postgres sslmode=disable connect_timeout=5", port))
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("Connect to a closed port: %v, want ErrUnreachable", err)
	}
}

// TestConnect_ErrUnreachableOneLine checks that a refused connection is
// one line naming the address once: with sslmode=prefer (libpq's and
// pgconn's default) pgconn tries twice and puts each attempt on a line
// of its own after "\n\t", which hoard's output escapes into a literal
// `\n\t`, and the second attempt repeated the first's refusal word for
// word.
func TestConnect_ErrUnreachableOneLine(t *testing.T) {
	port := testio.FreePort(t)
	_, err := Connect(context.Background(), fmt.Sprintf("host=127.0.0.1 port=%d user=postgres connect_timeout=5", port))
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Connect to a closed port: %v, want ErrUnreachable", err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\t") {
		t.Errorf("%q: want one line without tabs", msg)
	}
	if got := strings.Count(msg, "connection refused"); got != 1 {
		t.Errorf("%q says connection refused %d times, want once", msg, got)
	}
	if want := "check the node's host and port"; !strings.Contains(msg, want) {
		t.Errorf("%q: want the hint %q", msg, want)
	}
}

func TestConnect_ErrNotPermitted(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], HBA: []string{
		"local all all trust",
		"host all carol 127.0.0.1/32 reject",
		"host all all 127.0.0.1/32 trust",
		"host replication alice 127.0.0.1/32 md5",
		"host replication carol 127.0.0.1/32 trust",
	}})
	c.Exec(t, "create role alice login replication password 'right'")
	c.Exec(t, "create role carol login replication")

	// postgres has no replication line in pg_hba.conf.
	_, err := Connect(testContext(t), c.ConnString("postgres"))
	if !errors.Is(err, ErrNotPermitted) {
		t.Errorf("Connect without a pg_hba entry: %v, want ErrNotPermitted", err)
	}
	if want := `add a line for database "replication"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Connect without a pg_hba entry: %v, want it to say %q", err, want)
	}

	// carol may replicate, but pg_hba.conf has no line for her ordinary
	// connections: the error says which connection, and what to add.
	t.Run("ErrNotPermittedSQL", func(t *testing.T) {
		s := fmt.Sprintf("host=%s port=%d user=carol dbname=postgres sslmode=disable", c.Host, c.Port)
		conn, err := Connect(testContext(t), s)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		conn.Close(context.Background())
		_, err = QueryServer(testContext(t), s)
		if !errors.Is(err, ErrNotPermitted) {
			t.Fatalf("QueryServer: %v, want ErrNotPermitted", err)
		}
		msg := err.Error()
		if strings.Contains(msg, "replication connection not permitted") {
			t.Errorf("%q: an ordinary connection's refusal named as a replication connection's", msg)
		}
		if want := "add a line for the node's dbname"; !strings.Contains(msg, want) {
			t.Errorf("%q: want the hint %q", msg, want)
		}
	})
	t.Run("ErrAuthentication", func(t *testing.T) {
		_, err := Connect(testContext(t), fmt.Sprintf("host=%s port=%d user=alice password=wrong sslmode=disable", c.Host, c.Port))
		if !errors.Is(err, ErrAuthentication) {
			t.Errorf("Connect with a wrong password: %v, want ErrAuthentication", err)
		}
	})
	t.Run("OK", func(t *testing.T) {
		conn, err := Connect(testContext(t), fmt.Sprintf("host=%s port=%d user=alice password=right sslmode=disable", c.Host, c.Port))
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		conn.Close(context.Background())
	})
}

// TestConnectEnglish: a superuser, and from PostgreSQL 15 a role granted
// SET on lc_messages, get lc_messages=C; an ordinary replication role,
// which the server refuses it with a FATAL (42501), is connected on a
// second attempt with the server's own lc_messages, the refusal kept; a
// role without REPLICATION fails as with Connect; lc_messages set in the
// connection string is left as it is.
func TestConnectEnglish(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major, Conf: map[string]string{"lc_messages": "C.UTF-8"}})
		c.Exec(t, "create role plain login replication")
		c.Exec(t, "create role norepl login")
		roles := []struct {
			user, extra string
			want        string // lc_messages of the connection
			refused     bool
		}{
			{"postgres", "", "C", false},
			{"plain", "", "C.UTF-8", true},
			{"postgres", "options='-c lc_messages=C.UTF-8'", "C.UTF-8", false},
		}
		if major >= 15 {
			c.Exec(t, "create role granted login replication")
			c.Exec(t, "grant set on parameter lc_messages to granted")
			roles = append(roles, struct {
				user, extra string
				want        string
				refused     bool
			}{"granted", "", "C", false})
		}
		for _, r := range roles {
			conn, err := ConnectEnglish(testContext(t), fmt.Sprintf("host=%s port=%d user=%s sslmode=disable %s", c.Host, c.Port, r.user, r.extra))
			if err != nil {
				t.Fatalf("ConnectEnglish as %s %s: %v", r.user, r.extra, err)
			}
			got, err := conn.Show(testContext(t), "lc_messages")
			if err != nil {
				t.Fatal(err)
			}
			refused := conn.EnglishRefused()
			conn.Close(context.Background())
			if got != r.want || (refused != nil) != r.refused {
				t.Errorf("ConnectEnglish as %s %s: lc_messages %q, refused %v; want %q, refused %v", r.user, r.extra, got, refused, r.want, r.refused)
			}
			if r.refused && !isCode(refused, codeInsufficientPriv) {
				t.Errorf("refusal %v, want SQLSTATE 42501", refused)
			}
		}
		_, err := ConnectEnglish(testContext(t), fmt.Sprintf("host=%s port=%d user=norepl sslmode=disable", c.Host, c.Port))
		if !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "REPLICATION attribute") {
			t.Errorf("ConnectEnglish as a role without REPLICATION: %v, want ErrNotPermitted with its hint", err)
		}
	})
}

// TestConnect_ErrParseNoPassword checks that a connection string pgconn
// cannot parse is named without its password: pgconn's own redaction
// (redactPW) misses spellings libpq accepts.
func TestConnect_ErrParseNoPassword(t *testing.T) {
	for _, cs := range []string{
		"host=127.0.0.1 port=1 password = 'TOP SECRET' sslmode=bogus",
		`host=127.0.0.1 port=1 password='it\'s TOP SECRET' sslmode=bogus`,
		"host=127.0.0.1 port=1 sslpassword=TOPSECRET sslmode=bogus",
	} {
		for name, connect := range map[string]func() error{
			"Connect":     func() error { _, err := Connect(context.Background(), cs); return err },
			"QueryServer": func() error { _, err := QueryServer(context.Background(), cs); return err },
		} {
			err := connect()
			if err == nil {
				t.Fatalf("%s(%q): no error", name, cs)
			}
			if msg := err.Error(); strings.Contains(msg, "SECRET") || !strings.Contains(msg, "sslmode is invalid") {
				t.Errorf("%s(%q): %q, want pgconn's reason without the password", name, cs, msg)
			}
		}
	}
}
