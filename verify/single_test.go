package verify

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// realPGHoard copies an archive a real PGHoard made
// (testdata/pghoard-real/<mode>, see make-fixtures.sh there) into a
// memory store, with the site's private key.
func realPGHoard(t *testing.T, mode string) *archive.Archive {
	t.Helper()
	dir := filepath.Join("..", "testdata", "pghoard-real", mode)
	var cfg struct {
		BackupSites map[string]struct {
			EncryptionKeys map[string]struct {
				Private string `json:"private"`
			} `json:"encryption_keys"`
		} `json:"backup_sites"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	keys := map[string]*rsa.PrivateKey{}
	for id, k := range cfg.BackupSites["site"].EncryptionKeys {
		if keys[id], err = crypto.ParsePrivateKeyPEM(k.Private); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	src := storage.NewLocal(filepath.Join(dir, "store"))
	dst := storage.NewMem()
	t.Cleanup(func() { dst.Close() })
	err = src.List(ctx, "site/", func(o storage.Object) error {
		rc, md, err := src.Open(ctx, o.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		return dst.Put(ctx, o.Key, rc, md)
	})
	if err != nil {
		t.Fatal(err)
	}
	return &archive.Archive{Store: dst, Codec: &archive.Codec{PrivateKeys: keys}, Layout: archive.Layout{Prefix: "site"}, Site: "site"}
}

// TestRun_PGHoardSingleTar: the basic and pipe backups of a real PGHoard
// (one pg_basebackup tar) verify, quickly and in full, and a byte flipped
// in the middle of the tar's object is reported by the full check.
func TestRun_PGHoardSingleTar(t *testing.T) {
	for _, mode := range []string{"basic", "pipe"} {
		t.Run(mode, func(t *testing.T) {
			a := realPGHoard(t, mode)
			for _, full := range []bool{false, true} {
				rep := run(t, a, full)
				if len(rep.Backups) != 1 || rep.Backups[0].Status != StatusOK || rep.Backups[0].Chunks != 1 {
					t.Fatalf("full=%v: %+v\n%s", full, rep.Backups, problems(rep))
				}
			}
			key := rep1Key(t, a)
			damage(t, a, key)
			rep := run(t, a, true)
			if rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), key) {
				t.Fatalf("damaged %s: status %s, problems:\n%s", key, rep.Backups[0].Status, problems(rep))
			}
		})
	}
}

func rep1Key(t *testing.T, a *archive.Archive) string {
	t.Helper()
	bs, err := a.ListBackups(context.Background())
	if err != nil || len(bs) != 1 {
		t.Fatalf("%d backups, %v", len(bs), err)
	}
	return bs[0].Key
}
