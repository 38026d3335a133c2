package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/crypto"
)

func TestCreateKeys_Snippet(t *testing.T) {
	app := App("test")
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, io.Discard
	err := app.RunContext(context.Background(), []string{"hoard", "--site", "db1", "create-keys", "--key-id", "k1", "--bits", "2048"})
	if err != nil {
		t.Fatal(err)
	}
	var snippet struct {
		BackupSites map[string]struct {
			EncryptionKeyID string                          `json:"encryption_key_id"`
			EncryptionKeys  map[string]config.EncryptionKey `json:"encryption_keys"`
		} `json:"backup_sites"`
	}
	if err := json.Unmarshal(out.Bytes(), &snippet); err != nil {
		t.Fatalf("snippet is not JSON: %v\n%s", err, out.String())
	}
	site := snippet.BackupSites["db1"]
	if site.EncryptionKeyID != "k1" {
		t.Errorf("encryption_key_id = %q, want k1", site.EncryptionKeyID)
	}
	wantKeyPair(t, site.EncryptionKeys["k1"], 2048)
}

// wantKeyPair checks that k's PEMs are a private key of bits bits and its
// public half.
func wantKeyPair(t *testing.T, k config.EncryptionKey, bits int) {
	t.Helper()
	priv, err := crypto.ParsePrivateKeyPEM(k.Private)
	if err != nil {
		t.Fatalf("private key: %v", err)
	}
	pub, err := crypto.ParsePublicKeyPEM(k.Public)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	if !priv.PublicKey.Equal(pub) || pub.N.BitLen() != bits {
		t.Errorf("public key does not match the private key or is not %d bits", bits)
	}
}

func TestCreateKeys_Config(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hoard.json")
	if err := os.WriteFile(path, []byte(`{"backup_location": "/tmp/x", "backup_sites": {"db1": {}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", path, "create-keys", "--key-id", "k1", "--bits", "2048"}
	if got := run(t, args...); got != ExitOK {
		t.Fatalf("create-keys: exit %d", got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("config mode %v after adding a private key to a 0644 file, want 0640 (nothing for others)", fi.Mode().Perm())
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	id, k, ok := cfg.BackupSites["db1"].EncryptionKey()
	if !ok || id != "k1" || k.Public == "" || k.Private == "" {
		t.Errorf("site key = %q %v, want k1 with both halves", id, ok)
	}
	t.Run("ErrKeyExists", func(t *testing.T) {
		if got := run(t, args...); got != ExitUsage {
			t.Errorf("second create-keys with the same id: exit %d, want %d", got, ExitUsage)
		}
	})
}

// `sudo hoard create-keys --config F` keeps F's owner, group and mode, so
// the service user can still read it.
func TestCreateKeys_KeepsOwnerGroupMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	for _, tc := range []struct {
		mode, want os.FileMode
	}{{0o640, 0o640}, {0o600, 0o600}, {0o660, 0o660}, {0o644, 0o640}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "hoard.json")
			if err := os.WriteFile(path, []byte(`{"backup_location": "/tmp/x", "backup_sites": {"db1": {}}}`), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			const uid, gid = 65534, 65533
			if err := os.Chown(path, uid, gid); err != nil {
				t.Fatal(err)
			}
			if got := run(t, "--config", path, "create-keys", "--key-id", "k1", "--bits", "2048"); got != ExitOK {
				t.Fatalf("create-keys: exit %d", got)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != tc.want {
				t.Errorf("after create-keys: owner %d:%d mode %v, want %d:%d %v", st.Uid, st.Gid, fi.Mode().Perm(), uid, gid, tc.want)
			}
			cfg, err := config.Load(path, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if _, k, ok := cfg.BackupSites["db1"].EncryptionKey(); !ok || k.Private == "" {
				t.Errorf("key not added")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the configuration", len(entries))
			}
		})
	}
}

// TestCreateKeys_ConfigLink: a configuration reached through a link (one
// that configuration management or a packaging owns) gets the key in the
// file the link names; the link stays a link. Replacing the link with a
// copy would leave the private key only in a file that the next run of
// configuration management puts the link back over.
func TestCreateKeys_ConfigLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "managed", "hoard.json")
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte(`{"backup_location": "/tmp/x", "backup_sites": {"db1": {}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "hoard.json")
	if err := os.Symlink(filepath.Join("managed", "hoard.json"), link); err != nil {
		t.Fatal(err)
	}
	if got := run(t, "--config", link, "create-keys", "--key-id", "k1", "--bits", "2048"); got != ExitOK {
		t.Fatalf("create-keys: exit %d", got)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s after create-keys: %v (%v), want the link kept", link, fi, err)
	}
	cfg, err := config.Load(target, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if id, k, ok := cfg.BackupSites["db1"].EncryptionKey(); !ok || id != "k1" || k.Private == "" {
		t.Errorf("the link's target has key %q %v, want k1 with its private key", id, ok)
	}
}

// TestCreateKeys_PEMDir: --pem-dir writes the pair as the two files a
// container platform mounts from a Secret, which the HOARD_ENCRYPTION_*
// _FILE variables read, and refuses to replace either.
func TestCreateKeys_PEMDir(t *testing.T) {
	dir := t.TempDir()
	createKeys := func() error {
		app := App("test")
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		return app.RunContext(context.Background(), []string{"hoard", "create-keys", "--key-id", "k1", "--bits", "2048", "--pem-dir", dir})
	}
	if err := createKeys(); err != nil {
		t.Fatal(err)
	}
	pubFile, privFile := filepath.Join(dir, "k1.public.pem"), filepath.Join(dir, "k1.private.pem")
	// The modes create-keys --help states.
	for p, want := range map[string]os.FileMode{privFile: 0o600, pubFile: 0o640} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	env := map[string]string{
		"HOARD_STORAGE_TYPE":                "local",
		"HOARD_LOCAL_DIRECTORY":             t.TempDir(),
		"HOARD_BACKUP_LOCATION":             t.TempDir(),
		"HOARD_ENCRYPTION_KEY_ID":           "k1",
		"HOARD_ENCRYPTION_PUBLIC_KEY_FILE":  pubFile,
		"HOARD_ENCRYPTION_PRIVATE_KEY_FILE": privFile,
	}
	cfg, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the files as HOARD_ENCRYPTION_*_KEY_FILE: %v", err)
	}
	_, site, err := cfg.Site("")
	if err != nil {
		t.Fatal(err)
	}
	wantKeyPair(t, site.EncryptionKeys["k1"], 2048)

	t.Run("ErrExists", func(t *testing.T) {
		before, err := os.ReadFile(privFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := createKeys(); ExitCode(err) != 2 {
			t.Errorf("a second create-keys into %s: %v (exit %d), want a usage error", dir, err, ExitCode(err))
		}
		if after, _ := os.ReadFile(privFile); !bytes.Equal(before, after) {
			t.Error("the existing private key file was replaced")
		}
	})
}

// TestWritePEMs_Concurrent: runs of create-keys --pem-dir with one key
// id at once (init containers on a shared volume) all find the names
// free, then write. Exactly one stores its pair; every other fails with a
// usage error naming the file that exists, and the files on disk are one
// run's private and public key, never a key in use replaced.
func TestWritePEMs_Concurrent(t *testing.T) {
	const runs = 8
	dir := t.TempDir()
	c := testCLIContext()
	c.App.ErrWriter = io.Discard
	start := make(chan struct{})
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = writePEMs(c, dir, "k1", fmt.Sprintf("public %d\n", i), fmt.Sprintf("private %d\n", i))
		}()
	}
	close(start)
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("runs %d and %d both stored k1: the second replaced the first's key", won, i)
		case err == nil:
			won = i
		case ExitCode(err) != 2 || !strings.Contains(err.Error(), filepath.Join(dir, "k1.private.pem")+" exists"):
			t.Errorf("run %d: %v (exit %d), want a usage error naming the existing %s", i, err, ExitCode(err), filepath.Join(dir, "k1.private.pem"))
		}
	}
	if won < 0 {
		t.Fatal("no run stored k1")
	}
	for _, f := range []string{"private", "public"} {
		got, err := os.ReadFile(filepath.Join(dir, "k1."+f+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%s %d\n", f, won); string(got) != want {
			t.Errorf("k1.%s.pem holds %q, want %q, the successful run's", f, got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("%d files in the directory, want the 2 key files (no temporary file left): %v", len(entries), entries)
	}
}

// TestWritePEMs_ErrPublicExists: a public key file that appears after the
// check that both names are free (another program, a create-keys of a
// pair written otherwise) fails the run, which leaves no private key file
// without its public file: the directory holds what it held before, the
// public file untouched.
func TestWritePEMs_ErrPublicExists(t *testing.T) {
	dir := t.TempDir()
	c := testCLIContext()
	c.App.ErrWriter = io.Discard
	pub := filepath.Join(dir, "k1.public.pem")
	afterPEMCreate = func(path string) {
		if filepath.Base(path) == "k1.private.pem" {
			if err := os.WriteFile(pub, []byte("someone else's\n"), 0o644); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { afterPEMCreate = nil })
	err := writePEMs(c, dir, "k1", "public\n", "private\n")
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), pub+" exists") {
		t.Errorf("writePEMs: %v (exit %d), want a usage error naming the existing %s", err, ExitCode(err), pub)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "k1.public.pem" {
		t.Errorf("the directory holds %v, want only the public file that was there", entries)
	}
	if got, err := os.ReadFile(pub); err != nil || string(got) != "someone else's\n" {
		t.Errorf("k1.public.pem holds %q (%v), want it untouched", got, err)
	}
}

// TestWritePEMs_ErrPrivateAlone: a private key file without its public
// file (a run killed between the two) is refused with a usage error that
// names both and says what to do; nothing changes.
func TestWritePEMs_ErrPrivateAlone(t *testing.T) {
	dir := t.TempDir()
	c := testCLIContext()
	c.App.ErrWriter = io.Discard
	priv := filepath.Join(dir, "k1.private.pem")
	if err := os.WriteFile(priv, []byte("private 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := writePEMs(c, dir, "k1", "public 1\n", "private 1\n")
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), priv+" exists without k1.public.pem") || !strings.Contains(err.Error(), "remove "+priv) {
		t.Errorf("writePEMs: %v (exit %d), want a usage error: %s exists without k1.public.pem, remove it", err, ExitCode(err), priv)
	}
	if got, err := os.ReadFile(priv); err != nil || string(got) != "private 0\n" {
		t.Errorf("k1.private.pem holds %q (%v), want it untouched", got, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "k1.public.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("k1.public.pem: %v, want it absent", err)
	}
}

// TestAddKeyError: create-keys replaces the configuration through a new
// file beside it, so a user who may write the file but not its directory
// (/etc/hoard as install.md sets it up, run as postgres) is refused with
// EACCES on the temporary file. The error says what to do: run it as a
// user who can write the directory. Other errors get no hint. Both exit 1:
// the flags were right.
func TestAddKeyError(t *testing.T) {
	denied := fmt.Errorf("write /etc/hoard/hoard.json: create a temporary file in /etc/hoard: %w",
		&fs.PathError{Op: "openat", Path: ".hoard.json.tmp-1", Err: syscall.EACCES})
	err := addKeyError("key1", "/etc/hoard/hoard.json", denied)
	for _, want := range []string{"add key key1 to /etc/hoard/hoard.json: ", "permission denied",
		"hint: create-keys writes the new file in /etc/hoard", "sudo hoard --config /etc/hoard/hoard.json create-keys --key-id key1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if got := ExitCode(err); got != ExitFailure {
		t.Errorf("exit %d, want %d", got, ExitFailure)
	}
	// The command in the hint pastes into a shell as it reads, whatever
	// the path holds.
	const odd = "/etc/my hoard/it's $HOME.json"
	hint := addKeyError("key1", odd, denied).Error()
	m := regexp.MustCompile(`\(sudo (.*) keeps the file's`).FindStringSubmatch(hint)
	if m == nil {
		t.Fatalf("no sudo command in %q", hint)
	}
	if got, want := shellWords(t, m[1]), []string{"hoard", "--config", odd, "create-keys", "--key-id", "key1"}; !slices.Equal(got, want) {
		t.Errorf("the hint's command %s reads in sh as %q, want %q", m[1], got, want)
	}
	other := addKeyError("key1", "/etc/hoard/hoard.json", errors.New("no space left on device"))
	if strings.Contains(other.Error(), "hint") || !errors.Is(addKeyError("k", "f", denied), fs.ErrPermission) {
		t.Errorf("error %q: want no hint, and the cause kept", other)
	}
}

// shellWords returns the words /bin/sh makes of cmd, a command line a
// message tells the user to paste, without running it.
func shellWords(t testing.TB, cmd string) []string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", `printf '%s\0' `+cmd).Output()
	if err != nil {
		t.Fatalf("sh: %s: %v", cmd, err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

// TestAddKeyError_Owner: the file's owner may write the directory and
// still be refused: the new file cannot be given the old one's group when
// the owner is not in it (a file root wrote and gave to postgres with
// chown postgres, its group still root's). The error said to run it "as
// the file's owner", which it was, and the hint that it "needs write
// permission" in the directory, which it had. It now says why and what to
// do: root, or a group of the user's.
func TestAddKeyError_Owner(t *testing.T) {
	const path = "/var/lib/hoard/hoard.json"
	chown := &fs.PathError{Op: "chown", Path: "/var/lib/hoard/.hoard.json.tmp-1", Err: syscall.EPERM}
	err := addKeyError("key1", path, fmt.Errorf("add encryption key: write %s: %w", path, keepOwnerError(101, 0, path, chown)))
	msg := err.Error()
	for _, want := range []string{"keep owner 101 and group 0 of " + path, "operation not permitted",
		"group", "chgrp", "sudo hoard --config " + path + " create-keys --key-id key1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	for _, wrong := range []string{"needs write permission there", "or as the file's owner)"} {
		if strings.Contains(msg, wrong) {
			t.Errorf("error %q says %q", msg, wrong)
		}
	}
}
