package command

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/storage"
)

// checkSite is a one-site configuration for hoard check tests: site is
// the site's JSON object, to which the test adds keys.
func checkSite(t *testing.T, c storage.Config, mode string, node map[string]any) map[string]any {
	t.Helper()
	for _, k := range []string{"HOARD_CONFIG", "PGHOARD_CONFIG", "HOARD_SITE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	return map[string]any{
		"active_backup_mode": mode,
		"object_storage":     storetest.ObjectStorage(c),
		"nodes":              []any{node},
	}
}

// runCheckSite writes a configuration of site and runs hoard check with
// args; it returns the exit status and what hoard printed (the report,
// then the error message).
func runCheckSite(t *testing.T, site map[string]any, args ...string) (int, string) {
	t.Helper()
	cfg := writeDBSiteConfig(t, site)
	if !checkAsRoot {
		old := checkEUID
		checkEUID = func() int { return 1000 }
		defer func() { checkEUID = old }()
	}
	app := App("test")
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, io.Discard
	err := app.RunContext(context.Background(), OrderArgs(app, append([]string{"hoard", "--config", cfg, "check"}, args...)))
	if err != nil {
		out.WriteString(ErrorMessage(err) + "\n")
	}
	t.Logf("hoard check %s:\n%s", strings.Join(args, " "), out.String())
	return ExitCode(err), out.String()
}

// writeDBSiteConfig writes a configuration whose one site, "db", is site,
// in a new directory that is also its backup_location, and returns its
// path.
func writeDBSiteConfig(t *testing.T, site map[string]any) string {
	t.Helper()
	return writeDBSiteConfigWith(t, site, nil)
}

// writeDBSiteConfigWith is writeDBSiteConfig with the top-level settings
// in top added (an http_port, say).
func writeDBSiteConfigWith(t *testing.T, site, top map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	c := map[string]any{"backup_location": dir, "backup_sites": map[string]any{"db": site}}
	for k, v := range top {
		c[k] = v
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "hoard.json")
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkAsRoot makes runCheckSite run hoard check as what it is run as
// (root, in CI), not as another user.
var checkAsRoot bool

// TestCheck_Root: hoard check as root says to run it as PostgreSQL's
// user, and writes nothing into a local store: the scratch object's
// directories (the site's among them, in a new store) would be root's,
// and PostgreSQL's wal-push could then store nothing there.
func TestCheck_Root(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not run as root")
	}
	checkAsRoot = true
	defer func() { checkAsRoot = false }()
	c := storetest.Local(t)
	code, out := runCheckSite(t, checkSite(t, c, "archive_command", closedNode))
	if code != ExitFailure {
		t.Errorf("check: exit %d, want %d (the node is unreachable)", code, ExitFailure)
	}
	wantLines(t, out,
		"warning  user: hoard check runs as root",
		"warning  storage local "+c.Directory+": not written as root")
	entries, err := os.ReadDir(c.Directory)
	if err != nil || len(entries) != 0 {
		t.Errorf("hoard check as root left %v in the store (%v), want nothing", entries, err)
	}
}

// wantLines fails unless out has a line starting with each of want.
func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, l := range strings.Split(out, "\n") {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("no line starting %q in:\n%s", w, out)
		}
	}
}

// clusterNode is the node of cluster c as a configuration's nodes entry.
func clusterNode(c *pgtest.Cluster) map[string]any {
	return map[string]any{"host": c.Host, "port": c.Port, "user": "postgres", "sslmode": "disable", "slot": "hoard_check"}
}

// closedNode is a node no server answers on.
var closedNode = map[string]any{"host": "127.0.0.1", "port": 1, "user": "postgres", "sslmode": "disable"}

// TestCheck_Site: a healthy streaming site on a real cluster passes, a
// site pointed at a cluster with wal_level minimal and no WAL senders
// fails with the settings to change.
func TestCheck_Site(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		c := pgtest.Start(t, pgtest.Options{Debian: true, DataChecksums: true})
		site := checkSite(t, storetest.Local(t), "pg_receivexlog", clusterNode(c))
		code, out := runCheckSite(t, site)
		if code != ExitOK || strings.Contains(out, "FAILED") {
			t.Errorf("check of a healthy site: exit %d, want %d and no FAILED line", code, ExitOK)
		}
		wantLines(t, out,
			"ok       configuration: site db",
			"warning  keys: encryption is off",
			"ok       storage local ",
			"ok       postgresql node 0: host=127.0.0.1 port="+itoa(c.Port)+" sslmode=disable user=postgres: PostgreSQL 15.",
			"ok       postgresql node 0: wal_level replica",
			"ok       postgresql node 0: replication slot hoard_check does not exist yet",
			"ok       postgresql node 0: replication connection",
			"info     postgresql node 0: data checksums are on",
			"info     archive: no backup yet",
			"site db: nothing failed, 1 warning")
	})
	t.Run("ErrWALLevelMinimal", func(t *testing.T) {
		c := pgtest.Start(t, pgtest.Options{Debian: true, Conf: map[string]string{"wal_level": "minimal", "max_wal_senders": "0"}})
		site := checkSite(t, storetest.Local(t), "pg_receivexlog", clusterNode(c))
		code, out := runCheckSite(t, site)
		if code != ExitFailure {
			t.Errorf("check: exit %d, want %d", code, ExitFailure)
		}
		node := "FAILED   postgresql node 0: "
		wantLines(t, out,
			node+"wal_level is minimal: set wal_level = replica in postgresql.conf and restart PostgreSQL",
			node+"max_wal_senders is 0 and 0 are in use, hoard needs 2 free: raise max_wal_senders in postgresql.conf",
			node+"replication connection: connect: ",
			"check: site db: 3 failed")
	})
}

// TestCheck_DefaultSlot: a streaming site whose node names no slot
// streams over hoard_<site> (the README's daemon configuration), and check
// looks at that slot as at a named one: it said nothing of the slot, also
// when max_replication_slots left no room to create it and the daemon
// could not start streaming.
func TestCheck_DefaultSlot(t *testing.T) {
	node := func(c *pgtest.Cluster) map[string]any {
		n := clusterNode(c)
		delete(n, "slot")
		return n
	}
	t.Run("OK", func(t *testing.T) {
		c := pgtest.Start(t, pgtest.Options{Debian: true})
		_, out := runCheckSite(t, checkSite(t, storetest.Local(t), "pg_receivexlog", node(c)))
		wantLines(t, out, "ok       postgresql node 0: replication slot hoard_db does not exist yet: hoard daemon creates it")
	})
	t.Run("ErrNoRoom", func(t *testing.T) {
		c := pgtest.Start(t, pgtest.Options{Debian: true, Conf: map[string]string{"max_replication_slots": "0"}})
		code, out := runCheckSite(t, checkSite(t, storetest.Local(t), "pg_receivexlog", node(c)))
		if code != ExitFailure {
			t.Errorf("check: exit %d, want %d", code, ExitFailure)
		}
		wantLines(t, out, "FAILED   postgresql node 0: replication slot hoard_db does not exist and cannot be created: max_replication_slots is 0")
	})
}

// TestCheck_SlotInactive: a streaming site's slot that exists with
// nothing streaming from it (the daemon stopped, or pghoard stopped
// before hoard daemon starts) keeps WAL on the server without limit:
// check warns, saying how much it keeps and what to do; it said only
// "exists".
func TestCheck_SlotInactive(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true})
	c.Exec(t, "select pg_create_physical_replication_slot('hoard_check', true)")
	code, out := runCheckSite(t, checkSite(t, storetest.Local(t), "pg_receivexlog", clusterNode(c)))
	if code != ExitOK {
		t.Errorf("check: exit %d, want %d (a warning)", code, ExitOK)
	}
	wantLines(t, out, "warning  postgresql node 0: replication slot hoard_check exists, but nothing streams from it: is hoard daemon running? The server keeps WAL for it (")
}

// TestCheck_ArchiveCommandOther: an archive_command that runs another
// tool's wal-push (wal-g's) is not hoard's, and the variable assignment in
// front of it, which may hold a secret, is not printed.
func TestCheck_ArchiveCommandOther(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true, Conf: map[string]string{
		"archive_mode": "on", "archive_command": "AWS_SECRET_ACCESS_KEY=hunter2 wal-g wal-push %p"}})
	_, out := runCheckSite(t, checkSite(t, storetest.Local(t), "archive_command", clusterNode(c)))
	wantLines(t, out, "warning  postgresql node 0: archive_command runs wal-g, not hoard wal-push")
	if strings.Contains(out, "hunter2") {
		t.Errorf("hoard check printed the secret in archive_command:\n%s", out)
	}
}

// TestCheckArchiveCommand_NoPath: an archive_command that runs hoard
// wal-push with %f (the file's name) instead of %p (its path, relative to
// the data directory, where PostgreSQL runs the command) archives nothing:
// every push fails with "no such file or directory", which the operator
// sees only in PostgreSQL's log. hoard check fails it, naming %p; with %p
// it passes.
func TestCheckArchiveCommand_NoPath(t *testing.T) {
	for cmd, want := range map[string]string{
		"hoard --config /etc/hoard/hoard.json wal-push %f": "FAILED   n: archive_command runs hoard wal-push without %p",
		"hoard --config /etc/hoard/hoard.json wal-push":    "FAILED   n: archive_command runs hoard wal-push without %p",
		"hoard --config /etc/hoard/hoard.json wal-push %p": "ok       n: archive_command runs hoard wal-push",
		"'/opt/my %p/hoard' wal-push %f":                   "FAILED   n: archive_command runs hoard wal-push without %p",
		// The file's path spelled out works as %p does: PostgreSQL runs
		// the command in the data directory.
		"hoard --config /etc/hoard/hoard.json wal-push pg_wal/%f":  "ok       n: archive_command runs hoard wal-push",
		"hoard wal-push \"/var/lib/postgresql/15/main/pg_wal/%f\"": "ok       n: archive_command runs hoard wal-push",
		"'/opt/my %p/hoard' wal-push pg_wal/%f":                    "ok       n: archive_command runs hoard wal-push",
	} {
		var out bytes.Buffer
		r := &checkReport{w: &out}
		checkArchiveCommand(r, "n", replication.Setup{ArchiveMode: "on", ArchiveCommand: cmd}, "/etc/hoard/hoard.json", "n")
		wantLines(t, out.String(), want)
	}
}

// TestCheckArchiveCommand_OtherConfig: an archive_command that runs hoard
// wal-push with another --config than the file checked pushes WAL where
// that file says, which check cannot see: the site's backups are then
// restorable only if the other file names the same storage and site
// (--archive-switch waits in vain otherwise). check warns, naming both
// files. The file is the one hoard reads: wal-push's own --config (before
// or after %p), which wins over the global one, which wins over
// HOARD_CONFIG or PGHOARD_CONFIG set in the command. The same file under
// another name (a link), and a command without any (the server's
// HOARD_CONFIG) or with a relative one (resolved in the data directory),
// pass.
func TestCheckArchiveCommand_OtherConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hoard.json")
	if err := os.WriteFile(cfg, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(cfg, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.json")
	const ok = "ok       n: archive_command runs hoard wal-push"
	warn := "warning  n: archive_command runs hoard wal-push with --config " + other + ", not " + cfg +
		", the file checked here: WAL goes to the storage and site that file names"
	envWarn := func(v string) string {
		return "warning  n: archive_command runs hoard wal-push with " + v + "=" + other + ", not " + cfg + ", the file checked here"
	}
	for cmd, want := range map[string]string{
		"hoard --config " + cfg + " wal-push %p":                      ok,
		"hoard --config '" + link + "' wal-push %p":                   ok,
		"hoard --config=" + cfg + " wal-push %p":                      ok,
		"hoard wal-push %p":                                           ok,
		"hoard --config hoard.json wal-push %p":                       ok,
		"hoard --config '/etc/my hoard/hoard.json' wal-push %p":       ok,
		"hoard --config " + other + " wal-push %p":                    warn,
		"hoard --config=" + other + " wal-push %p":                    warn,
		"/usr/local/bin/hoard --config \"" + other + "\" wal-push %p": warn,
		// wal-push's own --config (before or after %p) wins over the
		// global one, which wins over HOARD_CONFIG and PGHOARD_CONFIG.
		"hoard wal-push --config " + other + " %p":                                warn,
		"hoard wal-push %p --config=" + other:                                     warn,
		"hoard --config " + cfg + " wal-push --config " + other + " %p":           warn,
		"hoard --config " + other + " wal-push --config " + cfg + " %p":           ok,
		"hoard --config " + other + " --config " + cfg + " wal-push %p":           ok,
		"hoard -config " + other + " wal-push %p":                                 warn,
		"HOARD_CONFIG=" + other + " hoard wal-push %p":                            envWarn("HOARD_CONFIG"),
		"PGHOARD_CONFIG='" + other + "' /usr/bin/hoard wal-push %p":               envWarn("PGHOARD_CONFIG"),
		"HOARD_CONFIG=" + other + " hoard --config " + cfg + " wal-push %p":       ok,
		"HOARD_CONFIG=" + cfg + " PGHOARD_CONFIG=" + other + " hoard wal-push %p": ok,
		"hoard wal-push %p -- --config " + other:                                  ok,
	} {
		var out bytes.Buffer
		r := &checkReport{w: &out}
		checkArchiveCommand(r, "n", replication.Setup{ArchiveMode: "on", ArchiveCommand: cmd}, cfg, "n")
		wantLines(t, out.String(), want)
	}
}

// TestCheckArchiveCommand_OtherSite: an archive_command that runs hoard
// wal-push for another site of the configuration (wal-push's --site, the
// global one, or HOARD_SITE set in the command) pushes the WAL into that
// site's prefix, where this site's backups do not find it. check warns,
// naming both sites; the site checked, or none (the only site, or the
// server's HOARD_SITE), passes.
func TestCheckArchiveCommand_OtherSite(t *testing.T) {
	const ok = "ok       n: archive_command runs hoard wal-push"
	warn := func(how string) string {
		return "warning  n: archive_command runs hoard wal-push with " + how + "other, not site db, the site checked here"
	}
	for cmd, want := range map[string]string{
		"hoard --config /etc/hoard/hoard.json wal-push %p":                  ok,
		"hoard --config /etc/hoard/hoard.json --site db wal-push %p":        ok,
		"HOARD_SITE=db hoard wal-push %p":                                   ok,
		"hoard --site other --config /etc/hoard/hoard.json wal-push %p":     warn("--site "),
		"hoard --config /etc/hoard/hoard.json wal-push --site=other %p":     warn("--site "),
		"hoard --site db wal-push %p --site other":                          warn("--site "),
		"hoard --site other wal-push --site db %p":                          ok,
		"HOARD_SITE=other hoard --config /etc/hoard/hoard.json wal-push %p": warn("HOARD_SITE="),
		"HOARD_SITE='other' /usr/bin/hoard wal-push %p":                     warn("HOARD_SITE="),
		"HOARD_SITE=other hoard --site db wal-push %p":                      ok,
	} {
		var out bytes.Buffer
		r := &checkReport{w: &out}
		checkArchiveCommand(r, "n", replication.Setup{ArchiveMode: "on", ArchiveCommand: cmd}, "/etc/hoard/hoard.json", "db")
		wantLines(t, out.String(), want)
	}
}

// TestRunsHoardWALPush: the archive_command forms the docs, the demo and
// e2e set run hoard wal-push; another tool's wal-push, or hoard named only
// in a path, does not.
func TestRunsHoardWALPush(t *testing.T) {
	for cmd, want := range map[string]bool{
		"hoard --config /etc/hoard/hoard.json wal-push %p":      true,
		"'/tmp/e2e 1/hoard' --config '/tmp/c.json' wal-push %p": true, // a space in the quoted path
		"'/tmp/e2e/hoard' --config '/tmp/c.json' wal-push %p":   true,
		"HOARD_SITE=db /usr/local/bin/hoard wal-push %p":        true,
		"wal-g wal-push %p": false,
		"wal-g --config /etc/hoard/hoard.json wal-push %p": false,
		"hoard wal-fetch %f %p":                            false,
	} {
		if got := runsHoardWALPush(cmd); got != want {
			t.Errorf("runsHoardWALPush(%q) = %v, want %v", cmd, got, want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestCheck_ErrStorage: a storage that refuses hoard's credentials, or a
// local directory that does not exist, is a FAILED line naming the
// storage and where it is.
func TestCheck_ErrStorage(t *testing.T) {
	t.Run("ErrWrongPassword", func(t *testing.T) {
		c := storetest.MinIO(t)
		c.SecretAccessKey = "not-the-password"
		code, out := runCheckSite(t, checkSite(t, c, "archive_command", closedNode))
		if code != ExitFailure {
			t.Errorf("check: exit %d, want %d", code, ExitFailure)
		}
		wantLines(t, out, "FAILED   storage s3 bucket hoard-test at 127.0.0.1:"+itoa(c.Port)+": ")
		if strings.Contains(out, "not-the-password") {
			t.Errorf("the output shows the secret key")
		}
	})
	t.Run("ErrUnreachable", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: the S3 SDK's retries take about 10 s")
		}
		c := storage.Config{Type: "s3", Region: "us-east-1", BucketName: "hoard-test", AccessKeyID: "hoard", SecretAccessKey: "hoard-secret",
			Host: "127.0.0.1", Port: testio.FreePort(t)}
		code, out := runCheckSite(t, checkSite(t, c, "archive_command", closedNode))
		if code != ExitFailure {
			t.Errorf("check: exit %d, want %d", code, ExitFailure)
		}
		wantLines(t, out, "FAILED   storage s3 bucket hoard-test at 127.0.0.1:"+itoa(c.Port)+": ")
		if !strings.Contains(out, "cannot reach the s3 endpoint (check host, port and is_secure") {
			t.Errorf("the storage line does not name the keys to check")
		}
	})
	t.Run("ErrMissingDirectory", func(t *testing.T) {
		c := storage.Config{Type: "local", Directory: filepath.Join(t.TempDir(), "bakcups")}
		code, out := runCheckSite(t, checkSite(t, c, "archive_command", closedNode))
		if code != ExitFailure {
			t.Errorf("check: exit %d, want %d", code, ExitFailure)
		}
		wantLines(t, out, "FAILED   storage local "+c.Directory+": the local storage directory "+c.Directory+" does not exist: check object_storage.directory")
		if _, err := os.Stat(c.Directory); err == nil {
			t.Errorf("check created %s", c.Directory)
		}
	})
}

// TestCheck_ErrKeyMismatch: a matching pair passes the keys step; a
// private key of another pair than the public key is a configuration
// that does not load (exit 2), named with its key id.
func TestCheck_ErrKeyMismatch(t *testing.T) {
	a, b := checkKeyPair(t), checkKeyPair(t)
	for _, tc := range []struct {
		name      string
		pub, priv string
		code      int
		want      string
	}{
		{"OK", a.pub, a.priv, ExitOK, "ok       keys: key k1 encrypts and decrypts"},
		{"ErrMismatch", a.pub, b.priv, ExitUsage, "backup_sites.db.encryption_keys.k1: the public and private keys are from different key pairs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := checkSite(t, storetest.Local(t), "archive_command", closedNode)
			site["encryption_key_id"] = "k1"
			site["encryption_keys"] = map[string]any{"k1": map[string]any{"public": tc.pub, "private": tc.priv}}
			code, out := runCheckSite(t, site)
			if tc.code == ExitUsage && code != tc.code {
				t.Errorf("check: exit %d, want %d", code, tc.code)
			}
			wantLines(t, out, tc.want)
		})
	}
}

// keyPair is an RSA key pair in PEM, as encryption_keys holds it.
type keyPair struct{ pub, priv string }

func checkKeyPair(t *testing.T) keyPair {
	t.Helper()
	k, err := crypto.GenerateKey(1024)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := crypto.EncodePrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := crypto.EncodePublicKeyPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{pub, priv}
}

// TestCheck_ErrConfig: a configuration that does not load exits 2 (bad
// configuration), with the key at fault named.
func TestCheck_ErrConfig(t *testing.T) {
	site := checkSite(t, storetest.Local(t), "archive_command", closedNode)
	site["encryption_key_id"] = "k1"
	site["encryption_keys"] = map[string]any{"k1": map[string]any{"public": "not a key"}}
	code, out := runCheckSite(t, site)
	if code != ExitUsage || !strings.Contains(out, "encryption_keys.k1.public") {
		t.Errorf("check: exit %d, %q; want %d naming encryption_keys.k1.public", code, out, ExitUsage)
	}
}

// TestCheckKeys_OffHint: with encryption off, the warning's create-keys
// command is one to run as it is: with the --config of the file checked
// (create-keys writes the key pair into that file; without --config it
// only prints one), quoted for the shell, and --site where the file has
// several sites. With no file (the environment), it names the variables
// to set instead.
func TestCheckKeys_OffHint(t *testing.T) {
	store := storetest.ObjectStorage(storetest.Local(t))
	for _, c := range []struct {
		name, file string
		sites      []string
		want       string
	}{
		{"File", "hoard.json", []string{"db"}, "run hoard --config DIR/hoard.json create-keys --key-id key1 to set"},
		{"FileQuoted", "my hoard.json", []string{"db"}, "run hoard --config 'DIR/my hoard.json' create-keys --key-id key1 to set"},
		{"Sites", "hoard.json", []string{"db", "other"}, "run hoard --config DIR/hoard.json --site db create-keys --key-id key1 to set"},
		{"Environment", "", []string{"db"}, "run hoard create-keys --key-id key1 --pem-dir . and set HOARD_ENCRYPTION_KEY_ID=key1 and HOARD_ENCRYPTION_PUBLIC_KEY_FILE to the key1.public.pem it writes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkSite(t, storage.Config{}, "", nil) // clears HOARD_CONFIG and HOARD_SITE
			dir := t.TempDir()
			args := []string{"hoard", "check"}
			if c.file == "" {
				t.Setenv("HOARD_BACKUP_LOCATION", dir)
				t.Setenv("HOARD_SITE", "db")
				t.Setenv("PGHOST", "127.0.0.1")
				t.Setenv("PGPORT", "1")
			} else {
				sites := map[string]any{}
				for _, s := range c.sites {
					sites[s] = map[string]any{"object_storage": store, "nodes": []any{closedNode}}
				}
				data, err := json.Marshal(map[string]any{"backup_location": dir, "backup_sites": sites})
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, c.file)
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				args = []string{"hoard", "--config", path, "--site", "db", "check"}
			}
			app := App("test")
			var out bytes.Buffer
			app.Writer, app.ErrWriter = &out, io.Discard
			_ = app.RunContext(context.Background(), args)
			if want := strings.ReplaceAll(c.want, "DIR", dir); !strings.Contains(out.String(), want) {
				t.Errorf("no warning saying %q:\n%s", want, out.String())
			}
		})
	}
}

// TestCheckKeys_PublicOnlyHint: a site with only the public key is told
// where a restore's private key goes: the key in the file, or the
// variable with no file (a container's).
func TestCheckKeys_PublicOnlyHint(t *testing.T) {
	key, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := crypto.EncodePublicKeyPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("File", func(t *testing.T) {
		site := checkSite(t, storetest.Local(t), "archive_command", closedNode)
		site["encryption_key_id"] = "k1"
		site["encryption_keys"] = map[string]any{"k1": map[string]any{"public": pub}}
		if _, out := runCheckSite(t, site); !strings.Contains(out, "a restore needs encryption_keys.k1.private") {
			t.Errorf("no hint naming encryption_keys.k1.private:\n%s", out)
		}
	})
	t.Run("Environment", func(t *testing.T) {
		checkSite(t, storage.Config{}, "", nil) // clears HOARD_CONFIG and HOARD_SITE
		for k, v := range map[string]string{
			"HOARD_BACKUP_LOCATION": t.TempDir(), "HOARD_SITE": "db", "PGHOST": "127.0.0.1", "PGPORT": "1",
			"HOARD_STORAGE_TYPE": "local", "HOARD_LOCAL_DIRECTORY": t.TempDir(),
			"HOARD_ENCRYPTION_KEY_ID": "k1", "HOARD_ENCRYPTION_PUBLIC_KEY": pub,
		} {
			t.Setenv(k, v)
		}
		app := App("test")
		var out bytes.Buffer
		app.Writer, app.ErrWriter = &out, io.Discard
		_ = app.RunContext(context.Background(), []string{"hoard", "check"})
		if want := "a restore needs HOARD_ENCRYPTION_PRIVATE_KEY_FILE (or HOARD_ENCRYPTION_PRIVATE_KEY)"; !strings.Contains(out.String(), want) {
			t.Errorf("no hint saying %q:\n%s", want, out.String())
		}
	})
}
