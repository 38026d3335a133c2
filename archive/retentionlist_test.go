package archive

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/pghoardtest"
	"github.com/hoardbackup/hoard/storage"
)

// planUnlisted plans retention on st, applies the plan when one is made,
// and checks that the plan failed naming backup and that nothing was
// deleted from a's store.
func planUnlisted(t *testing.T, a *Archive, st storage.Store, p RetentionPolicy, now time.Time, backup string) {
	t.Helper()
	ctx := context.Background()
	before := storeKeys(t, a.Store)
	short := *a
	short.Store = st
	plan, err := short.PlanRetention(ctx, p, now)
	if err == nil {
		if _, err := short.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		t.Errorf("retention planned without backup %s: deletes %q, WAL %d files, orphans %d, delta %d",
			backup, names(plan.Delete), len(plan.WAL), len(plan.Orphans), len(plan.Delta))
	} else if t.Logf("error: %v", err); !strings.Contains(err.Error(), backup) {
		t.Errorf("error %q does not name backup %s", err, backup)
	}
	if diff := cmp.Diff(before, storeKeys(t, a.Store)); diff != "" {
		t.Errorf("objects deleted (-before +after):\n%s", diff)
	}
}

// TestArchive_PlanRetentionUnlisted: a backup the listing of basebackup/
// left out, whatever its kind, makes retention fail and delete nothing.
// Before, the plan made without it deleted the WAL it needs (a PGHoard
// single-tar or delta backup older than every listed one) or the parent
// of an incremental backup (the folder checks of checkUnlisted only ran on
// folders old enough to be deleted as orphans; a single tar has none).
func TestArchive_PlanRetentionUnlisted(t *testing.T) {
	// pghoardSite is the archive a real PGHoard made in mode, with a newer
	// hoard backup starting in segment start.
	pghoardSite := func(t *testing.T, mode, start string) *Archive {
		a := &Archive{Store: pghoardtest.CopyReal(t, mode), Codec: &Codec{Compression: "zstd"}, Layout: Layout{Prefix: "site"}, Site: "site"}
		putBackup(t, a, "2026-12-02_05-00_0", start, 1, 0)
		return a
	}
	pghoardNow := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)

	// A single tar has no chunk folder: only its main object says it is
	// stored, and a second listing finds what the first left out: the
	// plan is made again, with it, as for a backup that completes while
	// retention plans (basebackup's TestRun_RetentionWhileCompleting).
	// Before, retention failed.
	t.Run("SingleTarListedOnce", func(t *testing.T) {
		a := pghoardSite(t, "basic", "000000010000000000000003")
		const name = "2026-12-02_03-56_0"
		st := hidingStore{Store: a.Store, hidden: map[string]bool{"site/basebackup/" + name: true}, once: true}
		short := *a
		short.Store = st
		plan, err := short.PlanRetention(context.Background(), RetentionPolicy{MaxCount: 2}, pghoardNow)
		if err != nil {
			t.Fatal(err)
		}
		kept := slices.ContainsFunc(plan.Keep, func(d BackupDecision) bool { return d.Backup.Name == name })
		if !kept || len(plan.Delete) != 0 || plan.WALHorizonBackup != name {
			t.Errorf("plan keeps %q, deletes %q, WAL before %s's start: want %s counted and kept, and its WAL",
				names(plan.Keep), names(plan.Delete), plan.WALHorizonBackup, name)
		}
		if !slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.Contains(n, name) && strings.Contains(n, "planned again") }) {
			t.Errorf("no note says the plan was made again: %q", plan.Notes)
		}
	})
	// A delta backup's bundle folder, written after the newest listed
	// backup started, is not an orphan yet: its main object is looked
	// for all the same.
	t.Run("Delta", func(t *testing.T) {
		a := pghoardSite(t, "delta", "000000010000000000000004")
		const name = "2026-12-02_04-34_0"
		st := hidingStore{Store: a.Store, hidden: map[string]bool{"site/basebackup/" + name + ControlSuffix: true}}
		planUnlisted(t, a, st, RetentionPolicy{MaxCount: 2}, pghoardNow, name)
	})
	// A full backup, an incremental one of it and a newer full backup,
	// by age: the policy deletes the oldest and keeps it as the kept
	// incremental's parent.
	incremental := func(t *testing.T) (*Archive, RetentionPolicy, time.Time) {
		a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
		putBackup(t, a, "2024-03-01_10-00_0", "000000010000000000000002", 1, 0)
		putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000004", 1, 0)
		setParent(t, a, "2024-03-08_10-00_0", "2024-03-01_10-00_0")
		putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000006", 1, 0)
		putWAL(t, a, segs(1, 1, 7)...)
		return a, RetentionPolicy{MinCount: 1, MaxAge: 3 * 24 * time.Hour}, time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	}
	t.Run("IncrementalListed", func(t *testing.T) {
		a, p, now := incremental(t)
		plan, err := a.PlanRetention(context.Background(), p, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Delete) != 0 || plan.WALHorizonBackup != "2024-03-01_10-00_0" {
			t.Errorf("plan deletes %q, WAL before %s's start: want the incremental's parent and its WAL kept", names(plan.Delete), plan.WALHorizonBackup)
		}
	})
	t.Run("Incremental", func(t *testing.T) {
		a, p, now := incremental(t)
		const name = "2024-03-08_10-00_0"
		st := hidingStore{Store: a.Store, hidden: map[string]bool{a.Layout.BackupKey(name): true}}
		planUnlisted(t, a, st, p, now, name)
	})
}

// headLyingStore answers HEAD with not found for some stored keys, as a
// storage (or a proxy before it) that lies by omission does: Stat and
// Open fail, as storage.Bucket's do (Open asks HEAD for the metadata
// first); List and OpenRange (a plain GET) still find them.
type headLyingStore struct {
	storage.Store
	missing map[string]bool
}

func (s headLyingStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	if s.missing[key] {
		return storage.Object{}, fmt.Errorf("stat %s: %w", key, storage.ErrNotFound)
	}
	return s.Store.Stat(ctx, key)
}

func (s headLyingStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if s.missing[key] {
		return nil, storage.Object{}, fmt.Errorf("open %s: %w", key, storage.ErrNotFound)
	}
	return s.Store.Open(ctx, key)
}

// TestArchive_PlanRetentionHEADNotFound: an object that HEAD says is not
// there but GET reads is stored; retention fails, naming it, and deletes
// nothing. Before, such a backup was taken as deleted since the listing
// (or its folder as an orphan), and a preservation request as withdrawn.
func TestArchive_PlanRetentionHEADNotFound(t *testing.T) {
	const name = "2024-03-07_10-00_0"
	t.Run("Unlisted", func(t *testing.T) {
		a, _, old, now := twoBackups(t)
		main := old[len(old)-1]
		st := headLyingStore{Store: hidingStore{Store: a.Store, hidden: map[string]bool{main: true}}, missing: map[string]bool{main: true}}
		planUnlisted(t, a, st, RetentionPolicy{MaxCount: 2}, now, name)
	})
	t.Run("Listed", func(t *testing.T) {
		a, _, old, now := twoBackups(t)
		st := headLyingStore{Store: a.Store, missing: map[string]bool{old[len(old)-1]: true}}
		planUnlisted(t, a, st, RetentionPolicy{MaxCount: 2}, now, name)
	})
	t.Run("Preservation", func(t *testing.T) {
		a, _, _, now := twoBackups(t)
		key := a.Layout.Dir(PreservationDir) + name + "_2024-04-01"
		md := storage.Metadata{MetaPreserveBackup: name, MetaPreserveUntil: "2024-04-01 00:00:00+00:00"}
		if err := a.Store.Put(context.Background(), key, strings.NewReader(""), md); err != nil {
			t.Fatal(err)
		}
		st := headLyingStore{Store: a.Store, missing: map[string]bool{key: true}}
		planUnlisted(t, a, st, RetentionPolicy{MaxCount: 1}, now, key)
	})
}

// TestArchive_PlanRetentionSeen: a backup an earlier listing returned
// (RetentionPolicy.Seen, the daemon's) and this one leaves out, every
// time, is looked up by key: stored, it makes retention fail and delete
// nothing; gone (deleted by someone else), it is no longer needed.
func TestArchive_PlanRetentionSeen(t *testing.T) {
	const name = "2026-12-02_03-56_0"
	site := func(t *testing.T) (*Archive, string) {
		a := &Archive{Store: pghoardtest.CopyReal(t, "basic"), Codec: &Codec{Compression: "zstd"}, Layout: Layout{Prefix: "site"}, Site: "site"}
		putBackup(t, a, "2026-12-02_05-00_0", "000000010000000000000003", 1, 0)
		return a, a.Layout.Dir(BasebackupDir) + name
	}
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	t.Run("ErrStored", func(t *testing.T) {
		a, key := site(t)
		st := hidingStore{Store: a.Store, hidden: map[string]bool{key: true}}
		planUnlisted(t, a, st, RetentionPolicy{MaxCount: 2, Seen: []string{key}}, now, name)
	})
	t.Run("OKGone", func(t *testing.T) {
		a, key := site(t)
		if err := a.Store.Delete(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		p, err := a.PlanRetention(context.Background(), RetentionPolicy{MaxCount: 2, Seen: []string{key}}, now)
		if err != nil {
			t.Fatal(err)
		}
		if p.WALHorizonBackup != "2026-12-02_05-00_0" || len(p.WAL) != 2 {
			t.Errorf("WAL horizon %s, %d files deleted: want the WAL before the only backup's start deleted", p.WALHorizonBackup, len(p.WAL))
		}
	})
}

// ghostStore lists key, which it does not hold, after the objects it
// holds: a listing not yet consistent with a delete (Swift's container
// listings are updated after the delete returns).
type ghostStore struct {
	storage.Store
	key string
}

func (s ghostStore) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	if err := s.Store.List(ctx, prefix, fn); err != nil {
		return err
	}
	if !strings.HasPrefix(s.key, prefix) {
		return nil
	}
	return fn(storage.Object{Key: s.key, Size: 1, Modified: time.Now()})
}

// TestArchive_PlanRetentionGhostListed: a backup deleted before the run,
// which the storage still lists (HEAD and GET say it is gone), is not
// needed: retention plans as without it. Before, the second listing
// (checkListedAgain) took it for a backup the first listing left out, and
// every run failed while the listing lagged.
func TestArchive_PlanRetentionGhostListed(t *testing.T) {
	const name = "2026-12-02_03-56_0"
	a := &Archive{Store: pghoardtest.CopyReal(t, "basic"), Codec: &Codec{Compression: "zstd"}, Layout: Layout{Prefix: "site"}, Site: "site"}
	putBackup(t, a, "2026-12-02_05-00_0", "000000010000000000000003", 1, 0)
	key := a.Layout.Dir(BasebackupDir) + name
	if err := a.Store.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	ghost := *a
	ghost.Store = ghostStore{Store: a.Store, key: key}
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	p, err := ghost.PlanRetention(context.Background(), RetentionPolicy{MaxCount: 2}, now)
	if err != nil {
		t.Fatal(err)
	}
	if p.WALHorizonBackup != "2026-12-02_05-00_0" || len(p.WAL) != 2 {
		t.Errorf("WAL horizon %s, %d files deleted: want the WAL before the only backup's start deleted", p.WALHorizonBackup, len(p.WAL))
	}
}
