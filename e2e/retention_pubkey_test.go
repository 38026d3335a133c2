package e2e

import (
	"context"
	"errors"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRetentionPublicKeyOnly: the built hoard retention, configured with
// only the site's public key (as a backup host that cannot read the
// archive is), deletes the backups the policy no longer needs, their
// chunks included, and keeps the newest. The backups are signed, as
// hoard's in a site with keys are: of an unsigned one, retention leaves
// the chunks written in the last day (archive's deleteBackup).
func TestRetentionPublicKeyOnly(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	cfg, siteCfg := s.readConfig()
	keyID := siteCfg["encryption_key_id"].(string)
	key := siteCfg["encryption_keys"].(map[string]any)[keyID].(map[string]any)
	pub, err := crypto.ParsePublicKeyPEM(key["public"].(string))
	if err != nil {
		t.Fatal(err)
	}
	st := storage.NewLocal(s.storeDir)
	a := &archive.Archive{Store: st, Layout: archive.Layout{Prefix: s.name}, Site: s.name,
		Codec: &archive.Codec{Compression: "snappy", KeyID: keyID, PublicKey: pub}}
	var stored []hostile.Stored
	for _, name := range []string{"2026-01-02_03-00_0", "2026-01-02_04-00_0", "2026-01-02_05-00_0"} {
		stored = append(stored, hostile.Put(t, a, hostile.Backup{Name: name,
			Chunks: [][]hostile.Member{{{Name: "pgdata/base/1/16400", Body: name}}}, Signed: true}))
	}
	pgtest.Chown(t, s.storeDir)

	delete(key, "private")
	siteCfg["basebackup_count"] = 1
	siteCfg["basebackup_count_min"] = 1
	s.writeConfig("", cfg)
	s.mustHoard("retention")

	ctx := context.Background()
	for i, b := range stored {
		keep := i == len(stored)-1
		for _, k := range append([]string{b.ControlKey}, b.ChunkKeys...) {
			_, err := st.Stat(ctx, k)
			switch {
			case keep && err != nil:
				t.Errorf("newest backup's %s: %v, want kept", k, err)
			case !keep && !errors.Is(err, storage.ErrNotFound):
				t.Errorf("old backup's %s: %v, want deleted", k, err)
			}
		}
	}
}
