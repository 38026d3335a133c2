package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// RestoreTestOptions configure RestoreTest.
type RestoreTestOptions struct {
	Archive *archive.Archive
	Backup  string         // backup name; "" chooses by Target, as hoard restore does
	Target  restore.Target // zero: replay to the end of the archive
	// SystemID is the system identifier of the site's cluster when the
	// caller knows it: the automatic choice passes over other systems'
	// backups (restore.Options.SystemID).
	SystemID string

	// PGBinDir, when set, is the only directory searched for postgres and
	// pg_ctl. Otherwise: the directory of postgres on PATH, SitePGBinDir
	// (the site's pg_bin_directory), /usr/lib/postgresql/<major>/bin,
	// /usr/pgsql-<major>/bin and $HOARD_CACHE/pg/<major>/bin, the first
	// whose postgres is of the backup's major version.
	PGBinDir     string
	SitePGBinDir string

	// ScratchDir is the directory the scratch data directory is made in
	// (as hoard-restore-test-*); "" is the system temp directory. The
	// scratch directory is always removed; one that a killed run left
	// (no process holds its lock) is removed by the next test restore.
	ScratchDir string

	// RestoreCommand is the restore_command the restored cluster replays
	// with; "" runs this executable's wal-fetch with ConfigPath (none when
	// empty: the configuration comes from the environment) and Site.
	RestoreCommand   string
	ConfigPath, Site string

	// RunAsUser is the operating system user PostgreSQL runs as. PostgreSQL
	// refuses to run as root: when the process is root, "" means
	// "postgres". Set it only when running as root.
	RunAsUser string
	// DBUser is the role the checks connect as; "" tries postgres, then
	// the name of the user PostgreSQL runs as.
	DBUser string

	Parallel      int           // chunks downloaded at once; 0: restore's default
	ReplayTimeout time.Duration // bound on the replay; 0: none (ctx bounds it)
	Logger        zerolog.Logger
}

// Check statuses in a RestoreTestResult.
const (
	CheckOK          = "ok"
	CheckFailed      = "failed"
	CheckUnavailable = "unavailable" // the tool or extension is not available; not a failure
)

// Check is one check of the restored cluster.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// RestoreTestResult is what RestoreTest did and found.
type RestoreTestResult struct {
	Backup  string    `json:"backup"`
	PGMajor int       `json:"pg_major"`
	BinDir  string    `json:"pg_bin_dir"`
	Started time.Time `json:"started"`
	OK      bool      `json:"ok"`
	Error   string    `json:"error,omitempty"`
	// StorageFailed says that the test could not be run: the storage
	// failed to send an object the restore reads (unreachable, refusing
	// or timing out past its retries, a download cut), which says nothing
	// about the backup (Error names the object). OK is false.
	StorageFailed bool `json:"storage_failed,omitempty"`
	// ReplayedTo is where recovery ended (the switch point to the
	// timeline the restored cluster promoted to).
	ReplayedTo string  `json:"replayed_to_lsn,omitempty"`
	Checks     []Check `json:"checks"`
	// PassedOver are the backups the automatic choice passed over as
	// damaged or with a broken incremental chain (restore.Result's), newer
	// than Backup: the test then fails, whatever its checks found.
	PassedOver []PassedOver `json:"passed_over,omitempty"`
	Restore    Duration     `json:"restore_seconds"` // download and extraction
	Replay     Duration     `json:"replay_seconds"`  // server start to the end of recovery
	Checking   Duration     `json:"checks_seconds"`
	Elapsed    Duration     `json:"elapsed_seconds"`
}

// PassedOver is a backup a test restore passed over, and why.
type PassedOver struct {
	Backup string `json:"backup"`
	Error  string `json:"error"`
}

// ErrRestoreTest is returned (wrapped) when the restored cluster fails a
// check, or when PostgreSQL could not recover it.
var ErrRestoreTest = errors.New("restore test failed")

// RestoreTest restores a backup into a scratch directory, starts PostgreSQL
// of the backup's major version on it (listening on its socket in the
// scratch directory only, archiving off, hot_standby off), waits for
// recovery to end (at the target, or at the end of the archive), and
// checks the result: it accepts connections; without a target, recovery
// reached the newest archived WAL of the backup's timeline path; every
// database that allows connections answers; amcheck's bt_index_check
// passes on every btree index where the extension can be created; and,
// when data_checksums is on, pg_checksums --check passes after a clean
// stop. The server is stopped and the scratch directory removed, whatever
// happened.
//
// The result is returned even with an error: it holds the checks done and
// the durations. The error wraps ErrRestoreTest when the cluster failed a
// check or could not recover.
func RestoreTest(ctx context.Context, o RestoreTestOptions) (*RestoreTestResult, error) {
	began := time.Now()
	res := &RestoreTestResult{Started: began.UTC(), Checks: []Check{}}
	t := &restoreTest{o: o, res: res, log: o.Logger.With().Str("component", "restore-test").Logger()}
	err := t.run(ctx)
	if err != nil && ctx.Err() == nil && len(res.PassedOver) == 0 && storageFailed(err) {
		// Nothing was tested: the restore's reads are marked (run), and
		// one the storage failed says nothing about the backup. A
		// backup passed over as damaged is a finding all the same (below).
		res.StorageFailed = true
		err = storageNotRun(err)
	}
	if len(res.PassedOver) > 0 {
		// A test of an older backup proves nothing about the newest:
		// the damage the restore passed over is the finding.
		var why []string
		for _, p := range res.PassedOver {
			why = append(why, p.Error)
		}
		po := fmt.Sprintf("backup %s restored, but the automatic choice passed over newer ones, which cannot be restored: %s",
			res.Backup, strings.Join(why, "; "))
		if err == nil {
			err = fmt.Errorf("%w: %s", ErrRestoreTest, po)
		} else {
			err = fmt.Errorf("%w (%s)", err, po)
		}
	}
	res.Elapsed = Duration(time.Since(began))
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	} else {
		t.log.Info().Str("backup", res.Backup).Int64("elapsed_ms", time.Since(began).Round(time.Millisecond).Milliseconds()).Msg("restore test passed")
	}
	return res, err
}

// storageNotRun is RestoreTest's error for err, from a test whose reads
// the storage failed (storageFailed): the store's own error, which names
// the object, rather than what the restore made of it (a directory left
// incomplete, to restore again with overwrite: the scratch directory is
// removed).
func storageNotRun(err error) error {
	why := err
	if se, ok := errors.AsType[*storeError](err); ok {
		why = se
	} else if re, ok := errors.AsType[*storage.ReadError](err); ok {
		why = re
	}
	return fmt.Errorf("restore test could not be run: the storage failed, and nothing was found wrong with the backup "+
		"(run the test again once the storage answers): %w", why)
}

// restoreTest is one run of RestoreTest.
type restoreTest struct {
	o       RestoreTestOptions
	res     *RestoreTestResult
	log     zerolog.Logger
	cred    *syscall.Credential // nil: run as ourselves
	osUser  string
	scratch string
	data    string
	binDir  string
	port    int
	tcp     bool // listen on 127.0.0.1 rather than on the socket only (configure)
	dbUser  string
	// backupKey and recorded are the restored backup's control object
	// and the checksum failures its manifest records (nil: none), which
	// explain a failing pg_checksums.
	backupKey string
	recorded  *archive.ChecksumFailures
}

func (t *restoreTest) run(ctx context.Context) error {
	o := t.o
	if o.Archive == nil {
		return errors.New("restore test: no archive")
	}
	// The store's errors are marked (storeMarking), so that RestoreTest
	// tells a storage failure from a finding.
	o.Archive = marking(o.Archive)
	removeStaleScratch(o.ScratchDir, t.log)
	if err := t.runAs(); err != nil {
		return err
	}
	rc := o.RestoreCommand
	if rc == "" {
		var err error
		if rc, err = restore.WALFetchCommand(o.ConfigPath, o.Site); err != nil {
			return err
		}
	}
	// Find the binaries before downloading anything, when the backup
	// records its version. The backup is chosen as restore.Run will
	// choose it, among the authenticated backups (restore.Candidates):
	// a planted backup claiming to be the newest must not decide which
	// binaries run. binMajor is checked against the restored PG_VERSION
	// below all the same. The backups of the sites the site moved from
	// count, as restore.Run lists them.
	binMajor := 0
	if bs, err := o.Archive.ListAllBackups(ctx); err == nil {
		if b, err := restore.SelectBackup(restore.Candidates(bs, o.Backup, o.SystemID), o.Backup, o.Target); err == nil && b.PGVersion >= 10000 {
			binMajor = b.PGVersion / 10000
			if t.binDir, err = findBinDir(o.PGBinDir, o.SitePGBinDir, binMajor); err != nil {
				return err
			}
		}
	}

	scratch, lock, err := newScratch(o.ScratchDir)
	if err != nil {
		return err
	}
	t.scratch, t.data = scratch, filepath.Join(scratch, "data")
	defer func() {
		if err := os.RemoveAll(scratch); err != nil {
			t.log.Error().Err(err).Str("dir", scratch).Msg("remove scratch directory")
		}
		_ = lock.Close()
	}()

	began := time.Now()
	// Tablespaces go under the scratch directory too, never to the paths
	// the backup records: on this host those may belong to a live cluster,
	// and they come from storage.
	rr, err := restore.Run(ctx, restore.Options{
		Archive: o.Archive, TargetDir: t.data, Backup: o.Backup, Target: o.Target, SystemID: o.SystemID,
		TablespaceBaseDir: filepath.Join(scratch, "tablespaces"),
		RestoreCommand:    rc, Parallel: o.Parallel, Logger: o.Logger,
	})
	t.res.Restore = Duration(time.Since(began))
	if err != nil {
		return fmt.Errorf("%w: restore: %w", ErrRestoreTest, err)
	}
	t.res.Backup, t.res.PGMajor = rr.Backup.Name, rr.PGMajor
	for _, p := range rr.PassedOver {
		t.res.PassedOver = append(t.res.PassedOver, PassedOver{Backup: p.Backup.Name, Error: p.Err.Error()})
	}
	if rr.Manifest != nil && rr.Manifest.Hoard != nil {
		t.backupKey, t.recorded = rr.Backup.Key, rr.Manifest.Hoard.ChecksumFailures
	}
	t.log = t.log.With().Str("backup", rr.Backup.Name).Logger()
	if binMajor != rr.PGMajor {
		if t.binDir, err = findBinDir(o.PGBinDir, o.SitePGBinDir, rr.PGMajor); err != nil {
			return err
		}
	}
	t.res.BinDir = t.binDir
	chain, err := CheckContinuity(ctx, o.Archive, rr.Backup)
	if err != nil {
		return err
	}
	if err := t.configure(); err != nil {
		return err
	}

	began = time.Now()
	stop, err := t.start(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// After a clean stop below this does nothing.
		if err := stop(false); err != nil {
			t.log.Error().Err(err).Msg("stop the test server")
		}
	}()
	if err := t.waitRecovery(ctx); err != nil {
		return err
	}
	t.res.Replay = Duration(time.Since(began))
	t.log.Info().Int64("replay_ms", time.Since(began).Round(time.Millisecond).Milliseconds()).Msg("recovery done")

	began = time.Now()
	defer func() { t.res.Checking = Duration(time.Since(began)) }()
	t.checkReplay(chain)
	var failed []string
	checksums, err := t.checkDatabases(ctx)
	if err != nil {
		return err
	}
	if err := stop(true); err != nil {
		return err
	}
	if checksums {
		t.checkChecksums(ctx)
	} else {
		t.add(Check{Name: "checksums", Status: CheckUnavailable, Detail: "data_checksums is off"})
	}
	for _, c := range t.res.Checks {
		if c.Status == CheckFailed {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrRestoreTest, strings.Join(failed, "; "))
	}
	return nil
}

func (t *restoreTest) add(c Check) {
	t.res.Checks = append(t.res.Checks, c)
	t.log.Info().Str("check", c.Name).Str("status", c.Status).Str("detail", c.Detail).Msg("restore test check")
}

// runAs decides which user PostgreSQL runs as.
func (t *restoreTest) runAs() error {
	name := t.o.RunAsUser
	if os.Geteuid() != 0 {
		if cur, err := user.Current(); err == nil {
			t.osUser = cur.Username
			if name != "" && name != cur.Username {
				return fmt.Errorf("restore test: running PostgreSQL as %s needs root", name)
			}
		}
		return nil
	}
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("restore test: PostgreSQL refuses to run as root and user %s is unknown (pass --as-user): %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("restore test: user %s has ids %s:%s", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return fmt.Errorf("restore test: PostgreSQL refuses to run as root; pass --as-user with another user")
	}
	t.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	t.osUser = name
	return nil
}

// maxSocketPath is the size of sun_path on Linux: PostgreSQL refuses a
// socket path of this length or longer.
const maxSocketPath = 108

// socketPath is the path of PostgreSQL's socket for port in dir.
func socketPath(dir string, port int) string {
	return filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(port))
}

// confQuote quotes a postgresql.conf string value.
func confQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// configure makes the restored directory start as a private scratch
// server: its own access rules, a free loopback port, no archiving. The
// settings are appended to postgresql.auto.conf, after the recovery
// settings restore wrote, so they win over the backed-up configuration.
func (t *restoreTest) configure() error {
	// The server listens on a socket in the scratch directory only (no
	// TCP, which another process could take between the choice of a
	// port and the server's bind, and on which any local user could
	// connect to the copy of the data with the trust rule below). The
	// port only names the socket file; the directory is private.
	// Where the socket's path would be longer than a Unix socket's
	// (sun_path), or relative, it listens on 127.0.0.1 on a free port
	// instead.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("find a free port: %w", err)
	}
	t.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	t.tcp = !filepath.IsAbs(t.scratch) || len(socketPath(t.scratch, t.port)) >= maxSocketPath

	// The restored files are opened from the data directory without
	// following a link out of it (restore makes none but the pg_tblspc
	// ones), and the one appended to must be a regular file.
	root, err := os.OpenRoot(t.data)
	if err != nil {
		return err
	}
	defer root.Close()
	// A Debian cluster keeps postgresql.conf in /etc: the backup has none.
	if _, err := root.Lstat("postgresql.conf"); errors.Is(err, os.ErrNotExist) {
		f, err := root.OpenFile("postgresql.conf", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	hba := filepath.Join(t.scratch, "pg_hba.conf")
	ident := filepath.Join(t.scratch, "pg_ident.conf")
	rules, listen := "local all all trust\n", ""
	if t.tcp {
		rules, listen = rules+"host all all 127.0.0.1/32 trust\n", "127.0.0.1"
	}
	if err := os.WriteFile(hba, []byte(rules), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(ident, nil, 0o600); err != nil {
		return err
	}
	settings := [][2]string{
		{"listen_addresses", confQuote(listen)},
		{"port", strconv.Itoa(t.port)},
		{"unix_socket_directories", confQuote(t.scratch)},
		{"archive_mode", "off"},
		// Replay without hot standby: no need to match the primary's
		// max_connections and friends, and no connections until the end.
		{"hot_standby", "off"},
		{"hba_file", confQuote(hba)},
		{"ident_file", confQuote(ident)},
		{"logging_collector", "off"},
	}
	var b strings.Builder
	b.WriteString("\n# hoard verify --restore\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "%s = %s\n", s[0], s[1])
	}
	if fi, err := root.Lstat("postgresql.auto.conf"); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("restored postgresql.auto.conf is not a regular file: %v", err)
	}
	f, err := root.OpenFile("postgresql.auto.conf", os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(t.data, 0o700); err != nil {
		return err
	}
	if t.cred != nil {
		return filepath.Walk(t.scratch, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, int(t.cred.Uid), int(t.cred.Gid))
		})
	}
	return nil
}

// command returns a command of the PostgreSQL binaries, run as the server's
// user.
func (t *restoreTest) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(t.binDir, name), args...)
	if t.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: t.cred}
	}
	cmd.Dir = t.scratch
	return cmd
}

func (t *restoreTest) logPath() string { return filepath.Join(t.scratch, "server.log") }

// logTail returns the last lines of the server log.
func (t *restoreTest) logTail(n int) string {
	b, _ := os.ReadFile(t.logPath())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// start starts the server without waiting. The returned stop func stops it
// (fast and clean when clean is set, immediate otherwise) once; later calls
// do nothing.
func (t *restoreTest) start(ctx context.Context) (func(clean bool) error, error) {
	out, err := t.command(ctx, "pg_ctl", "start", "-D", t.data, "-W", "-s", "-l", t.logPath()).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%w: pg_ctl start: %v: %s", ErrRestoreTest, err, strings.TrimSpace(string(out)))
	}
	started, stopped := time.Now(), false
	return func(clean bool) error {
		if stopped {
			return nil
		}
		stopped = true
		mode := "immediate"
		if clean {
			mode = "fast"
		}
		t.waitPIDFile(started.Add(pidFileWait))
		// Stop even when ctx has ended.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		out, err := t.command(sctx, "pg_ctl", "stop", "-D", t.data, "-m", mode, "-w", "-t", "300", "-s").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctl stop: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}, nil
}

// pidFileWait bounds how long a stop waits for postmaster.pid (see
// waitPIDFile); the postmaster writes it before anything that takes time.
const pidFileWait = 10 * time.Second

// waitPIDFile waits, until deadline (pidFileWait after the start), for
// the postmaster started by start to write its pid to postmaster.pid.
// pg_ctl start -W returns before it does, and pg_ctl stop without the
// file finds no server: a stop right after the start (the daemon shutting
// down) left the server starting, to run on in a scratch directory about
// to be removed. The postmaster creates the file empty and writes it
// next, and pg_ctl stop refuses an empty one ("the PID file ... is
// empty"), so the wait is for the pid, not the file. A postmaster that
// failed to start writes none (or removes it), and then the wait runs
// out.
func (t *restoreTest) waitPIDFile(deadline time.Time) {
	for ; time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, ok := t.postmasterPID(); ok {
			return
		}
	}
}

// postmasterPID reads the pid on the first line of the data directory's
// postmaster.pid; ok is false while there is no file or no pid in it.
func (t *restoreTest) postmasterPID() (pid int, ok bool) {
	root, err := os.OpenRoot(t.data)
	if err != nil {
		return 0, false
	}
	defer root.Close()
	b, err := root.ReadFile("postmaster.pid")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err = strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// postmasterRunning reports whether the postmaster of the data directory
// is alive, from the pid in postmaster.pid.
func (t *restoreTest) postmasterRunning() bool {
	pid, ok := t.postmasterPID()
	return ok && syscall.Kill(pid, 0) == nil
}

// connConfig is the connection to db as user on the scratch server: its
// socket directory, or 127.0.0.1 when the socket path is too long (see
// configure). Set as fields, not in a keyword string, so that a role or
// database name with quotes or backslashes needs no quoting.
func (t *restoreTest) connConfig(user, db string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("sslmode=disable connect_timeout=10")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = t.scratch, uint16(t.port)
	if t.tcp {
		cfg.Host = "127.0.0.1"
	}
	cfg.User, cfg.Database, cfg.Fallbacks = user, db, nil
	return cfg, nil
}

// connectAs connects to db as user on the scratch server.
func (t *restoreTest) connectAs(ctx context.Context, user, db string) (*pgx.Conn, error) {
	cfg, err := t.connConfig(user, db)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// connect connects to db as the check role, choosing that role on the first
// call.
func (t *restoreTest) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	if t.dbUser != "" {
		return t.connectAs(ctx, t.dbUser, db)
	}
	users := []string{t.o.DBUser}
	if t.o.DBUser == "" {
		users = []string{"postgres"}
		if t.osUser != "" && t.osUser != "postgres" {
			users = append(users, t.osUser)
		}
	}
	var err error
	for _, u := range users {
		var c *pgx.Conn
		c, err = t.connectAs(ctx, u, db)
		if err == nil {
			t.dbUser = u
			return c, nil
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28000" { // invalid_authorization_specification: no such role
			return nil, err
		}
	}
	return nil, err
}

// waitRecovery waits until the server accepts connections and is out of
// recovery. It fails when the postmaster exits (recovery could not finish)
// or ReplayTimeout passes.
func (t *restoreTest) waitRecovery(ctx context.Context) error {
	if t.o.ReplayTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.o.ReplayTimeout)
		defer cancel()
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	began := time.Now()
	for {
		if c, err := t.connect(ctx, "postgres"); err == nil {
			var inRecovery bool
			err = c.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery)
			c.Close(ctx)
			if err == nil && !inRecovery {
				return nil
			}
		} else if t.dbUser == "" && isMissingRole(err) {
			return fmt.Errorf("%w: connect: %v (pass the role to connect as)", ErrRestoreTest, err)
		}
		// pg_ctl -W returns before postmaster.pid exists.
		if !t.postmasterRunning() && time.Since(began) > 10*time.Second {
			return fmt.Errorf("%w: PostgreSQL stopped during recovery; server log:\n%s", ErrRestoreTest, t.logTail(15))
		}
		select {
		case <-ctx.Done():
			if t.o.ReplayTimeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: recovery did not finish within %s", ErrRestoreTest, t.o.ReplayTimeout)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func isMissingRole(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "28000" && strings.Contains(pe.Message, "role")
}

// checkReplay reads where recovery ended from the history file of the
// timeline the server promoted to. Without a target, recovery must have
// replayed into the newest archived segment of the backup's path: ending
// earlier means a segment was missing or unreadable, and a real restore
// would silently lose what follows.
func (t *restoreTest) checkReplay(ch *Chain) {
	tli, data, err := newestHistory(filepath.Join(t.data, "pg_wal"))
	if err != nil || tli == 0 {
		t.add(Check{Name: "replay", Status: CheckUnavailable, Detail: fmt.Sprintf("no timeline history in pg_wal (%v)", err)})
		return
	}
	p, err := wal.ParseHistory(tli, data)
	if err != nil {
		t.add(Check{Name: "replay", Status: CheckUnavailable, Detail: err.Error()})
		return
	}
	end := p[len(p)-1].Begin
	t.res.ReplayedTo = end.String()
	if !t.o.Target.IsZero() || ch.Newest == "" {
		t.add(Check{Name: "replay", Status: CheckOK, Detail: "recovery ended at " + end.String()})
		return
	}
	newest, reachedNewest := ch.Newest, false
	// The newest may be a .partial (the segment in progress, stored by the
	// daemon at a clean stop and every wal_partial_upload_interval):
	// recovery then ends inside its segment, at the end of its data.
	if s, err := wal.ParseSegmentName(strings.TrimSuffix(newest, wal.PartialSuffix), ch.SegmentSize); err == nil {
		reachedNewest = end > s.StartLSN(ch.SegmentSize)
	}
	if reachedNewest {
		t.add(Check{Name: "replay", Status: CheckOK, Detail: fmt.Sprintf("recovery ended at %s, in the newest archived segment %s", end, newest)})
		return
	}
	why := fmt.Sprintf("recovery ended at %s, before the newest archived segment %s", end, newest)
	if len(ch.Gaps) > 0 {
		why += "; WAL missing: " + ch.Gaps[0].String()
	}
	t.add(Check{Name: "replay", Status: CheckFailed, Detail: why})
}

// newestHistory returns the highest timeline with a history file in dir
// and its contents.
func newestHistory(dir string) (uint32, []byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	var best uint32
	for _, e := range entries {
		if tli, err := wal.ParseHistoryFileName(e.Name()); err == nil {
			best = max(best, tli)
		}
	}
	if best == 0 {
		return 0, nil, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, wal.HistoryFileName(best)))
	return best, data, err
}

// checkDatabases checks every database that allows connections, and runs
// amcheck where it can. It reports whether data_checksums is on.
func (t *restoreTest) checkDatabases(ctx context.Context) (bool, error) {
	c, err := t.connect(ctx, "postgres")
	if err != nil {
		t.add(Check{Name: "connect", Status: CheckFailed, Detail: err.Error()})
		return false, nil
	}
	defer c.Close(context.WithoutCancel(ctx))
	t.add(Check{Name: "connect", Status: CheckOK, Detail: "as role " + t.dbUser})
	var checksums string
	if err := c.QueryRow(ctx, "show data_checksums").Scan(&checksums); err != nil {
		return false, fmt.Errorf("%w: show data_checksums: %v", ErrRestoreTest, err)
	}
	rows, err := c.Query(ctx, "select datname from pg_database where datallowconn order by datname")
	if err != nil {
		return false, fmt.Errorf("%w: list databases: %v", ErrRestoreTest, err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return false, fmt.Errorf("%w: list databases: %v", ErrRestoreTest, err)
	}
	var unreadable []string
	indexes, amUnavailable := 0, ""
	var amFailures []string
	for _, db := range dbs {
		n, unavailable, failures, err := t.checkDatabase(ctx, db)
		if err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s (%v)", db, err))
			continue
		}
		indexes += n
		if unavailable != "" {
			amUnavailable = unavailable
		}
		amFailures = append(amFailures, failures...)
	}
	if len(unreadable) > 0 {
		t.add(Check{Name: "databases", Status: CheckFailed, Detail: "unreadable: " + strings.Join(unreadable, ", ")})
	} else {
		t.add(Check{Name: "databases", Status: CheckOK, Detail: fmt.Sprintf("%d readable", len(dbs))})
	}
	switch {
	case len(amFailures) > 0:
		t.add(Check{Name: "amcheck", Status: CheckFailed, Detail: strings.Join(amFailures, "; ")})
	case amUnavailable != "":
		t.add(Check{Name: "amcheck", Status: CheckUnavailable, Detail: amUnavailable})
	default:
		t.add(Check{Name: "amcheck", Status: CheckOK, Detail: fmt.Sprintf("%d btree indexes checked", indexes)})
	}
	return checksums == "on", nil
}

// btreeIndexes lists the btree indexes amcheck can check: valid, ready,
// not of temporary tables.
const btreeIndexes = `select c.oid::regclass::text, c.oid from pg_index i
	join pg_class c on c.oid = i.indexrelid
	join pg_am am on am.oid = c.relam
	where am.amname = 'btree' and c.relpersistence <> 't' and i.indisvalid and i.indisready
	order by 1`

// checkDatabase connects to db and runs bt_index_check on its btree
// indexes when amcheck can be created. It returns the number of indexes
// checked, why amcheck was unavailable, and the indexes that failed.
func (t *restoreTest) checkDatabase(ctx context.Context, db string) (int, string, []string, error) {
	c, err := t.connect(ctx, db)
	if err != nil {
		return 0, "", nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "select 1"); err != nil {
		return 0, "", nil, err
	}
	if _, err := c.Exec(ctx, "create extension if not exists amcheck"); err != nil {
		return 0, fmt.Sprintf("create extension amcheck in %s: %v", db, err), nil, nil
	}
	rows, err := c.Query(ctx, btreeIndexes)
	if err != nil {
		return 0, "", nil, err
	}
	type index struct {
		name string
		oid  uint32
	}
	idx, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var i index
		err := r.Scan(&i.name, &i.oid)
		return i, err
	})
	if err != nil {
		return 0, "", nil, err
	}
	var failures []string
	for _, i := range idx {
		if _, err := c.Exec(ctx, "select bt_index_check($1::oid::regclass)", i.oid); err != nil {
			if ctx.Err() != nil {
				return 0, "", nil, ctx.Err()
			}
			failures = append(failures, fmt.Sprintf("%s.%s: %v", db, i.name, err))
		}
	}
	return len(idx), "", failures, nil
}

// checkChecksums runs pg_checksums --check on the stopped cluster.
func (t *restoreTest) checkChecksums(ctx context.Context) {
	if _, err := os.Stat(filepath.Join(t.binDir, "pg_checksums")); err != nil {
		t.add(Check{Name: "checksums", Status: CheckUnavailable, Detail: "no pg_checksums in " + t.binDir})
		return
	}
	out, err := t.command(ctx, "pg_checksums", "--check", "-D", t.data).CombinedOutput()
	if err != nil {
		detail := fmt.Sprintf("pg_checksums: %v: %s", err, lastLines(string(out), 5))
		if t.recorded != nil && t.recorded.Blocks > 0 {
			// The pages were damaged in the source cluster: the
			// backup holds them as read, and restored them so.
			detail += "; the backup recorded them when it was taken, the damage is the source cluster's, not the archive's: " +
				checksumProblem(t.backupKey, t.recorded)
		}
		t.add(Check{Name: "checksums", Status: CheckFailed, Detail: detail})
		return
	}
	t.add(Check{Name: "checksums", Status: CheckOK, Detail: "pg_checksums --check passed"})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}
