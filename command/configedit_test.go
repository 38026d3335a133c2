package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/internal/testio"
)

// configTestdata holds the configuration files config's tests read.
const configTestdata = "../config/testdata"

// copyTestdata copies a testdata file into a temp dir with the given mode.
func copyTestdata(t testing.TB, name string, mode os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(configTestdata, name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "hoard.json")
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func decodeFile(t testing.TB, p string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAddEncryptionKey(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		p := copyTestdata(t, "s3.json", 0o644)
		before := decodeFile(t, p)
		if err := addEncryptionKey(p, "", "key2", "PUB\n", "PRIV\n"); err != nil {
			t.Fatal(err)
		}
		after := decodeFile(t, p)

		// Everything else is unchanged.
		site := before["backup_sites"].(map[string]any)["prod"].(map[string]any)
		site["encryption_key_id"] = "key2"
		site["encryption_keys"] = map[string]any{"key2": map[string]any{"public": "PUB\n", "private": "PRIV\n"}}
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("file (-want +got):\n%s", diff)
		}
		// Key order is kept: backup_location stays first, backup_sites last.
		data, _ := os.ReadFile(p)
		s := string(data)
		if !strings.HasPrefix(s, "{\n    \"backup_location\": ") || strings.Index(s, `"http_port"`) > strings.Index(s, `"backup_sites"`) {
			t.Errorf("key order changed:\n%s", s)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// The file's mode is kept, without the permissions for others.
		if got := fi.Mode().Perm(); got != 0o640 {
			t.Errorf("mode = %o, want 640", got)
		}
		entries, _ := os.ReadDir(filepath.Dir(p))
		if len(entries) != 1 {
			t.Errorf("temp files left behind: %v", entries)
		}
		// The result loads and uses the new key.
		c, err := config.Load(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id, k, ok := c.BackupSites["prod"].EncryptionKey(); !ok || id != "key2" || k.Public != "PUB\n" {
			t.Errorf("EncryptionKey() = %q, %+v, %v", id, k, ok)
		}
	})
	t.Run("OKSecondKey", func(t *testing.T) {
		p := copyTestdata(t, "pghoard-basebackup.json", 0o600)
		if err := addEncryptionKey(p, "", "new", "PUB", ""); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, s, _ := c.Site("")
		if len(s.EncryptionKeys) != 2 || s.EncryptionKeyID != "new" || s.EncryptionKeys["new"].Private != "" {
			t.Errorf("keys = %v, id %q", s.EncryptionKeys, s.EncryptionKeyID)
		}
		if !strings.Contains(s.EncryptionKeys["5ba999de817c49a682ffed124abf9a2e"].Private, "BEGIN PRIVATE KEY") {
			t.Error("old key lost")
		}
	})
	t.Run("OKNamedSite", func(t *testing.T) {
		p := copyTestdata(t, "multisite.json", 0o600)
		if err := addEncryptionKey(p, "azure", "k", "PUB", "PRIV"); err != nil {
			t.Fatal(err)
		}
		m := decodeFile(t, p)
		if got := m["backup_sites"].(map[string]any)["azure"].(map[string]any)["encryption_key_id"]; got != "k" {
			t.Errorf("encryption_key_id = %v", got)
		}
	})
	t.Run("ErrKeyExists", func(t *testing.T) {
		p := copyTestdata(t, "pghoard-basebackup.json", 0o600)
		before, _ := os.ReadFile(p)
		err := addEncryptionKey(p, "", "5ba999de817c49a682ffed124abf9a2e", "PUB", "PRIV")
		if !errors.Is(err, errKeyExists) {
			t.Fatalf("err = %v, want errKeyExists", err)
		}
		after, _ := os.ReadFile(p)
		if string(before) != string(after) {
			t.Error("file changed")
		}
	})
	t.Run("ErrSeveralSites", func(t *testing.T) {
		p := copyTestdata(t, "multisite.json", 0o600)
		err := addEncryptionKey(p, "", "k", "PUB", "PRIV")
		if err == nil || !strings.Contains(err.Error(), "--site") {
			t.Fatalf("err = %v, want it to ask for --site", err)
		}
	})
	t.Run("ErrUnknownSite", func(t *testing.T) {
		p := copyTestdata(t, "multisite.json", 0o600)
		if err := addEncryptionKey(p, "nope", "k", "PUB", "PRIV"); !errors.Is(err, config.ErrUnknownSite) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ErrInvalidJSON", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(p, []byte(`{"backup_sites": `), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := addEncryptionKey(p, "", "k", "PUB", "PRIV"); err == nil {
			t.Fatal("want error")
		}
	})
}

func TestWriteOrdered(t *testing.T) {
	// Decoding and re-encoding keeps every value exactly, numbers included.
	in := `{"b": 1.50, "a": [true, null, "x<y>&\u00e9", {}], "c": {"z": 12345678901234567890, "y": []}}`
	v, err := decodeOrdered([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeOrdered(&buf, v, ""); err != nil {
		t.Fatal(err)
	}
	want := `{
    "b": 1.50,
    "a": [
        true,
        null,
        "x<y>&é",
        {}
    ],
    "c": {
        "z": 12345678901234567890,
        "y": []
    }
}`
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// FuzzOrdered checks that addEncryptionKey's order-keeping re-encoding
// never changes what a JSON document means.
func FuzzOrdered(f *testing.F) {
	testio.AddFiles(f, filepath.Join(configTestdata, "*.json"))
	f.Add([]byte(`{"a": 1, "a": [2, {"b": "\u00e9\n"}], "c": -0.5e-3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeOrdered(data)
		if err != nil {
			return
		}
		var want any
		if err := json.Unmarshal(data, &want); err != nil {
			t.Skipf("decodeOrdered accepted what json.Unmarshal rejects: %v", err)
		}
		var buf bytes.Buffer
		if err := writeOrdered(&buf, v, ""); err != nil {
			t.Fatal(err)
		}
		var got any
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("re-encoded JSON does not parse: %v\n%s", err, buf.Bytes())
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("meaning changed (-want +got):\n%s", diff)
		}
	})
}
