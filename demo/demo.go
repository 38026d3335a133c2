package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configure Run.
type Options struct {
	// Hoard is the hoard binary the tour runs. It is copied into the demo
	// directory, where the server's user can run it as archive_command.
	Hoard string
	// PGBin is the directory of initdb, pg_ctl and postgres; empty finds
	// one (FindPGBin).
	PGBin string
	// Cache is where `task deps` installs PostgreSQL builds ($HOARD_CACHE).
	Cache string
	// Keep leaves the directory, with both clusters stopped, and prints
	// commands to look around.
	Keep bool
	// Load is how long each pgbench-like load runs; zero means 2 s.
	Load time.Duration
	// Out receives the tour, Err hoard's logs and its progress bar.
	Out, Err io.Writer
}

// site is the demo's backup site.
const site = "demo"

// Load clients and rows written around the recorded point.
const (
	loadClients  = 4
	ordersBefore = 500 // each of: before the backup, after it and before the point
	ordersAfter  = 1000
)

// tour is one run of the demo.
type tour struct {
	o       Options
	out     io.Writer
	bin     PGBin
	user    serverUser
	env     []string
	dir     string
	hoard   string // the copy in dir/bin
	config  string
	step    int
	primary *cluster
	copy    *cluster
	point   time.Time // the recorded point in time, UTC
}

// Run shows hoard's whole job on a throwaway cluster: archive WAL through
// wal-push, check the setup, take a basebackup, restore it to a point in time into a second
// cluster and show that the rows written after that point are absent, list
// and verify the archive. Everything lives in one temporary directory,
// removed at the end unless o.Keep. A restore that does not match is an
// error.
func Run(ctx context.Context, o Options) (err error) {
	began := time.Now()
	if o.Load == 0 {
		o.Load = 2 * time.Second
	}
	t := &tour{o: o, out: o.Out}
	if t.bin, err = FindPGBin(o.PGBin, o.Cache); err != nil {
		return err
	}
	if t.user, err = findServerUser(); err != nil {
		return err
	}
	// hoard's info logs would drown the tour: its commands print what
	// they did, and warnings still show.
	t.env = append(cleanEnv(), "HOARD_LOG_LEVEL=warn")
	if t.dir, err = os.MkdirTemp("", "hoard-demo-"); err != nil {
		return fmt.Errorf("create the demo directory: %w", err)
	}
	defer func() {
		err = errors.Join(err, t.finish(ctx, err, began))
	}()
	if err := t.setUp(); err != nil {
		return err
	}

	t.printf("hoard demo: a throwaway PostgreSQL backed up by hoard and restored to a point in time.\n\n")
	t.printf("PostgreSQL %s from %s (%s), run as %s.\n", t.bin.Version, t.bin.Dir, t.bin.From, t.user.name)
	t.printf("Everything happens in %s, removed at the end (--keep keeps it).\n", t.dir)
	t.printf("Each hoard command is printed before it runs (with HOARD_LOG_LEVEL=warn: info logs left out).\n")

	steps := []func(context.Context) error{
		t.startPrimary, t.configure, t.work, t.basebackup, t.pointInTime, t.restore, t.inspect,
	}
	for _, s := range steps {
		if err := s(ctx); err != nil {
			return err
		}
	}
	return nil
}

// setUp makes the directory tree, owned by the server's user, and copies
// the hoard binary into it.
func (t *tour) setUp() error {
	// archive is the store, made first as the quick start asks: hoard
	// check fails on a local store whose directory does not exist.
	for _, d := range []string{"bin", "run", "archive"} {
		if err := os.Mkdir(filepath.Join(t.dir, d), 0o700); err != nil {
			return err
		}
	}
	if err := os.Chmod(t.dir, 0o755); err != nil {
		return err
	}
	if t.user.cred != nil {
		if err := traversable(t.dir); err != nil {
			return err
		}
	}
	t.hoard = filepath.Join(t.dir, "bin", "hoard")
	if err := copyFile(t.o.Hoard, t.hoard, 0o755); err != nil {
		return fmt.Errorf("copy the hoard binary: %w", err)
	}
	t.config = filepath.Join(t.dir, "hoard.json")
	t.primary = &cluster{bin: t.bin, user: t.user, env: t.env,
		dataDir: filepath.Join(t.dir, "primary"), sockDir: filepath.Join(t.dir, "run"), logFile: filepath.Join(t.dir, "primary.log")}
	t.copy = &cluster{bin: t.bin, user: t.user, env: t.env,
		dataDir: filepath.Join(t.dir, "restored"), sockDir: filepath.Join(t.dir, "run"), logFile: filepath.Join(t.dir, "restored.log")}
	return t.user.own(t.dir)
}

// startPrimary creates the cluster to protect and starts it archiving
// through hoard wal-push.
func (t *tour) startPrimary(ctx context.Context) error {
	t.heading("A PostgreSQL cluster to protect")
	if err := t.primary.initdb(ctx); err != nil {
		return err
	}
	archiveCommand := fmt.Sprintf("%s --config %s wal-push %%p", t.hoard, t.config)
	err := t.primary.appendConf([][2]string{
		{"archive_mode", "on"},
		{"archive_command", archiveCommand},
		{"wal_level", "replica"},
		{"logging_collector", "off"},
		// A throwaway cluster on a shared machine: no need to wait for
		// its disk. hoard's own writes (wal-push) are still fsynced.
		{"fsync", "off"},
	})
	if err != nil {
		return err
	}
	if err := t.primary.start(ctx); err != nil {
		return err
	}
	t.printf("initdb made %s; the server runs on port %d.\n", t.primary.dataDir, t.primary.port)
	t.printf("PostgreSQL hands every WAL segment it fills to hoard, which compresses, encrypts and\n")
	t.printf("stores it:\n")
	t.printf("    archive_mode = on\n    archive_command = '%s'\n", archiveCommand)
	return nil
}

// configure writes hoard's configuration and makes a key pair.
func (t *tour) configure(ctx context.Context) error {
	t.heading("hoard's configuration")
	httpPort, err := freePort()
	if err != nil {
		return err
	}
	cfg := map[string]any{
		"backup_location": filepath.Join(t.dir, "state"),
		// No other hoard daemon answers here: basebackup takes the
		// backup itself.
		"http_port": httpPort,
		"backup_sites": map[string]any{
			site: map[string]any{
				"active_backup_mode":    "archive_command",
				"basebackup_chunk_size": 8 << 20,
				"nodes": []any{map[string]any{
					"host": t.primary.sockDir, "port": t.primary.port, "user": "postgres", "dbname": "postgres",
				}},
				"object_storage": map[string]any{"storage_type": "local", "directory": filepath.Join(t.dir, "archive")},
			},
		},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(t.config, append(data, '\n'), 0o600); err != nil {
		return err
	}
	if err := t.user.own(t.config); err != nil {
		return err
	}
	t.printf("PGHoard's JSON format: one site, %q, whose WAL arrives through archive_command, and\n", site)
	t.printf("a store in a local directory (S3, GCS, Azure, Swift and SFTP work the same).\n%s:\n", t.config)
	t.printf("%s\n", indent(string(data), "    "))
	t.printf("A fresh RSA key pair makes every stored object encrypted (the private key is only\n")
	t.printf("needed to restore):\n")
	if err := t.run(ctx, "create-keys", "--key-id", "demo-key"); err != nil {
		return err
	}
	t.printf("\nA check of the whole setup (keys, storage, PostgreSQL's settings, the archive), one\n")
	t.printf("line per check with what to fix; --archive-switch ends the current WAL segment and\n")
	t.printf("waits until the archive holds it:\n")
	return t.run(ctx, "check", "--archive-switch")
}

// work fills the primary with pgbench's tables and a first batch of
// orders, under load.
func (t *tour) work(ctx context.Context) error {
	t.heading("Some work for the database")
	conn := t.primary.connString()
	if err := initLoad(ctx, conn); err != nil {
		return fmt.Errorf("create pgbench's tables: %w", err)
	}
	err := execSQL(ctx, conn,
		"CREATE TABLE orders (id serial PRIMARY KEY, phase text NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())",
		fmt.Sprintf("INSERT INTO orders (phase) SELECT 'before' FROM generate_series(1, %d)", ordersBefore))
	if err != nil {
		return err
	}
	n, err := runLoad(ctx, conn, loadClients, t.o.Load)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	t.printf("pgbench's tables (%d accounts) and %d orders, then pgbench's transaction from %d\n", loadAccounts, ordersBefore, loadClients)
	t.printf("clients for %s, over SQL: %d transactions (%.0f per second).\n", t.o.Load, n, float64(n)/t.o.Load.Seconds())
	return nil
}

// basebackup takes the backup.
func (t *tour) basebackup(ctx context.Context) error {
	t.heading("A basebackup")
	t.printf("Over the replication protocol, in chunks, each compressed and encrypted (--fast: an\n")
	t.printf("immediate checkpoint rather than one spread over minutes):\n")
	return t.run(ctx, "basebackup", "--fast")
}

// pointInTime writes orders that the restore must bring back, records the
// time, and writes more that it must not.
func (t *tour) pointInTime(ctx context.Context) error {
	t.heading("A point in time, then more writes")
	conn := t.primary.connString()
	if err := execSQL(ctx, conn, fmt.Sprintf("INSERT INTO orders (phase) SELECT 'before' FROM generate_series(1, %d)", ordersBefore)); err != nil {
		return err
	}
	var at time.Time
	if err := t.query(ctx, conn, "SELECT clock_timestamp()", &at); err != nil {
		return err
	}
	t.point = at.UTC()
	// Every later commit is stamped after the point.
	time.Sleep(10 * time.Millisecond)
	if err := execSQL(ctx, conn, fmt.Sprintf("INSERT INTO orders (phase) SELECT 'after' FROM generate_series(1, %d)", ordersAfter)); err != nil {
		return err
	}
	n, err := runLoad(ctx, conn, loadClients, t.o.Load)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	seg, err := t.switchAndWaitArchived(ctx)
	if err != nil {
		return err
	}
	t.printf("%d more orders, written after the backup: only the WAL has them.\n", ordersBefore)
	t.printf("The point in time: %s\n", t.point.Format(time.RFC3339Nano))
	t.printf("Then %d orders and %d pgbench transactions that a restore to the point must not show.\n", ordersAfter, n)
	t.printf("A WAL switch closes the segment holding them; the archiver has stored everything up to\n")
	t.printf("%s through hoard wal-push.\n", seg)
	return nil
}

// switchAndWaitArchived closes the current WAL segment and waits until
// archive_command has stored it.
func (t *tour) switchAndWaitArchived(ctx context.Context) (string, error) {
	conn, err := pgx.Connect(ctx, t.primary.connString())
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var seg string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())").Scan(&seg); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
		return "", err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var last, failed string
		err := conn.QueryRow(ctx, "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') FROM pg_stat_archiver").Scan(&last, &failed)
		if err != nil {
			return "", err
		}
		if last >= seg {
			return seg, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("segment %s was not archived within a minute (last archived %q, last failed %q); server log:\n%s",
				seg, last, failed, tail(t.primary.log(), 20))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// restore restores the backup to the recorded point into a second
// cluster, starts it, and compares its orders with the primary's.
func (t *tour) restore(ctx context.Context) error {
	t.heading("Restore to that point, into a second cluster")
	t.printf("hoard picks the newest backup that ended before the point, fetches its chunks in\n")
	t.printf("parallel and writes the recovery settings (--archive-mode off: this copy must not\n")
	t.printf("archive into the primary's site):\n")
	err := t.run(ctx, "restore", "--target-dir", t.copy.dataDir, "--target-time", t.point.Format(time.RFC3339Nano), "--archive-mode", "off")
	if err != nil {
		return err
	}
	began := time.Now()
	if err := t.copy.start(ctx); err != nil {
		return err
	}
	if err := t.waitPromoted(ctx); err != nil {
		return err
	}
	t.printf("The demo starts it (pg_ctl start, as %s) on port %d. PostgreSQL fetched the WAL from\n", t.user.name, t.copy.port)
	t.printf("the archive with hoard wal-fetch (its restore_command), replayed it up to the point and\n")
	t.printf("was promoted, in %s.\n\n", time.Since(began).Round(100*time.Millisecond))

	count := func(c *cluster) (before, after int64, err error) {
		err = t.query(ctx, c.connString(),
			"SELECT count(*) FILTER (WHERE phase = 'before'), count(*) FILTER (WHERE phase = 'after') FROM orders", &before, &after)
		return before, after, err
	}
	pb, pa, err := count(t.primary)
	if err != nil {
		return fmt.Errorf("count the primary's orders: %w", err)
	}
	rb, ra, err := count(t.copy)
	if err != nil {
		return fmt.Errorf("count the restored orders: %w", err)
	}
	t.printf("    orders             before the point   after the point\n")
	t.printf("    primary            %16d   %15d\n", pb, pa)
	t.printf("    restored copy      %16d   %15d\n", rb, ra)
	if rb != pb || ra != 0 || pa != ordersAfter {
		return fmt.Errorf("the restored cluster does not match the point in time: %d orders before it (want %d), %d after (want 0)", rb, pb, ra)
	}
	t.printf("\nEvery order written before the point is back, and none written after it.\n")
	return nil
}

// waitPromoted waits until the restored cluster has finished recovery.
func (t *tour) waitPromoted(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var inRecovery bool
		err := t.query(ctx, t.copy.connString(), "SELECT pg_is_in_recovery()", &inRecovery)
		if err == nil && !inRecovery {
			return nil
		}
		if _, statErr := os.Stat(filepath.Join(t.copy.dataDir, "postmaster.pid")); statErr != nil || time.Now().After(deadline) {
			return fmt.Errorf("the restored cluster did not finish recovery (%v); server log:\n%s", err, tail(t.copy.log(), 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// inspect lists and verifies the archive.
func (t *tour) inspect(ctx context.Context) error {
	t.heading("What the archive holds")
	t.printf("The backups:\n")
	if err := t.run(ctx, "list"); err != nil {
		return err
	}
	t.printf("\nA check that every backup is restorable: its chunks are all there and the WAL from\n")
	t.printf("its start onwards has no gap (--full also decrypts and decompresses everything):\n")
	return t.run(ctx, "verify")
}

// finish stops the clusters and removes the directory (unless Keep), then
// says how it went.
func (t *tour) finish(ctx context.Context, runErr error, began time.Time) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, c := range []*cluster{t.copy, t.primary} {
		if c != nil {
			errs = append(errs, c.stop(ctx, t.o.Keep))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if t.o.Keep {
		t.keepHints(runErr)
		return nil
	}
	if err := os.RemoveAll(t.dir); err != nil {
		return fmt.Errorf("remove %s: %w", t.dir, err)
	}
	if runErr == nil {
		t.printf("\nThe whole tour took %s. Removed %s.\n", time.Since(began).Round(time.Second), t.dir)
	}
	return nil
}

// keepHints prints what the kept directory holds and how to look at it.
func (t *tour) keepHints(runErr error) {
	if runErr == nil {
		t.printf("\nThe whole tour ran. ")
	}
	p := t.user.prefix()
	pgCtl := filepath.Join(t.bin.Dir, "pg_ctl")
	t.printf("Kept %s, both clusters stopped. To look around:\n", t.dir)
	t.printf("    cd %s\n", t.dir)
	t.printf("    %sbin/hoard --config hoard.json list\n", p)
	t.printf("    %sbin/hoard --config hoard.json object ls %s/xlog/ -l    # WAL and its metadata\n", p, site)
	t.printf("    cat archive/%s/basebackup/*.metadata                    # a backup's metadata, as PGHoard stores it\n", site)
	port := t.copy.port // free a moment ago
	if port == 0 {
		port = 5433
	}
	t.printf("    %s%s -D restored -l restored.log -o \"-p %d -k %s\" start\n", p, pgCtl, port, t.primary.sockDir)
	t.printf("    psql -h %s -p %d -U postgres -c 'SELECT phase, count(*) FROM orders GROUP BY 1'\n", t.primary.sockDir, port)
	t.printf("    %s%s -D restored stop\n", p, pgCtl)
	t.printf("    rm -rf %s\n", t.dir)
}

// run runs hoard with the demo's configuration, as the server's user,
// printing the command first.
func (t *tour) run(ctx context.Context, args ...string) error {
	full := append([]string{"--config", t.config}, args...)
	t.printf("$ hoard %s\n", strings.Join(full, " "))
	cmd := t.user.command(ctx, t.env, t.hoard, full...)
	cmd.Dir = t.dir
	cmd.Stdout, cmd.Stderr = t.out, t.o.Err
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hoard %s: %w", args[0], err)
	}
	return nil
}

// execSQL runs SQL statements on connString, one after the other.
func execSQL(ctx context.Context, connString string, sql ...string) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// query runs one single-row query on connString.
func (t *tour) query(ctx context.Context, connString, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

func (t *tour) heading(title string) {
	t.step++
	t.printf("\n[%d/7] %s\n", t.step, title)
}

func (t *tour) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(t.out, format, args...)
}

// cleanEnv is our environment without libpq's PG* variables and hoard's
// HOARD_* ones, which would point the servers' tools and hoard elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "HOARD_") {
			env = append(env, kv)
		}
	}
	return env
}

// traversable checks that the server's user can reach dir: every parent
// must be searchable by others, as /tmp is.
func traversable(dir string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by other users, so PostgreSQL's user cannot reach %s: set TMPDIR to a directory it can reach, such as /tmp", p, dir)
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

// copyFile copies src to dst with mode perm.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix)
}
