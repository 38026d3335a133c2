package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// majors are the PostgreSQL versions hoard supports, newest first: the
// order in which a directory of each is looked for.
var majors = []int{18, 17, 16, 15, 14, 13}

// PGBin is a directory of PostgreSQL server binaries.
type PGBin struct {
	Dir     string // holds initdb, pg_ctl and postgres
	Version string // as postgres --version says, e.g. "15.18"
	Major   int
	From    string // where it was found, for the tour
}

// ErrNoPostgreSQL is returned (wrapped) when no PostgreSQL server binaries
// are found.
var ErrNoPostgreSQL = errors.New("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found")

// FindPGBin returns the PostgreSQL binaries the demo runs: dir when set,
// else the newest of Debian's packages (/usr/lib/postgresql/<major>/bin),
// then of the builds `task deps` installs (<cache>/pg/<major>/bin, cache
// being $HOARD_CACHE or /var/cache/hoard), then the one on PATH.
func FindPGBin(dir, cache string) (PGBin, error) {
	type candidate struct{ dir, from string }
	var cands []candidate
	if dir != "" {
		cands = append(cands, candidate{dir, "--pg-bin"})
	} else {
		for _, m := range majors {
			cands = append(cands, candidate{filepath.Join("/usr/lib/postgresql", strconv.Itoa(m), "bin"), "Debian's package"})
		}
		for _, m := range majors {
			cands = append(cands, candidate{filepath.Join(cache, "pg", strconv.Itoa(m), "bin"), "installed by task deps"})
		}
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			cands = append(cands, candidate{filepath.Dir(p), "on PATH"})
		}
	}
	var problems []string
	for _, c := range cands {
		b, err := checkPGBin(c.dir)
		if err != nil {
			if dir != "" || !errors.Is(err, os.ErrNotExist) {
				problems = append(problems, err.Error())
			}
			continue
		}
		b.From = c.from
		return b, nil
	}
	where := fmt.Sprintf("/usr/lib/postgresql/<13-18>/bin, %s/pg/<13-18>/bin or on PATH", cache)
	if dir != "" {
		where = dir
	}
	if len(problems) > 0 {
		where += " (" + strings.Join(problems, "; ") + ")"
	}
	return PGBin{}, fmt.Errorf("%w in %s", ErrNoPostgreSQL, where)
}

// versionRE matches `postgres --version`: "postgres (PostgreSQL) 15.18 (Debian ...)".
var versionRE = regexp.MustCompile(`\(PostgreSQL\) ((\d+)(\.\d+)?)`)

// checkPGBin checks that dir holds initdb, pg_ctl and postgres of a major
// hoard supports. A missing program wraps os.ErrNotExist.
func checkPGBin(dir string) (PGBin, error) {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return PGBin{}, fmt.Errorf("%s: %w", filepath.Join(dir, name), os.ErrNotExist)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return PGBin{}, fmt.Errorf("%s --version: %v", filepath.Join(dir, "postgres"), err)
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		return PGBin{}, fmt.Errorf("%s --version: unexpected %q", filepath.Join(dir, "postgres"), strings.TrimSpace(string(out)))
	}
	major, _ := strconv.Atoi(m[2])
	if major < 13 {
		return PGBin{}, fmt.Errorf("%s is PostgreSQL %s; hoard needs 13 or later", dir, m[1])
	}
	return PGBin{Dir: dir, Version: m[1], Major: major}, nil
}

// serverUser is the account PostgreSQL and everything it runs (wal-push)
// run as: ourselves, or, when we are root (initdb and postgres refuse
// root), the unprivileged user postgres.
type serverUser struct {
	name string
	cred *syscall.Credential // nil: ourselves
}

func findServerUser() (serverUser, error) {
	if os.Geteuid() != 0 {
		name := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		return serverUser{name: name}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return serverUser{}, fmt.Errorf("running as root: PostgreSQL refuses to run as root, and there is no user postgres to run it as (create it: useradd --system postgres, or run hoard demo as an ordinary user): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return serverUser{}, fmt.Errorf("running as root: user postgres has ids %s:%s; PostgreSQL needs an unprivileged user", u.Uid, u.Gid)
	}
	return serverUser{name: "postgres", cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}, nil
}

// own gives path and everything under it to the user (when we are root).
func (u serverUser) own(path string) error {
	if u.cred == nil {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.cred.Uid), int(u.cred.Gid))
	})
}

// command builds cmd to run as the user, with env as its environment.
func (u serverUser) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if u.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	}
	// A killed pg_ctl must not leave its output pipes open forever.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// prefix is what the printed commands start with to run as the user.
func (u serverUser) prefix() string {
	if u.cred == nil {
		return ""
	}
	return "runuser -u " + u.name + " -- "
}

// cluster is one throwaway PostgreSQL server.
type cluster struct {
	bin     PGBin
	user    serverUser
	env     []string
	dataDir string
	sockDir string
	logFile string
	port    int
}

// initdb creates the cluster's data directory.
func (c *cluster) initdb(ctx context.Context) error {
	out, err := c.run(ctx, "initdb", "-D", c.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// appendConf appends settings to the data directory's postgresql.auto.conf,
// where they win over postgresql.conf.
func (c *cluster) appendConf(settings [][2]string) error {
	var b strings.Builder
	b.WriteString("\n# hoard demo\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "%s = '%s'\n", s[0], strings.ReplaceAll(s[1], "'", "''"))
	}
	p := filepath.Join(c.dataDir, "postgresql.auto.conf")
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
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
	return c.user.own(p)
}

// start starts the server on a free loopback port (another one when the
// port is taken meanwhile) and waits until it accepts connections.
func (c *cluster) start(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		c.port = port
		before := c.log()
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", c.port, c.sockDir)
		out, err := c.run(ctx, "pg_ctl", "start", "-D", c.dataDir, "-l", c.logFile, "-w", "-t", "300", "-s", "-o", opts)
		if err == nil {
			return nil
		}
		log := strings.TrimPrefix(c.log(), before)
		if attempt < 3 && strings.Contains(log, "could not bind") {
			continue
		}
		return fmt.Errorf("start PostgreSQL in %s: %v %s\nserver log:\n%s", c.dataDir, err, strings.TrimSpace(out), tail(log, 20))
	}
}

// stop shuts the server down, if it runs: cleanly (fast mode) when its
// directory is kept, else at once (immediate mode).
func (c *cluster) stop(ctx context.Context, clean bool) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); err != nil {
		return nil
	}
	mode := "immediate"
	if clean {
		mode = "fast"
	}
	out, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", mode, "-w", "-t", "60", "-s")
	if err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %v %s", c.dataDir, err, strings.TrimSpace(out))
	}
	return nil
}

// connString is a libpq keyword string for database postgres over the
// cluster's socket.
func (c *cluster) connString() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.sockDir, c.port)
}

// run runs one of the binaries as the server's user and returns its
// output.
func (c *cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := c.user.command(ctx, c.env, filepath.Join(c.bin.Dir, name), args...)
	cmd.Dir = filepath.Dir(c.dataDir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// log returns the server log so far.
func (c *cluster) log() string {
	b, _ := os.ReadFile(c.logFile)
	return string(b)
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
