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
