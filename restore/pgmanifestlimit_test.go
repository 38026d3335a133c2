package restore_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/verify"
)

// TestRun_ErrIncrementalPGManifestLimit: an incremental backup whose
// backup_manifest is larger than restore reads for an incremental level
// of a chain (archive.MaxPGManifest, lowered here) is refused by
// restore, and verify, with and without --full, calls it broken with
// restore's words; the full backup it was taken against, whose
// backup_manifest is as large, restore takes as a parent and verify
// calls ok. Before, verify called the incremental backup ok.
func TestRun_ErrIncrementalPGManifestLimit(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	const limit = 100 // below either backup's backup_manifest
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	_, cst := restore.PutChain(t, a, parent, child)
	// The WAL of both backups (hostile.StartSegment on), of their system.
	for _, name := range []string{hostile.StartSegment, "000000010000000000000003"} {
		seg := waltest.SegmentOf(t, name, 16<<20, 0, 7000000000000000001)
		sum := sha1.Sum(seg)
		md := storage.Metadata{archive.MetaHash: hex.EncodeToString(sum[:]), archive.MetaHashAlgorithm: "sha1"}
		if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(name), bytes.NewReader(seg), int64(len(seg)), md); err != nil {
			t.Fatal(err)
		}
	}
	restore.SetMaxPGManifest(t, limit)
	want := fmt.Sprintf("control object %s: member %s over %d bytes", cst.ControlKey, archive.ControlPGManifest, limit)

	e := hostile.NewEnv(t)
	_, err := restore.Run(context.Background(), restore.Options{
		Archive: a, TargetDir: e.Target(), Backup: child, TablespaceDirs: map[string]string{"new": filepath.Join(e.Parent, "new")},
		RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop(),
	})
	if !errors.Is(err, archive.ErrControlLimit) || !strings.Contains(err.Error(), want) {
		t.Fatalf("restore of %s: %v, want ErrControlLimit saying %q", child, err, want)
	}

	for _, full := range []bool{false, true} {
		rep, err := verify.Run(context.Background(), verify.Options{Archive: a, Full: full, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Backups) != 2 || rep.Backups[0].Name != parent || rep.Backups[1].Name != child {
			t.Fatalf("full=%v: report of %d backups, want %s and %s", full, len(rep.Backups), parent, child)
		}
		if p := rep.Backups[0]; p.Status != verify.StatusOK {
			t.Errorf("full=%v: the full backup %s, want %s: %q", full, p.Status, verify.StatusOK, p.Problems)
		}
		c := rep.Backups[1]
		if c.Status != verify.StatusBroken || c.Restorable || !strings.Contains(strings.Join(c.Problems, "\n"), want) {
			t.Errorf("full=%v: the incremental backup %s (restorable %v): %q; want %s, saying %q as restore does",
				full, c.Status, c.Restorable, c.Problems, verify.StatusBroken, want)
		}
	}
}
