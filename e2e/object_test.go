package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/blake2s"

	"github.com/hoardbackup/hoard/internal/testio"
)

// TestObjectGet_PGHoard reads PGHoard's real objects (testdata/pghoard,
// written by PGHoard itself) with `hoard object ls` and `hoard object get`,
// using PGHoard's own configuration files with a local store pointed at
// each folder: chunks must decode to the tars PGHoard wrote, delta objects
// to files whose BLAKE2s-256 is their name.
func TestObjectGet_PGHoard(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the built binary")
	}
	root, err := filepath.Abs("../testdata/pghoard")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		folder string
		// members of the first chunk, or nil for delta objects
		firstChunk []string
	}{
		{"basebackup", []string{"pgdata/pg_notify", "pgdata/pg_notify/0000", "pgdata/pg_subtrans"}},
		{"basebackup_one_chunk", nil},
		{"basebackup_with_ts", nil},
		{"basebackup_delta", nil},
	}
	for _, tc := range cases {
		t.Run(tc.folder, func(t *testing.T) {
			dir := filepath.Join(root, tc.folder)
			cfg := pghoardConfig(t, dir, tc.folder != "basebackup_delta")
			keys := strings.Fields(runHoard(t, cfg, "object", "ls"))
			var objects []string
			for _, k := range keys {
				if strings.HasPrefix(k, "chunks/") {
					objects = append(objects, k)
				}
			}
			want, _ := filepath.Glob(filepath.Join(dir, "chunks", "*.metadata"))
			if len(objects) != len(want) || len(objects) == 0 {
				t.Fatalf("object ls listed %v, want the %d objects with sidecars", objects, len(want))
			}
			for i, key := range objects {
				out := filepath.Join(t.TempDir(), "plain")
				// Flags before or after the key, as PGHoard's tools take
				// them: the binary reorders its arguments.
				if i%2 == 0 {
					runHoard(t, cfg, "object", "get", "-o", out, key)
				} else {
					runHoard(t, cfg, "object", "get", key, "-o", out)
				}
				plain, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				var md map[string]string
				if err := json.Unmarshal(readFile(t, filepath.Join(dir, key+".metadata")), &md); err != nil {
					t.Fatal(err)
				}
				if got, want := len(plain), md["original-file-size"]; want != "" && strconv.Itoa(got) != want {
					t.Errorf("%s: %d bytes, original-file-size %s", key, got, want)
				}
				if strings.HasPrefix(md["format"], "pghoard-delta") {
					sum := blake2s.Sum256(plain)
					if got := hex.EncodeToString(sum[:]); got != filepath.Base(key) {
						t.Errorf("%s: BLAKE2s-256 of the plaintext is %s", key, got)
					}
					continue
				}
				members := tarMembers(t, key, plain)
				if i == 0 && tc.firstChunk != nil && strings.Join(members, ",") != strings.Join(tc.firstChunk, ",") {
					t.Errorf("%s holds %v, want %v", key, members, tc.firstChunk)
				}
				for _, m := range members {
					if !strings.HasPrefix(m, "pgdata/") && !strings.HasPrefix(m, "tablespaces/") {
						t.Errorf("%s: member %q outside pgdata/ and tablespaces/", key, m)
					}
				}
			}
		})
	}
}

// pghoardConfig writes PGHoard's test configuration from dir with a local
// store at dir and an empty site prefix.
//
// With encrypted false the sites lose their keys: a site with keys refuses
// unencrypted objects as tampered, and the delta fixture's objects are
// stored unencrypted.
func pghoardConfig(t *testing.T, dir string, encrypted bool) string {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "config.json")), &cfg); err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg["backup_sites"].(map[string]any) {
		site := s.(map[string]any)
		site["object_storage"] = map[string]any{"storage_type": "local", "directory": dir}
		site["prefix"] = ""
		if !encrypted {
			delete(site, "encryption_keys")
			delete(site, "encryption_key_id")
		}
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hoard.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runHoard runs the binary as the current user and returns its stdout.
func runHoard(t *testing.T, config string, args ...string) string {
	t.Helper()
	cmd := exec.Command(hoardBin, append([]string{"--config", config}, args...)...)
	cmd.Env = minimalEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hoard %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func tarMembers(t *testing.T, key string, data []byte) []string {
	t.Helper()
	var names []string
	testio.EachTarMember(t, key, bytes.NewReader(data), func(h *tar.Header, _ io.Reader) {
		names = append(names, strings.TrimSuffix(h.Name, "/"))
	})
	return names
}
