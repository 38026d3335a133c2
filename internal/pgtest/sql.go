package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// queryTimeout bounds each statement the helpers run.
const queryTimeout = 2 * time.Minute

// ConnString returns a keyword/value connection string for database db,
// as user postgres over loopback TCP without TLS.
func (c *Cluster) ConnString(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.Host, c.Port, db)
}

// URI returns a postgres:// URI for database db.
func (c *Cluster) URI(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     fmt.Sprintf("%s:%d", c.Host, c.Port),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Connect opens a pgx connection to database db, closed when the test
// ends.
func (c *Cluster) Connect(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString(db))
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", db, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs sql (with optional arguments) in database postgres on a new
// connection. Statements that cannot run in a transaction block (CREATE
// DATABASE, CREATE TABLESPACE, VACUUM) work when given without arguments.
func (c *Cluster) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	c.withConn(t, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	}, sql)
}

// QueryRow runs a query that returns exactly one row and returns that
// row's values as pgx decodes them (int64, string, bool, pgtype values...).
func (c *Cluster) QueryRow(t testing.TB, sql string, args ...any) []any {
	t.Helper()
	rows := c.Query(t, sql, args...)
	if len(rows) != 1 {
		t.Fatalf("pgtest: %s: got %d rows, want 1", sql, len(rows))
	}
	return rows[0]
}

// Query runs a query and returns all rows' values.
func (c *Cluster) Query(t testing.TB, sql string, args ...any) [][]any {
	t.Helper()
	var out [][]any
	c.withConn(t, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	}, sql)
	return out
}

// Scan runs a query that returns one row and scans it into dest, as
// pgx.Row.Scan does.
func (c *Cluster) Scan(t testing.TB, sql string, dest ...any) {
	t.Helper()
	c.withConn(t, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql).Scan(dest...)
	}, sql)
}

// QueryString runs a query that returns one row of one column and returns
// its text form (the query may cast: "select pg_current_wal_lsn()::text").
func (c *Cluster) QueryString(t testing.TB, sql string, args ...any) string {
	t.Helper()
	var s string
	c.withConn(t, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql, args...).Scan(&s)
	}, sql)
	return s
}

func (c *Cluster) withConn(t testing.TB, fn func(context.Context, *pgx.Conn) error, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if err := fn(ctx, conn); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// WaitReady waits until the server accepts connections and answers a
// query, and fails the test after two minutes.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	c.poll(t, "accept connections", 2*time.Minute, func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		_, err := conn.Exec(ctx, "select 1")
		return err == nil, err
	})
}

// WaitTrue waits until sql (with args), a query of one boolean, returns
// true, and fails the test after timeout.
func (c *Cluster) WaitTrue(t testing.TB, timeout time.Duration, sql string, args ...any) {
	t.Helper()
	c.poll(t, "make "+sql+" true", timeout, func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		var ok bool
		err := conn.QueryRow(ctx, sql, args...).Scan(&ok)
		return err == nil && ok, err
	})
}

// WaitRecoveryDone waits until pg_is_in_recovery() is false, and fails the
// test after timeout.
func (c *Cluster) WaitRecoveryDone(t testing.TB, timeout time.Duration) {
	t.Helper()
	c.poll(t, "end recovery", timeout, func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		var in bool
		err := conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&in)
		return err == nil && !in, err
	})
}

// poll calls fn on a fresh connection every 100ms until it reports done,
// and fails the test with the last error after timeout.
func (c *Cluster) poll(t testing.TB, what string, timeout time.Duration, fn func(context.Context, *pgx.Conn) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
		if err == nil {
			var done bool
			done, err = fn(ctx, conn)
			conn.Close(ctx)
			if done {
				cancel()
				return
			}
		}
		cancel()
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pgtest: PostgreSQL %d did not %s within %v (last error: %v)\n%s", c.Major, what, timeout, last, tail(c.Log(), 40))
}
