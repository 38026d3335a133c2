package verify

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// retentionAtStat runs retention (basebackup_count=1) on a's own store at
// the first Stat of a key under prefix, two days after now: the backups
// are unsigned, and retention leaves the chunk folder of an unsigned one
// written to in the last day (archive's deleteBackup).
type retentionAtStat struct {
	storage.Store
	a      *archive.Archive
	prefix string
	once   *sync.Once
	err    *error
}

func (s retentionAtStat) Stat(ctx context.Context, key string) (storage.Object, error) {
	if strings.HasPrefix(key, s.prefix) {
		s.once.Do(func() {
			plan, err := s.a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now().Add(2*archive.OrphanMinAge))
			if err == nil {
				_, err = s.a.ApplyRetention(ctx, plan, zerolog.Nop())
			}
			*s.err = err
		})
	}
	return s.Store.Stat(ctx, key)
}

// TestRun_BackupDeletedByRetention: retention deletes the older of two
// backups while verify checks its chunks. The report says the backup was
// deleted meanwhile (StatusDeleted) and the run passes on the backup
// that is left; before, the backup was "broken" with its chunks
// "missing", and verify failed on an archive with nothing wrong in it.
func TestRun_BackupDeletedByRetention(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putBackup(t, a, "b2", 1, 5, 5, t0.Add(time.Hour))
	putSegments(t, a, 1, 1, 7)
	var rerr error
	v := *a
	v.Store = retentionAtStat{Store: a.Store, a: a, prefix: a.Layout.Dir(archive.BasebackupChunkDir) + "b1/", once: &sync.Once{}, err: &rerr}
	rep := run(t, &v, false)
	if rerr != nil {
		t.Fatalf("retention: %v", rerr)
	}
	if !rep.OK() {
		t.Errorf("verify fails on a backup retention deleted meanwhile:\n%s", problems(rep))
	}
	if len(rep.Backups) != 2 || rep.Backups[0].Status != StatusDeleted || rep.Backups[1].Status != StatusOK {
		t.Fatalf("report %+v: want b1 deleted, b2 ok", rep.Backups)
	}
	if n := strings.Join(rep.Backups[0].Notes, "; "); !strings.Contains(n, "retention") {
		t.Errorf("b1's notes %q do not say retention deleted it", n)
	}
}
