package basebackup

import (
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_IncrementalParentDamagedTwin: an incremental backup of a real
// PostgreSQL 17 (summarize_wal on, local storage) is not taken on a
// parent whose name a damaged object shares. Restore resolves a parent by
// name among the copies it takes (archive.Archive.FirstCopies, sound or
// damaged) and refuses a child whose parent's name is held by a damaged
// object ("whose object ... is damaged"), so a backup taken on it would
// restore nothing:
//
//   - Parent: someone who can write the bucket but holds no key stores
//     an object under the other key of the parent P's name
//     (basebackup/P, beside basebackup/P.00000000.pghoard) with metadata
//     that does not parse;
//   - ChainParent: the same beside F, the full backup P (an incremental
//     backup) was taken against.
//
// (ChainParent checks restore.Run's refusal of P.) The backup fails wrapping ErrNoParent and ErrBrokenParent (the daemon
// takes a full one instead), naming the damaged object, and stores no
// backup. Before, findParent followed the chain among the sound backups
// only, and took the incremental backup on P.
func TestRun_IncrementalParentDamagedTwin(t *testing.T) {
	cl := pgtest.Start(t, pgtest.Options{Major: 17, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, cl, "-i", "-s", "1")
	ctx := testContext(t)
	// plant stores a damaged object under the other key of b's name.
	plant := func(t *testing.T, a *archive.Archive, b *archive.BackupInfo) string {
		t.Helper()
		o, err := a.Store.Stat(ctx, b.Key)
		if err != nil {
			t.Fatal(err)
		}
		md := storage.Metadata{}
		for k, v := range o.Metadata {
			md[k] = v
		}
		md[archive.MetaStartTime] = "last week"
		key := a.Layout.Dir(archive.BasebackupDir) + b.Name
		if err := a.Store.Put(ctx, key, strings.NewReader("x"), md); err != nil {
			t.Fatal(err)
		}
		return key
	}
	refused := func(t *testing.T, a *archive.Archive, key string) {
		t.Helper()
		before, err := a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		inc, err := streamBackup(ctx, t, cl, a, true)
		if err == nil {
			t.Fatalf("incremental backup %s stored on parent %s, whose chain restore refuses (%s is damaged)", inc.Name, inc.Parent, key)
		}
		if !errors.Is(err, ErrNoParent) || !errors.Is(err, ErrBrokenParent) || !strings.Contains(err.Error(), key) {
			t.Fatalf("got %v, want ErrNoParent and ErrBrokenParent naming %s", err, key)
		}
		after, err := a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("%d backups listed after the refused one, want %d", len(after), len(before))
		}
	}
	t.Run("Parent", func(t *testing.T) {
		a := localArchive(t)
		p, err := streamBackup(ctx, t, cl, a, false)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, a, plant(t, a, p))
	})
	t.Run("ChainParent", func(t *testing.T) {
		a := localArchive(t)
		f, err := streamBackup(ctx, t, cl, a, false)
		if err != nil {
			t.Fatal(err)
		}
		p, err := streamBackup(ctx, t, cl, a, true)
		if err != nil {
			t.Fatal(err)
		}
		if p.Parent != f.Name {
			t.Fatalf("incremental backup's parent %q, want %s", p.Parent, f.Name)
		}
		key := plant(t, a, f)
		// Restore's own refusal of the chain: P's, through F.
		_, err = restore.Run(ctx, restore.Options{Archive: a, TargetDir: t.TempDir(), Backup: p.Name, ArchiveOff: true, Logger: zerolog.Nop()})
		if !errors.Is(err, restore.ErrBrokenChain) || !strings.Contains(err.Error(), key) {
			t.Fatalf("restore of %s: got %v, want ErrBrokenChain naming %s", p.Name, err, key)
		}
		refused(t, a, key)
	})
}
