package e2e

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// hoardBin is the binary under test, built by TestMain.
var hoardBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "hoard-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	// The server's user runs the binary as archive_command and
	// restore_command: it must be able to reach it.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	hoardBin = filepath.Join(dir, "hoard")
	build := exec.Command("go", "build", "-o", hoardBin, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build hoard: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is one hoard site under test: a configuration file, a local store,
// and the environment every hoard command gets.
type site struct {
	t        testing.TB
	name     string
	dir      string // owned by the server's user
	config   string // path of the configuration file
	storeDir string
	env      []string // PG* variables naming the cluster
}

// siteOptions shape the configuration newSite writes.
type siteOptions struct {
	Compression string // compression.algorithm; "" = snappy
	Encrypt     bool   // make a key pair with hoard create-keys
	ChunkSize   int64  // basebackup_chunk_size; 0 = 1 MiB
	// Mode is active_backup_mode; "" = archive_command.
	Mode string
	// ObjectStorage is the site's object_storage; nil = a local
	// directory, the site's storeDir.
	ObjectStorage map[string]any
	// Site holds more keys of the site.
	Site map[string]any
}

// newSite writes a configuration for a site whose WAL arrives through
// archive_command (or o.Mode), stored in a local directory (or in
// o.ObjectStorage).
func newSite(t testing.TB, o siteOptions) *site {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: the binary is built only without -short")
	}
	dir := pgtest.TempDir(t)
	s := &site{t: t, name: "e2e", dir: dir, config: filepath.Join(dir, "hoard.json")}
	o.Compression = cmp.Or(o.Compression, "snappy")
	o.ChunkSize = cmp.Or(o.ChunkSize, 1<<20)
	o.Mode = cmp.Or(o.Mode, "archive_command")
	if o.ObjectStorage == nil {
		s.storeDir = filepath.Join(dir, "store")
		o.ObjectStorage = map[string]any{"storage_type": "local", "directory": s.storeDir}
	}
	site := map[string]any{
		"active_backup_mode":    o.Mode,
		"basebackup_chunk_size": o.ChunkSize,
		"object_storage":        o.ObjectStorage,
	}
	maps.Copy(site, o.Site)
	cfg := map[string]any{
		"backup_location": filepath.Join(dir, "state"),
		"compression":     map[string]any{"algorithm": o.Compression},
		"backup_sites":    map[string]any{s.name: site},
		// hoard basebackup first asks the daemon on http_port to take the
		// backup: the default, 16000, may be a daemon (or anything else)
		// of this machine's.
		"http_port": testio.FreePort(t),
	}
	s.writeConfig("", cfg)
	if o.Encrypt {
		s.mustHoard("create-keys", "--key-id", "e2e-key")
	}
	return s
}

// writeFile writes a file as the server's user would own it.
func (s *site) writeFile(path string, data []byte) {
	s.t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		s.t.Fatal(err)
	}
	pgtest.Chown(s.t, path)
}

// archiveCommand is the archive_command that pushes WAL with this site.
func (s *site) archiveCommand() string {
	return fmt.Sprintf("'%s' --config '%s' wal-push %%p", hoardBin, s.config)
}

// restoreCommand is the restore_command that fetches WAL with this site.
func (s *site) restoreCommand() string {
	return fmt.Sprintf("'%s' --config '%s' wal-fetch %%f %%p", hoardBin, s.config)
}

// clusterConf is what a source cluster needs to archive through hoard.
func (s *site) clusterConf() map[string]string {
	return map[string]string{
		"archive_mode":    "on",
		"archive_command": s.archiveCommand(),
	}
}

// use points hoard's connection at cluster c through libpq's variables.
func (s *site) use(c *pgtest.Cluster) {
	s.env = []string{"PGHOST=" + c.Host, "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=postgres", "PGSSLMODE=disable"}
}

// command is hoard with args, to be run as the server's user with the
// site's configuration at log level info, its libpq variables and its
// directory; the caller sets where the output goes.
func (s *site) command(args ...string) *exec.Cmd {
	full := append([]string{"--config", s.config, "--log-level", "info"}, args...)
	cmd := exec.Command(hoardBin, full...)
	cmd.Env = append(minimalEnv(), s.env...)
	cmd.Dir = s.dir
	pgtest.RunAs(cmd)
	return cmd
}

// hoard runs the binary as the server's user with the site's
// configuration and returns stdout, stderr and the error.
func (s *site) hoard(args ...string) (string, string, error) {
	s.t.Helper()
	cmd := s.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	s.t.Logf("hoard %s (%v): err=%v\nstderr:\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, tailLines(stderr.String(), 30))
	return stdout.String(), stderr.String(), err
}

// mustHoard runs hoard and fails the test unless it exits 0.
func (s *site) mustHoard(args ...string) string {
	s.t.Helper()
	out, errOut, err := s.hoard(args...)
	if err != nil {
		s.t.Fatalf("hoard %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// exitCode returns the process exit status of err (0 for nil).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// minimalEnv keeps PATH and HOME-like basics but none of the test runner's
// PG* or HOARD_* variables.
func minimalEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "HOARD_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// backupJSON is the part of `hoard list --json` the tests read.
type backupJSON struct {
	Name            string            `json:"name"`
	StartWALSegment string            `json:"start_wal_segment"`
	EndWALSegment   string            `json:"end_wal_segment"`
	StartLSN        string            `json:"start_lsn"`
	EndLSN          string            `json:"end_lsn"`
	BackupReason    string            `json:"backup_reason"`
	SystemID        string            `json:"system_identifier"`
	Metadata        map[string]string `json:"metadata"`
}

// listBackups runs hoard list --json.
func (s *site) listBackups() []backupJSON {
	s.t.Helper()
	out := s.mustHoard("list", "--json")
	var bs []backupJSON
	if err := json.Unmarshal([]byte(out), &bs); err != nil {
		s.t.Fatalf("hoard list --json: %v\n%s", err, out)
	}
	return bs
}

// switchAndWaitArchived closes the current segment (pgtest's SwitchWAL:
// the one holding everything written before the call) and waits until
// the archiver has stored it.
func switchAndWaitArchived(t testing.TB, c *pgtest.Cluster) string {
	t.Helper()
	seg := c.SwitchWAL(t)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		last := c.QueryString(t, "select coalesce(last_archived_wal, '') from pg_stat_archiver")
		if last >= seg {
			return seg
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("segment %s was not archived within 2 minutes\n%s", seg, tailLines(c.Log(), 30))
	return ""
}

// noArchiving keeps a restored cluster, which inherits the source's
// archive_command, from archiving its new timeline into the source's
// archive, where a later restore following the latest timeline would find
// it.
var noArchiving = map[string]string{"archive_mode": "off"}

// rewriteStore points the site's local store at dir (created for the
// server's user).
func (s *site) rewriteStore(dir string) {
	s.t.Helper()
	cfg, site := s.readConfig()
	site["object_storage"] = map[string]any{"storage_type": "local", "directory": dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	pgtest.Chown(s.t, dir)
	s.writeConfig("", cfg)
	s.storeDir = dir
}

// onMajors runs test as a subtest on PostgreSQL 15 and, when it is
// another, the newest major the tests run.
func onMajors(t *testing.T, test func(t *testing.T, major int)) {
	majors := []int{15}
	if vs := pgtest.Versions(); vs[len(vs)-1] != 15 {
		majors = append(majors, vs[len(vs)-1])
	}
	for _, major := range majors {
		t.Run("PG"+strconv.Itoa(major), func(t *testing.T) { test(t, major) })
	}
}

// tamperChunk flips a byte in the middle of a middle chunk of backup, in
// the site's local store, and returns the chunk's path and what puts it
// back.
func (s *site) tamperChunk(t *testing.T, backup string) (victim string, undo func()) {
	t.Helper()
	chunks, err := filepath.Glob(filepath.Join(s.storeDir, s.name, "basebackup_chunk", backup, "*.pghoard"))
	if err != nil || len(chunks) < 2 {
		t.Fatalf("chunks of %s: %v %v", backup, chunks, err)
	}
	victim = chunks[len(chunks)/2]
	orig := readFile(t, victim)
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0x01
	s.writeFile(victim, bad)
	return victim, func() { s.writeFile(victim, orig) }
}
