package pgtest

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
)

// Options describe the cluster Start creates.
type Options struct {
	// Major is the PostgreSQL major version (13 to 18). Zero means
	// DebianMajor when Debian is set.
	Major int
	// Debian uses Debian's PostgreSQL 15 (DebianBinDir) instead of the npm
	// build of the same major.
	Debian bool
	// Conf holds extra postgresql.conf settings, written after the
	// harness's own so they win (archive_mode, archive_command, ...).
	// Values are quoted by the harness.
	Conf map[string]string
	// DataChecksums runs initdb with --data-checksums. Without it, majors
	// 18 and later get --no-data-checksums, so every major starts alike.
	DataChecksums bool
	// WALSegmentSizeMB is initdb's --wal-segsize; zero keeps the default
	// (16 MB).
	WALSegmentSizeMB int
	// InitDBArgs are extra initdb arguments.
	InitDBArgs []string
	// Fsync keeps fsync on; by default the harness turns it off for speed.
	Fsync bool
	// HBA, when not nil, replaces the harness's pg_hba.conf lines, which
	// trust every local and loopback connection, replication included.
	HBA []string
	// Listen, when not nil, is where the server listens, written in
	// postgresql.conf (so that its backups carry it) instead of the
	// harness's free loopback port and private socket directory on
	// pg_ctl's command line.
	Listen *Listen
}

// Listen is where a server listens, in its configuration's terms.
type Listen struct {
	Port       int
	Addresses  string // listen_addresses: "" for no TCP
	SocketDirs string // unix_socket_directories: "" for no Unix socket
}

// host is where to connect to a server listening at l: the first of its
// addresses ("*": 127.0.0.1), else its first socket directory.
func (l Listen) host() string {
	list := l.Addresses
	if list == "" {
		list = l.SocketDirs
	}
	h, _, _ := strings.Cut(list, ",")
	if h = strings.TrimSpace(h); h == "*" {
		h = "127.0.0.1"
	}
	return h
}

// DefaultHBA are the pg_hba.conf lines of a harness cluster: trust for every
// local and loopback connection, replication included.
var DefaultHBA = []string{
	"local all all trust",
	"local replication all trust",
	"host all all 127.0.0.1/32 trust",
	"host replication all 127.0.0.1/32 trust",
	"host all all ::1/128 trust",
	"host replication all ::1/128 trust",
}

// Cluster is a running (or stopped) PostgreSQL cluster owned by one test.
type Cluster struct {
	Major     int    // PostgreSQL major version
	BinDir    string // directory of initdb, pg_ctl and postgres
	DataDir   string // the data directory
	Port      int    // TCP port on Host
	Host      string // always 127.0.0.1
	SocketDir string // the private unix socket directory

	logPath string
	// ownListen: the server listens where its configuration says, with
	// pg_ctl's -o serverOpts and not the harness's port, socket
	// directory and listen_addresses; Host and Port say where.
	ownListen  bool
	serverOpts string
}

// startTimeout bounds pg_ctl's waits. A restored cluster may replay a lot
// of WAL before it accepts connections.
const startTimeout = 300 * time.Second

// Start creates a new cluster with initdb, configures it for replication
// tests and starts it on a free loopback port. The cluster is stopped and
// removed when the test ends. Start skips the test with -short and when the
// binaries are missing (fails instead under HOARD_TEST_STRICT=1).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("pgtest: -short skips tests that start PostgreSQL")
	}
	if opts.Major == 0 && opts.Debian {
		opts.Major = DebianMajor
	}
	if !slices.Contains(AllVersions, opts.Major) {
		t.Fatalf("pgtest: unsupported PostgreSQL major %d", opts.Major)
	}
	bin := BinDir(t, opts.Major, opts.Debian)
	dir := TempDir(t)
	c := &Cluster{
		Major:     opts.Major,
		BinDir:    bin,
		DataDir:   filepath.Join(dir, "data"),
		Host:      "127.0.0.1",
		SocketDir: dir,
		logPath:   filepath.Join(dir, "server.log"),
	}

	args := []string{"-D", c.DataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"}
	switch {
	case opts.DataChecksums:
		args = append(args, "--data-checksums")
	case opts.Major >= 18:
		args = append(args, "--no-data-checksums")
	}
	if opts.WALSegmentSizeMB != 0 {
		args = append(args, "--wal-segsize="+strconv.Itoa(opts.WALSegmentSizeMB))
	}
	args = append(args, opts.InitDBArgs...)
	if out, err := c.command("initdb", args...).CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}

	conf := map[string]string{
		"wal_level":             "replica",
		"max_wal_senders":       "10",
		"max_replication_slots": "10",
		"max_connections":       "30",
		"logging_collector":     "off",
		"fsync":                 "off",
	}
	if opts.Fsync {
		conf["fsync"] = "on"
	}
	if l := opts.Listen; l != nil {
		conf["port"] = strconv.Itoa(l.Port)
		conf["listen_addresses"] = l.Addresses
		conf["unix_socket_directories"] = l.SocketDirs
		c.Port, c.Host, c.ownListen = l.Port, l.host(), true
	}
	var b strings.Builder
	b.WriteString("\n# pgtest\n")
	writeConf(&b, conf)
	writeConf(&b, opts.Conf)
	appendFile(t, filepath.Join(c.DataDir, "postgresql.conf"), b.String())

	hba := DefaultHBA
	if opts.HBA != nil {
		hba = opts.HBA
	}
	writeFile(t, filepath.Join(c.DataDir, "pg_hba.conf"), strings.Join(hba, "\n")+"\n")

	t.Cleanup(func() { c.cleanup(t) })
	c.Start(t)
	return c
}

// StartDataDir starts an existing data directory, such as a restored
// backup, with the npm build of the major version. It gives the directory to
// the server's user, sets mode 0700, makes its parent directories under the
// system temp dir traversable (t.TempDir's are mode 0700), appends conf to
// postgresql.auto.conf (so it wins over postgresql.conf), and waits until
// the server accepts connections; use WaitRecoveryDone to wait for the end
// of recovery. The server is stopped when the test ends; the directory is
// left to its owner.
func StartDataDir(t testing.TB, major int, dataDir string, conf map[string]string) *Cluster {
	t.Helper()
	c, err := TryStartDataDir(t, major, dataDir, conf)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return c
}

// TryStartDataDir is StartDataDir for a directory that may not start (a
// recovery expected to fail): it returns pg_ctl's error, with the server
// log's new lines, instead of failing the test. c.Log() has the whole log.
func TryStartDataDir(t testing.TB, major int, dataDir string, conf map[string]string) (*Cluster, error) {
	t.Helper()
	return startDataDir(t, major, dataDir, conf, nil, "")
}

// StartDataDirListening starts an existing data directory as StartDataDir
// does, but with pg_ctl's -o serverOpts alone (what hoard restore's summary
// tells a user to run): the server listens where its configuration and
// serverOpts say, and at says where that is. Should something take the
// port before the server binds it, the server starts on another free port
// (see tryStart): c.Port says which.
func StartDataDirListening(t testing.TB, major int, dataDir, serverOpts string, at Listen) *Cluster {
	t.Helper()
	c, err := startDataDir(t, major, dataDir, nil, &at, serverOpts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return c
}

// startDataDir is TryStartDataDir, listening at at with serverOpts when at
// is not nil.
func startDataDir(t testing.TB, major int, dataDir string, conf map[string]string, at *Listen, serverOpts string) (*Cluster, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("pgtest: -short skips tests that start PostgreSQL")
	}
	bin := BinDir(t, major, false)
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	dir := TempDir(t)
	c := &Cluster{
		Major:     major,
		BinDir:    bin,
		DataDir:   dataDir,
		Host:      "127.0.0.1",
		SocketDir: dir,
		logPath:   filepath.Join(dir, "server.log"),
	}
	if at != nil {
		c.Port, c.Host, c.ownListen, c.serverOpts = at.Port, at.host(), true, serverOpts
	}
	AppendConf(t, dataDir, conf)
	openParents(t, dataDir)
	Chown(t, dataDir)
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatalf("pgtest: chmod %s: %v", dataDir, err)
	}
	t.Cleanup(func() { c.cleanup(t) })
	return c, c.tryStart(t)
}

// openParents adds search permission for others to the parents of dir that
// lie under the system temp dir, so the server's user can reach dir.
func openParents(t testing.TB, dir string) {
	t.Helper()
	if !asRoot() {
		return
	}
	tmp := filepath.Clean(os.TempDir())
	for p := filepath.Dir(dir); strings.HasPrefix(p, tmp+string(filepath.Separator)); p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}
}

// Start starts the stopped cluster again and waits until it accepts
// connections. It keeps the previous port when it is still free, so that
// connection strings (a standby's primary_conninfo) stay valid.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.tryStart(t); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// tryStart starts the cluster, retrying on a port taken meanwhile, and
// returns pg_ctl's error with the server log written by the attempt.
// Between the moment a port is found free (testio.FreePort, or hoard
// restore's summary) and the server's bind, another process may take it:
// the retry moves to another free port. A cluster that listens where its
// configuration says (ownListen) keeps its addresses and sockets and moves
// only its port, with a -p after its own options (the last one counts),
// kept for later starts.
func (c *Cluster) tryStart(t testing.TB) error {
	t.Helper()
	for attempt := 0; ; attempt++ {
		opts := c.serverOpts
		switch {
		case !c.ownListen:
			if c.Port == 0 || attempt > 0 {
				c.Port = testio.FreePort(t)
			}
			opts = fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", c.Port, c.SocketDir)
		case attempt > 0:
			c.Port = testio.FreePort(t)
			opts = strings.TrimSpace(fmt.Sprintf("%s -p %d", c.serverOpts, c.Port))
		}
		offset := c.logSize()
		out, err := c.command("pg_ctl", "start", "-D", c.DataDir, "-l", c.logPath, "-w",
			"-t", strconv.Itoa(int(startTimeout/time.Second)), "-o", opts).CombinedOutput()
		if err == nil {
			if c.ownListen {
				c.serverOpts = opts
			}
			return nil
		}
		log := c.Log()[offset:]
		if attempt < 5 && (strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use")) {
			continue
		}
		return fmt.Errorf("start PostgreSQL %d: %v\n%s\nserver log:\n%s", c.Major, err, out, log)
	}
}

// Stop shuts the cluster down cleanly (fast mode) and waits for it.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	out, err := c.command("pg_ctl", "stop", "-D", c.DataDir, "-m", "fast", "-w", "-t", "120").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: stop PostgreSQL %d: %v\n%s", c.Major, err, out)
	}
}

// Restart stops the cluster cleanly and starts it again.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

// Promote ends recovery of a standby (pg_ctl promote) and waits until it is
// a primary.
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	out, err := c.command("pg_ctl", "promote", "-D", c.DataDir, "-w", "-t", "120").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: promote: %v\n%s", err, out)
	}
}

// NewTimeline moves the cluster to its next timeline as a failover
// does, with no second cluster: a clean shutdown, a start as a standby
// (standby.signal; consistent at once, with nothing to replay) and a
// promotion. It returns once the cluster is a primary again; its
// connections are cut meanwhile.
func (c *Cluster) NewTimeline(t testing.TB) {
	t.Helper()
	c.Stop(t)
	writeFile(t, filepath.Join(c.DataDir, "standby.signal"), "")
	c.Start(t)
	c.Promote(t)
	c.WaitRecoveryDone(t, time.Minute)
}

// Running reports whether a postmaster is running on the data directory.
func (c *Cluster) Running() bool {
	pid, err := c.postmasterPID()
	return err == nil && processAlive(pid)
}

// Log returns the server log so far (every start of this cluster appends to
// it).
func (c *Cluster) Log() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// LogPath is the file the server logs to.
func (c *Cluster) LogPath() string { return c.logPath }

// WaitForLog waits until the server log contains substr, and fails the test
// after timeout.
func (c *Cluster) WaitForLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(c.Log(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: %q not in the server log after %v:\n%s", substr, timeout, tail(c.Log(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) logSize() int {
	fi, err := os.Stat(c.logPath)
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

// cleanup stops a still-running server at the end of the test, printing
// the log's tail when the test failed.
func (c *Cluster) cleanup(t testing.TB) {
	if t.Failed() {
		t.Logf("pgtest: PostgreSQL %d log tail (%s):\n%s", c.Major, c.logPath, tail(c.Log(), 60))
	}
	if !c.Running() {
		return
	}
	out, err := c.command("pg_ctl", "stop", "-D", c.DataDir, "-m", "immediate", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		t.Errorf("pgtest: stop PostgreSQL %d: %v\n%s", c.Major, err, out)
	}
}

// command builds a command for one of the cluster's binaries, run as the
// server's user, without the PG* variables of the test's environment.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	cmd.Env = cleanEnv()
	RunAs(cmd)
	return cmd
}

// cleanEnv is the test's environment without libpq's PG* variables, which
// would change what the server tools connect to.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// AppendConf appends conf to postgresql.auto.conf of dataDir, where it
// wins over postgresql.conf and earlier ALTER SYSTEM settings; the server
// reads it at its next start (or reload, for settings that allow it).
// Values are quoted here. An empty conf writes nothing.
func AppendConf(t testing.TB, dataDir string, conf map[string]string) {
	t.Helper()
	if len(conf) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("\n# pgtest\n")
	writeConf(&b, conf)
	appendFile(t, filepath.Join(dataDir, "postgresql.auto.conf"), b.String())
}

// writeConf writes settings in postgresql.conf syntax, sorted by name, each
// value single-quoted.
func writeConf(b *strings.Builder, conf map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(b, "%s = '%s'\n", k, strings.ReplaceAll(conf[k], "'", "''"))
	}
}

func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		t.Fatalf("pgtest: append to %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	Chown(t, path)
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	Chown(t, path)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StartColdStandby makes a streaming hot standby of primary, of any major
// (no pg_basebackup needed), from a copy of its data directory taken while
// it is stopped, and starts both.
func StartColdStandby(t testing.TB, primary *Cluster) *Cluster {
	t.Helper()
	primary.Stop(t)
	data := filepath.Join(TempDir(t), "standby")
	if out, err := exec.Command("cp", "-a", primary.DataDir, data).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", primary.DataDir, err, out)
	}
	primary.Start(t)
	if err := os.WriteFile(filepath.Join(data, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	standby := StartDataDir(t, primary.Major, data, map[string]string{"primary_conninfo": primary.ConnString("postgres")})
	if got := standby.QueryString(t, "select pg_is_in_recovery()::text"); got != "true" {
		t.Fatalf("standby pg_is_in_recovery() = %s, want true", got)
	}
	return standby
}
