package e2e

import (
	"bytes"
	"context"
	"crypto/rsa"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRestoreRefusesUnencrypted: in a site with encryption keys, a backup
// stored without encryption by someone who holds no key, and a backup
// written with the site's key one of whose chunks was then replaced by
// its own bytes unencrypted, are refused by the built hoard: restore exits
// 1 naming the object, verify --full names it. A backup written with the
// key restores. unencrypted_objects_before admits unencrypted objects
// only when the storage wrote them before it, and even then a swapped
// chunk fails the stored size its encrypted control object records.
func TestRestoreRefusesUnencrypted(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	ctx := context.Background()
	cfg, siteCfg := s.readConfig()
	keyID := siteCfg["encryption_key_id"].(string)
	keys := siteCfg["encryption_keys"].(map[string]any)[keyID].(map[string]any)
	pub, err := crypto.ParsePublicKeyPEM(keys["public"].(string))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := crypto.ParsePrivateKeyPEM(keys["private"].(string))
	if err != nil {
		t.Fatal(err)
	}

	st := storage.NewLocal(s.storeDir)
	layout := archive.Layout{Prefix: s.name}
	enc := &archive.Archive{Store: st, Layout: layout, Site: s.name,
		Codec: &archive.Codec{Compression: "snappy", KeyID: keyID, PublicKey: pub}}
	plain := &archive.Archive{Store: st, Layout: layout, Site: s.name, Codec: &archive.Codec{Compression: "snappy"}}

	good := hostile.Put(t, enc, hostile.Backup{Name: "2026-01-02_03-00_0"})
	planted := hostile.Put(t, plain, hostile.Backup{Name: "2026-01-02_04-00_0"})
	swapped := hostile.Put(t, enc, hostile.Backup{Name: "2026-01-02_05-00_0",
		Chunks: [][]hostile.Member{{{Name: "pgdata/base/1/16400", Body: "genuine"}}}})
	// The swapped chunk: its own plaintext, stored again without
	// encryption, as a writer without the key would store it.
	victim := swapped.ChunkKeys[1]
	dec := &archive.Codec{PrivateKeys: map[string]*rsa.PrivateKey{keyID: priv}}
	data, md := archivetest.Decode(t, dec, st, victim)
	if _, err := plain.Codec.Put(ctx, st, victim, bytes.NewReader(data), int64(len(data)), storage.Metadata{archive.MetaFormat: md[archive.MetaFormat]}); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, s.storeDir)
	written := time.Now()

	restore := func(t *testing.T, name string) (string, error) {
		t.Helper()
		dir := filepath.Join(pgtest.TempDir(t), "data")
		_, errOut, err := s.hoard("restore", "--target-dir", dir, "--basebackup", name)
		return errOut, err
	}
	if errOut, err := restore(t, good.Name); err != nil {
		t.Fatalf("restore of the backup written with the key: %v\n%s", err, errOut)
	}
	refused := []struct{ backup, key string }{
		{planted.Name, planted.ControlKey},
		{swapped.Name, victim},
	}
	for _, r := range refused {
		errOut, err := restore(t, r.backup)
		if code := exitCode(err); code != 1 {
			t.Errorf("restore %s: exit %d, want 1\n%s", r.backup, code, errOut)
		}
		if line := errorLine(errOut); !strings.Contains(line, r.key) || !strings.Contains(line, "refused as tampered") {
			t.Errorf("restore %s: error %q does not refuse %s as tampered", r.backup, line, r.key)
		}
	}
	out, errOut, err := s.hoard("verify", "--full")
	if code := exitCode(err); code != 1 {
		t.Errorf("verify --full: exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	for _, r := range refused {
		if !strings.Contains(out+errOut, filepath.Base(r.key)) {
			t.Errorf("verify --full does not name %s:\n%s\n%s", r.key, out, errOut)
		}
	}

	// A cutoff before the objects were written admits nothing; one after
	// admits them (the archive's unencrypted past).
	setCutoff := func(t time.Time) {
		siteCfg["unencrypted_objects_before"] = t.UTC().Format(time.RFC3339Nano)
		s.writeConfig("", cfg)
	}
	setCutoff(written.Add(-time.Hour))
	for _, r := range refused {
		if errOut, err := restore(t, r.backup); exitCode(err) != 1 || !strings.Contains(errOut, "not before unencrypted_objects_before") {
			t.Errorf("restore %s with a cutoff before its objects were written: %v\n%s", r.backup, err, errOut)
		}
	}
	// One after admits the backup stored unencrypted as a whole (the
	// archive's unencrypted past); the swapped chunk is still refused, by
	// the stored size the encrypted control object records for it.
	setCutoff(time.Now())
	if errOut, err := restore(t, planted.Name); err != nil {
		t.Errorf("restore %s with a cutoff after its objects were written: %v\n%s", planted.Name, err, errOut)
	}
	errOut, err = restore(t, swapped.Name)
	if line := errorLine(errOut); exitCode(err) != 1 || !strings.Contains(line, victim) || !strings.Contains(line, "result_size") {
		t.Errorf("restore %s with a cutoff after its swapped chunk was written: %v, want exit 1 naming %s and its result_size\n%s", swapped.Name, err, victim, errOut)
	}
}
