package daemon

import (
	"context"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_OtherSystemHistories: a site with keys holding 00000002.history
// signed for another database system (the old cluster's, left by a
// pg_upgrade into the same site) above the node's timeline 1: the daemon
// logs once, at error level, the files' timeline and system, the node's,
// and what to do, after the backup loop first lists the backups; with the
// WAL stream (IDENTIFY_SYSTEM gives the node's timeline) and in
// archive_command mode (pg_control_checkpoint() over an ordinary
// connection gives it).
func TestRun_OtherSystemHistories(t *testing.T) {
	for _, mode := range []string{WALStream, WALArchiveCommand} {
		t.Run(mode, func(t *testing.T) { testOtherSystemHistories(t, mode) })
	}
}

func testOtherSystemHistories(t *testing.T, mode string) {
	ctx := context.Background()
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	site := streamingSiteTo(t, c.ConnString("postgres"), storage.NewLocal(t.TempDir()))
	if mode == WALArchiveCommand {
		site.ActiveBackupMode, site.WAL, site.Slot = "archive_command", WALArchiveCommand, ""
	}
	arch, _, err := site.OpenArchive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	arch.Codec.KeyID, arch.Codec.PublicKey, arch.Codec.RequireEncryption = "k1", &k.PublicKey, true
	arch.Codec.PrivateKeys = map[string]*rsa.PrivateKey{"k1": k}
	path := filepath.Join(t.TempDir(), "00000002.history")
	if err := os.WriteFile(path, []byte("1\t0/5000000\tno recovery target specified\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := arch.PushWAL(ctx, path, archive.PushOptions{SystemID: 7000000000000000001}); err != nil {
		t.Fatal(err)
	}
	rd := runDaemon(t, Options{Sites: []Site{site}})
	const want = "the site holds timeline history files of database system 7000000000000000001 on timeline 2, above timeline 1 of this cluster (system "
	deadline := time.Now().Add(runTimeout)
	for !strings.Contains(rd.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within %s", want, runTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rd.stop()
	var lines []string
	for _, l := range strings.Split(rd.logs.String(), "\n") {
		if strings.Contains(l, want) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"error"`) || !strings.Contains(lines[0], "backup_sites.") ||
		!strings.Contains(lines[0], "after pg_upgrade") {
		t.Errorf("want one error line saying what to do after pg_upgrade, got %d:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}
