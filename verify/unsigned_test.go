package verify

import (
	"context"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// stripHMAC removes backup b's metadata HMAC, as someone who can write
// the storage but holds no key can (and as a backup from before hoard
// signed them looks).
func stripHMAC(t *testing.T, a *archive.Archive, b *archive.BackupInfo) {
	t.Helper()
	storetest.Rewrite(t, a.Store, b.Key, func(data []byte, md storage.Metadata) []byte {
		delete(md, archive.MetaBackupMAC)
		return data
	})
}

// TestRun_UnsignedBackups: in a local site that signs its backups, a
// backup without a metadata HMAC older than the first authenticated one
// (from before the upgrade) is a note and verify passes; one newer than
// it (planted, or its HMAC stripped) makes that backup limited and
// verify fail, naming it; with every HMAC stripped but the site's
// signed-backups marker there, every backup is named. Before, verify
// passed all three archives without a word.
func TestRun_UnsignedBackups(t *testing.T) {
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	a := archivetest.New(t, storage.NewLocal(t.TempDir()), &archive.Codec{Compression: compress.Zstd,
		KeyID: "k", PublicKey: &k.PublicKey, PrivateKeys: map[string]*rsa.PrivateKey{"k": k}})
	old := putBackup(t, a, "b0", 1, 2, 3, t0)
	stripHMAC(t, a, old)
	signed := putBackup(t, a, "b1", 1, 4, 4, t0.Add(time.Hour))
	if err := a.MarkSigned(context.Background()); err != nil {
		t.Fatal(err)
	}
	newer := putBackup(t, a, "b2", 1, 5, 5, t0.Add(2*time.Hour))
	putSegments(t, a, 1, 1, 7)

	rep := run(t, a, false)
	if !rep.OK() {
		t.Fatalf("an unsigned backup older than the first signed one fails verify:\n%s", problems(rep))
	}
	if n := rep.Backups[0].Notes; len(n) != 1 || !strings.Contains(n[0], "no HMAC, but it is older than the site's first authenticated backup (b1)") {
		t.Errorf("b0's notes: %q", n)
	}

	stripHMAC(t, a, newer)
	rep = run(t, a, false)
	if rep.OK() || rep.Backups[2].Status != StatusLimited {
		t.Fatalf("b2 stripped: OK=%v, b2 %s:\n%s", rep.OK(), rep.Backups[2].Status, problems(rep))
	}
	if p := strings.Join(rep.Backups[2].Problems, "\n"); !strings.Contains(p, "no HMAC, though this site signs its backups") ||
		!strings.Contains(p, "--basebackup b2") {
		t.Errorf("b2's problems: %s", p)
	}
	for _, i := range []int{0, 1} {
		if rep.Backups[i].Status != StatusOK {
			t.Errorf("%s: %s\n%s", rep.Backups[i].Name, rep.Backups[i].Status, problems(rep))
		}
	}

	stripHMAC(t, a, signed)
	rep = run(t, a, false)
	if rep.OK() {
		t.Fatalf("every HMAC stripped: OK")
	}
	for _, b := range rep.Backups {
		if b.Status != StatusLimited || !strings.Contains(strings.Join(b.Problems, "\n"), "none of them authenticates") {
			t.Errorf("every HMAC stripped: %s %s: %q", b.Name, b.Status, b.Problems)
		}
	}
}
