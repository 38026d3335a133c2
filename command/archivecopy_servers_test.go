package command

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
)

// archive-copy refuses a target that is the source on a real server
// spelled another way (exit 2), before it copies anything.
func TestArchiveCopy_RefusesOtherSpellingServers(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, objectStorage map[string]any) string {
		t.Helper()
		js, err := json.Marshal(map[string]any{"backup_location": dir,
			"backup_sites": map[string]any{"s": map[string]any{"object_storage": objectStorage}}})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, js, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	refused := func(t *testing.T, from, to string) {
		t.Helper()
		code, msg := runErr(t, "archive-copy", "--allow-root", "--config", from, "--to-config", to)
		if code != ExitUsage || !strings.Contains(msg, "the target is the source itself") {
			t.Errorf("archive-copy onto the source spelled another way: exit %d (%s), want %d, refused", code, msg, ExitUsage)
		}
	}
	t.Run("MinIOHostName", func(t *testing.T) {
		c := storetest.MinIO(t)
		from := write("minio.json", storetest.ObjectStorage(c))
		c.Host = "localhost"
		to := write("localhost.json", storetest.ObjectStorage(c))
		putObject(t, from)
		refused(t, from, to)
	})
	t.Run("AzuriteURL", func(t *testing.T) {
		c := storetest.Azurite(t)
		t.Setenv("AZURE_STORAGE_ACCOUNT", c.AccountName)
		t.Setenv("AZURE_STORAGE_KEY", c.AccountKey)
		from := write("azure.json", storetest.ObjectStorage(c))
		to := write("azblob.json", map[string]any{"url": "azblob://" + c.BucketName + "?protocol=http&localemu=true&domain=127.0.0.1:" + itoa(c.Port)})
		putObject(t, from)
		refused(t, from, to)
	})
}

// putObject stores one object in site s of cfg, so that a copy has
// something to copy.
func putObject(t *testing.T, cfg string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, msg := runErr(t, "object", "put", "--allow-root", "--config", cfg, file, "s/xlog/000000010000000000000001"); code != 0 {
		t.Fatalf("object put: exit %d: %s", code, msg)
	}
}
