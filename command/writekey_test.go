package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/config"
)

// writeKeyConfig is a site with a key pair in encryption_keys and
// encryption_key_id misspelt ("encryption_key_idd"): the site has
// encryption keys, so it reads only encrypted objects, but names no key
// for its uploads.
func writeKeyConfig(t *testing.T) string {
	t.Helper()
	kp := checkKeyPair(t)
	dir := t.TempDir()
	js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"nodes": [{"host": "db"}],
		"object_storage": {"storage_type": "local", "directory": %q},
		"encryption_key_idd": "k", "encryption_keys": {"k": {"public": %q, "private": %q}}}}}`,
		filepath.Join(dir, "bl"), filepath.Join(dir, "store"), kp.pub, kp.priv)
	file := filepath.Join(dir, "hoard.json")
	if err := os.MkdirAll(filepath.Join(dir, "store"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

const writeKeyErr = "backup_sites.s.encryption_key_id: not set, but encryption_keys lists keys"

// TestDaemonOptions_ErrKeysWithoutKeyID: a site with encryption keys and
// no encryption_key_id would store its WAL and backups unencrypted, and
// then refuse them as unencrypted at every read (restore, wal-fetch,
// verify): the daemon refuses to start, and a reload to such a file is
// refused (daemonOptions fails).
func TestDaemonOptions_ErrKeysWithoutKeyID(t *testing.T) {
	clearConfigEnv(t)
	cfg := loadTestConfigFile(t, writeKeyConfig(t))
	_, err := daemonOptions(testCLIContext(), cfg)
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), writeKeyErr) {
		t.Fatalf("daemonOptions: %v, want a usage error containing %q", err, writeKeyErr)
	}
}

// TestWALPush_ErrKeysWithoutKeyID: wal-push (archive_command) refuses such
// a site with exit 2 and stores nothing: PostgreSQL keeps the segment and
// retries.
func TestWALPush_ErrKeysWithoutKeyID(t *testing.T) {
	clearConfigEnv(t)
	file := writeKeyConfig(t)
	seg := filepath.Join(t.TempDir(), "000000010000000000000001")
	if err := os.WriteFile(seg, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	app := App("test")
	var out, log bytes.Buffer
	app.Writer, app.ErrWriter = &out, &log
	err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "wal-push", "--config", file, seg}))
	if got := ExitCode(err); got != ExitUsage || err == nil || !strings.Contains(err.Error(), writeKeyErr) {
		t.Fatalf("wal-push: exit %d, %v; want exit %d containing %q", got, err, ExitUsage, writeKeyErr)
	}
	store := filepath.Join(filepath.Dir(file), "store")
	if entries, _ := os.ReadDir(filepath.Join(store, "s", "xlog")); len(entries) > 0 {
		t.Errorf("wal-push stored %d objects in s/xlog", len(entries))
	}
}

func loadTestConfigFile(t *testing.T, file string) *config.Config {
	t.Helper()
	cfg, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestObjectGet_KeysWithoutKeyID: the codec's own refusal to store
// plaintext in such a site (archive.ErrNoUploadKey) leaves reading it
// alone: a restore host's configuration (keys, no encryption_key_id)
// gets what the site's writer stored encrypted, and its object put is
// still refused by the command (checkUploadKey).
func TestObjectGet_KeysWithoutKeyID(t *testing.T) {
	clearConfigEnv(t)
	reader := writeKeyConfig(t)
	dir := filepath.Dir(reader)
	js, err := os.ReadFile(reader)
	if err != nil {
		t.Fatal(err)
	}
	writer := filepath.Join(dir, "writer.json")
	if err := os.WriteFile(writer, bytes.Replace(js, []byte(`"encryption_key_idd"`), []byte(`"encryption_key_id"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "in")
	if err := os.WriteFile(src, []byte("hello, archive\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hoard := func(args ...string) error {
		app := App("test")
		var out, log bytes.Buffer
		app.Writer, app.ErrWriter = &out, &log
		return app.RunContext(context.Background(), OrderArgs(app, append([]string{"hoard"}, args...)))
	}
	if err := hoard("object", "put", src, "s/misc/greeting", "--config", writer); err != nil {
		t.Fatalf("object put with encryption_key_id: %v", err)
	}
	if err := hoard("object", "put", src, "s/misc/plain", "--config", reader); ExitCode(err) != ExitUsage {
		t.Errorf("object put without encryption_key_id: exit %d, %v; want exit %d", ExitCode(err), err, ExitUsage)
	}
	dst := filepath.Join(dir, "out")
	if err := hoard("object", "get", "s/misc/greeting", "-o", dst, "--config", reader); err != nil {
		t.Fatalf("object get without encryption_key_id: %v", err)
	}
	if got, err := os.ReadFile(dst); err != nil || string(got) != "hello, archive\n" {
		t.Errorf("object get wrote %q, %v", got, err)
	}
}
