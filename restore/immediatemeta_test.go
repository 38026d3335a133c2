package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/storage"
)

// editMetadata stores the object key of a again with the same bytes and
// its metadata changed by edit, as a writer of the bucket without the
// key can.
func editMetadata(t testing.TB, a *archive.Archive, key string, edit func(storage.Metadata)) {
	t.Helper()
	rewriteStored(t, a, key, func(_ []byte, md storage.Metadata) { edit(md) })
}

// TestRun_ImmediateUnreadableNewest: with --target-immediate the
// automatic choice does not pass over a newer backup whose metadata
// cannot be read or does not authenticate: the older backup it would
// restore gives an older state, without the commits between the two,
// and nothing would fail. The restore fails naming that backup and what
// to run, and writes nothing. Without --target-immediate it is passed
// over as before (recovery replays the WAL to the same end). A damaged
// entry whose name says it started before the backup chosen, and an
// object that hoard and PGHoard never name a backup, are no newer
// backup: the restore goes on.
func TestRun_ImmediateUnreadableNewest(t *testing.T) {
	garble := func(md storage.Metadata) { md[archive.MetaStartTime] = "not a time" }
	cases := []struct {
		name   string
		keys   bool
		victim string // the entry whose metadata is edited
		edit   func(storage.Metadata)
		want   error  // nil: the --target-immediate restore succeeds
		chosen string // the backup restored without a target
	}{
		{name: "ErrUnauthenticated", keys: true, victim: newerBackup, edit: func(md storage.Metadata) { md[archive.MetaEndLSN] = "0/300200" },
			want: ErrUnreadableNewer, chosen: olderBackup},
		{name: "ErrMetadataUnreadable", victim: newerBackup, edit: garble, want: ErrUnreadableNewer, chosen: olderBackup},
		{name: "ErrMetadataUnreadableKeys", keys: true, victim: newerBackup, edit: garble, want: ErrUnreadableNewer, chosen: olderBackup},
		{name: "OlderUnreadable", victim: "2026-01-02_02-00_0", edit: garble, chosen: newerBackup},
		{name: "OlderUnauthenticated", keys: true, victim: "2026-01-02_02-00_0",
			edit: func(md storage.Metadata) { md[archive.MetaEndLSN] = "0/300200" }, chosen: newerBackup},
		{name: "NotABackupName", victim: "notes", edit: garble, chosen: newerBackup},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &archive.Codec{Compression: compress.Zstd}
			if tc.keys {
				archivetest.AddKeys(t, c)
			}
			a := archivetest.New(t, storage.NewMem(), c)
			for _, name := range []string{olderBackup, newerBackup, tc.victim} {
				if _, err := a.Store.Stat(context.Background(), a.Layout.BackupKey(name)); err != nil {
					hostile.Put(t, a, hostile.Backup{Name: name, Signed: tc.keys})
				}
			}
			editMetadata(t, a, a.Layout.BackupKey(tc.victim), tc.edit)
			ctx := context.Background()

			e := hostile.NewEnv(t)
			res, err := Run(ctx, Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if err != nil {
				t.Fatalf("automatic restore to the end of the archive: %v", err)
			}
			if res.Backup.Name != tc.chosen {
				t.Errorf("automatic restore to the end of the archive restored %s, want %s", res.Backup.Name, tc.chosen)
			}

			e = hostile.NewEnv(t)
			res, err = Run(ctx, Options{Archive: a, TargetDir: e.Target(), Target: Target{Immediate: true},
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("automatic restore --target-immediate: %v", err)
				}
				if res.Backup.Name != tc.chosen {
					t.Errorf("automatic restore --target-immediate restored %s, want %s", res.Backup.Name, tc.chosen)
				}
				return
			}
			if err == nil {
				t.Fatalf("automatic restore --target-immediate with %s's metadata unreadable: restored %s, want %v", tc.victim, res.Backup.Name, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("automatic restore --target-immediate: %v, want %v", err, tc.want)
			}
			for _, w := range []string{tc.victim, tc.chosen, "--target-immediate", "--basebackup", "--target-lsn"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
				t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
			}

			// Named, the older backup is restored to its own end.
			e = hostile.NewEnv(t)
			if _, err := Run(ctx, Options{Archive: a, TargetDir: e.Target(), Backup: tc.chosen, Target: Target{Immediate: true},
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()}); err != nil {
				t.Fatalf("restore --basebackup %s --target-immediate: %v", tc.chosen, err)
			}
			if _, err := os.Stat(filepath.Join(e.Target(), "global", "pg_control")); err != nil {
				t.Errorf("the named backup is not restored: %v", err)
			}
		})
	}
}
