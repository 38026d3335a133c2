package archive

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// openHookStore calls hook before each Open, with the key.
type openHookStore struct {
	storage.Store
	hook func(key string)
}

func (s openHookStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	s.hook(key)
	return s.Store.Open(ctx, key)
}

// TestArchive_PlanRetentionBesideAnother: two retention runs at once (a
// `hoard retention` by hand beside the daemon's, or the daemons of two
// hosts on one bucket). Run B listed three backups and keeps the two
// newest; while it checks them, run A, whose plan (it counted a newer
// backup, or its host keeps fewer) keeps only the newest, deletes the
// other. B must not report the backup A deleted as damaged (the daemon
// would raise backup_damaged and keep older backups "in its place"); it
// plans again without it. Before, B's plan named it DAMAGED ("... not
// found").
func TestArchive_PlanRetentionBesideAnother(t *testing.T) {
	ctx := context.Background()
	a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
	putBackup(t, a, "2024-03-07_10-00_0", "000000010000000000000002", 2, 0)
	putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000004", 2, 0)
	putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000006", 2, 0)
	putWAL(t, a, segs(1, 1, 7)...)
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)

	var once sync.Once
	var aErr error
	b := *a
	b.Store = openHookStore{Store: a.Store, hook: func(key string) {
		if !strings.HasPrefix(key, a.Layout.Dir(BasebackupDir)) {
			return
		}
		once.Do(func() {
			plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
			if err == nil {
				_, err = a.ApplyRetention(ctx, plan, zerolog.Nop())
			}
			aErr = err
		})
	}}
	plan, err := b.PlanRetention(ctx, RetentionPolicy{MaxCount: 2}, now)
	if aErr != nil {
		t.Fatalf("run A: %v", aErr)
	}
	if err != nil {
		t.Fatalf("run B beside run A: %v", err)
	}
	if len(plan.Damaged) != 0 || plan.KeptExtra() != 0 {
		t.Errorf("run B reports damage (%d kept extra): %q", plan.KeptExtra(), plan.Damaged)
	}
	if _, err := b.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatalf("apply run B: %v", err)
	}
	bs, err := a.ListBackups(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "2024-03-09_10-00_0" {
		t.Fatalf("backups left: %v, %v; want the newest", bs, err)
	}
	if err := a.CheckBackup(ctx, bs[0], true); err != nil {
		t.Errorf("newest backup: %v", err)
	}
	keys := storeKeys(t, a.Store)
	for _, s := range segs(1, 6, 7) {
		if !slices.Contains(keys, a.Layout.WALKey(s)) {
			t.Errorf("WAL %s, which the newest backup needs, deleted", s)
		}
	}
}

// TestArchive_PlanRetentionKeepsRunningWAL: the chunk folder of a backup
// without a main object (running: its objects are recent) whose name says
// it started before the newest backup keeps the WAL from the start of the
// newest backup that started an hour (runningSkew) before it, or every
// WAL file when none did. basebackup's TestRun_RetentionBesideOlderBackup
// runs this with real backups.
func TestArchive_PlanRetentionKeepsRunningWAL(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Minute)
	name := func(t time.Time) string { return t.Format("2006-01-02_15-04") + "_0" }
	tests := []struct {
		name    string
		oldest  time.Time // start of the oldest backup (segment 2)
		newest  time.Time // start of the newest backup (segment 6)
		running time.Time // name time of the running backup
		keep    string    // first WAL segment kept
	}{
		{"BackupBefore", now.Add(-48 * time.Hour), now.Add(-10 * time.Minute), now.Add(-20 * time.Minute), "000000010000000000000002"},
		{"NoBackupBefore", now.Add(-30 * time.Minute), now.Add(-10 * time.Minute), now.Add(-20 * time.Minute), "000000010000000000000001"},
		// Started over an hour after the newest: the plan as without it.
		{"StartedAfter", now.Add(-48 * time.Hour), now.Add(-3 * time.Hour), now.Add(-20 * time.Minute), "000000010000000000000006"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
			putBackup(t, a, name(tt.oldest), "000000010000000000000002", 1, 0)
			putBackup(t, a, name(tt.newest), "000000010000000000000006", 1, 0)
			putWAL(t, a, segs(1, 1, 7)...)
			running := name(tt.running)
			if _, err := a.Codec.Put(ctx, a.Store, a.Layout.ChunkKey(ChunkFilename(running, 1)), strings.NewReader("chunk"), 5, nil); err != nil {
				t.Fatal(err)
			}
			plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Delete) != 1 {
				t.Errorf("plan deletes %q, want the oldest backup", names(plan.Delete))
			}
			for _, s := range segs(1, 1, 7) {
				deleted := slices.ContainsFunc(plan.WAL, func(d WALDeletion) bool { return d.Name == s })
				if want := s < tt.keep; deleted != want {
					t.Errorf("WAL %s deleted: %v, want %v (notes %q)", s, deleted, want, plan.Notes)
				}
			}
		})
	}
}
