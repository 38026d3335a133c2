// Package pghoardtest reads what a real PGHoard wrote, for tests:
// testdata/pghoard (single objects with their .metadata sidecars, and the
// config.json holding their keys; see its README.md) and
// testdata/pghoard-real (whole archives; see make-fixtures.sh there).
// Paths are relative to a package directory of the repository, where go
// test runs a package's tests.
package pghoardtest

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// Keys reads the private keys of every site in dir's config.json.
func Keys(tb testing.TB, dir string) map[string]*rsa.PrivateKey {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var cfg struct {
		BackupSites map[string]struct {
			EncryptionKeys map[string]struct {
				Private string `json:"private"`
			} `json:"encryption_keys"`
		} `json:"backup_sites"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		tb.Fatal(err)
	}
	keys := map[string]*rsa.PrivateKey{}
	for _, site := range cfg.BackupSites {
		for id, k := range site.EncryptionKeys {
			if k.Private == "" {
				continue
			}
			priv, err := crypto.ParsePrivateKeyPEM(k.Private)
			if err != nil {
				tb.Fatalf("key %s: %v", id, err)
			}
			keys[id] = priv
		}
	}
	return keys
}

// Object reads a stored object and its .metadata sidecar as PGHoard's
// local storage writes them, without the storage package's checks; the
// sidecar's _hash is dropped.
func Object(tb testing.TB, path string) ([]byte, storage.Metadata) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	side, err := os.ReadFile(path + ".metadata")
	if err != nil {
		tb.Fatal(err)
	}
	var md storage.Metadata
	if err := json.Unmarshal(side, &md); err != nil {
		tb.Fatalf("%s.metadata: %v", path, err)
	}
	delete(md, "_hash")
	return data, md
}

// RealDir is the folder of the archive a real PGHoard made in mode
// (basic, pipe, delta, ...): its config.json, its store and what the
// tests compare with.
func RealDir(mode string) string {
	return filepath.Join("..", "testdata", "pghoard-real", mode)
}

// CopyReal copies the archive of site "site" a real PGHoard made in mode
// into a memory store, closed when the test ends.
func CopyReal(tb testing.TB, mode string) storage.Store {
	tb.Helper()
	ctx := context.Background()
	src := storage.NewLocal(filepath.Join(RealDir(mode), "store"))
	dst := storage.NewMem()
	tb.Cleanup(func() { dst.Close() })
	err := src.List(ctx, "site/", func(o storage.Object) error {
		rc, md, err := src.Open(ctx, o.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		return dst.Put(ctx, o.Key, rc, md.Metadata)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return dst
}
