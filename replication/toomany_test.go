package replication

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestConnect_TooManyConnections fills a real server's connection slots
// one at a time and makes the ordinary connection hoard check and the
// basebackups make (QuerySetup) as a role without privileges: it meets
// the slots reserved by reserved_connections, then those reserved by
// superuser_reserved_connections, and a superuser meets max_connections.
// Each refusal (SQLSTATE 53300) is ErrTooManyConnections and names the
// setting at fault.
func TestConnect_TooManyConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	if major < 16 {
		t.Skip("reserved_connections needs PostgreSQL 16")
	}
	c := pgtest.Start(t, pgtest.Options{Major: major, Conf: map[string]string{
		"max_connections": "6", "superuser_reserved_connections": "2", "reserved_connections": "1"}})
	c.Exec(t, "create role bob login replication")
	ctx := context.Background()
	bob := "host=" + c.Host + " port=" + strconv.Itoa(c.Port) + " user=bob dbname=postgres sslmode=disable"
	wants := map[string]string{
		"reserved_connections":           `pg_use_reserved_connections`,
		"superuser_reserved_connections": `SUPERUSER`,
	}
	seen := map[string]bool{}
	first, err := pgconn.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	held := 1
	// settle waits until the server's client sessions are those held: a
	// session that ended (bob's refused ones too) holds its slot until its
	// process has exited, which would shift what the next attempt meets.
	settle := func() {
		t.Helper()
		for range 100 {
			rr := first.ExecParams(ctx, "select count(*) from pg_stat_activity where backend_type = 'client backend'", nil, nil, nil, nil).Read()
			if rr.Err != nil {
				t.Fatal(rr.Err)
			}
			if string(rr.Rows[0][0]) == strconv.Itoa(held) {
				time.Sleep(200 * time.Millisecond) // its slot goes back after pg_stat_activity forgets it
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("the server's sessions did not settle at %d", held)
	}
	for range 8 {
		settle()
		_, err := QuerySetup(ctx, bob, "")
		if err != nil {
			if !errors.Is(err, ErrTooManyConnections) {
				t.Fatalf("bob: %v: want ErrTooManyConnections", err)
			}
			for setting, msg := range wants {
				if strings.Contains(err.Error(), msg) {
					seen[setting] = true
					if !strings.Contains(err.Error(), "raise "+setting) && !strings.Contains(err.Error(), "lower "+setting) {
						t.Errorf("bob: %v: want the hint to name %s", err, setting)
					}
				}
			}
		}
		// One more session of the superuser.
		settle()
		h, err := pgconn.Connect(ctx, c.ConnString("postgres"))
		if err == nil {
			held++
			defer h.Close(ctx)
			continue
		}
		_, err = QuerySetup(ctx, c.ConnString("postgres"), "")
		if !errors.Is(err, ErrTooManyConnections) || !strings.Contains(err.Error(), "too many clients") ||
			!strings.Contains(err.Error(), "raise max_connections") {
			t.Errorf("postgres: %v: want ErrTooManyConnections saying to raise max_connections", err)
		}
		seen["max_connections"] = true
		break
	}
	for _, s := range []string{"reserved_connections", "superuser_reserved_connections", "max_connections"} {
		if !seen[s] {
			t.Errorf("no refusal for %s seen", s)
		}
	}
}
