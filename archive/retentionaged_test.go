package archive

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// future is the modification time someone who can write the storage gives
// what they plant (touch -d 2099-01-01 on a local store).
var future = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)

// TestArchive_PlanRetentionOrphanFutureMTime: chunks of no backup, planted
// in a local store with their modification time in 2099, and stored
// before the newest backup started and more than a day before retention
// runs, are an orphaned folder that keeps no WAL. Their age is the
// storage's own time of writing (storedAt: the inode change time here),
// which no writer sets; by their mtime they would count as a backup
// running since the start their folder's name claims, keeping every WAL
// file from it, forever.
func TestArchive_PlanRetentionOrphanFutureMTime(t *testing.T) {
	ctx := context.Background()
	a, dir, _, now := twoBackups(t)
	const name = "2024-03-01_10-00_0"
	planted := putBackup(t, a, name, "000000010000000000000001", 2, 0)
	if err := a.Store.Delete(ctx, planted[len(planted)-1]); err != nil {
		t.Fatal(err)
	}
	chunks := planted[:len(planted)-1]
	setModified(t, dir, chunks, future)
	ageKeys(a, chunks, time.Date(2024, 3, 8, 10, 0, 0, 0, time.UTC))
	p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{a.Layout.Dir(BasebackupChunkDir) + name + "/"}, orphanFolders(p)); diff != "" {
		t.Errorf("orphans (-want +got):\n%s\nnotes %q", diff, p.Notes)
	}
	if p.WALHorizonBackup != "2024-03-09_10-00_0" || len(p.WAL) != 3 {
		t.Errorf("WAL horizon %s (%s), %d WAL files deleted; want the newest backup's start, segments 1 to 3 deleted; notes %q",
			p.WALHorizon, p.WALHorizonBackup, len(p.WAL), p.Notes)
	}
}

// TestArchive_PlanRetentionPlantedS3: on a real S3 store (MinIO), chunks
// of no backup and a delta backup's marker planted with a modification
// time of 2099 in their user metadata (as tools that keep a file's mtime
// store it) are aged by the server's Last-Modified: a day after a newer
// backup started they are orphans, and the marker does not stop retention
// from deleting a delta object no backup refers to. S3 reports only its
// Last-Modified, the server's time, as both times of an object
// (storage.Object), so this held before retention aged objects by
// storedAt too: it keeps a backend that would read a time from the
// metadata from opening the hole there.
func TestArchive_PlanRetentionPlantedS3(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, storetest.MinIO(t))
	a := &Archive{Store: st, Codec: retentionCodec(t), Layout: Layout{Prefix: "site"}, Site: "site"}
	const chunks, delta = "2024-03-01_10-00_0", "2024-03-02_10-00_0"
	md := storage.Metadata{"mtime": strconv.FormatInt(future.Unix(), 10), "last-modified": future.Format(time.RFC1123)}
	for _, k := range []string{a.Layout.ChunkKey(ChunkFilename(chunks, 1)), a.Layout.DeltaRunningKey(delta)} {
		if err := st.Put(ctx, k, bytes.NewReader([]byte("planted")), md); err != nil {
			t.Fatal(err)
		}
	}
	unreferenced := putDelta(t, a, digest('d'))
	// The newest backup started after all of them; retention runs two
	// days later.
	newest := time.Now().UTC().Add(time.Hour)
	putBackup(t, a, newest.Format("2006-01-02_15-04")+"_0", "000000010000000000000004", 1, 0)
	putWAL(t, a, segs(1, 1, 5)...)
	p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, newest.Add(2*OrphanMinAge))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{a.Layout.Dir(BasebackupChunkDir) + chunks + "/", a.Layout.Dir(basebackupDeltaChunkDir) + delta + "/"}
	if diff := cmp.Diff(want, orphanFolders(p)); diff != "" {
		t.Errorf("orphans (-want +got):\n%s\nnotes %q", diff, p.Notes)
	}
	if len(p.Delta) != 1 || p.Delta[0].Key != unreferenced[0] {
		t.Errorf("delta deletions %+v, want %s; notes %q", p.Delta, unreferenced[0], p.Notes)
	}
	if len(p.WAL) != 3 {
		t.Errorf("%d WAL files deleted, want segments 1 to 3; notes %q", len(p.WAL), p.Notes)
	}
}

// orphanFolders returns the folders p deletes as orphans.
func orphanFolders(p RetentionPlan) []string {
	var out []string
	for _, o := range p.Orphans {
		out = append(out, o.Folder)
	}
	return out
}
