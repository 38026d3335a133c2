package command

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
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
	k := site.EncryptionKeys["k1"]
	priv, err := crypto.ParsePrivateKeyPEM(k.Private)
	if err != nil {
		t.Fatalf("private key: %v", err)
	}
	pub, err := crypto.ParsePublicKeyPEM(k.Public)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	if !priv.PublicKey.Equal(pub) || pub.N.BitLen() != 2048 {
		t.Errorf("public key does not match the private key or is not 2048 bits")
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
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v after adding a private key, want 0600", fi.Mode().Perm())
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
