package archive

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// TestPlanRetention_Authenticated: backups whose metadata does not
// authenticate (planted "newer" ones, one with a copied HMAC) are not
// counted: with basebackup_count 2, the two authenticated backups and
// the WAL from the older's start stay, and a PGHoard backup older than
// both is deleted on their strength. Where no backup authenticates,
// everything is planned on its metadata, as before.
func TestPlanRetention_Authenticated(t *testing.T) {
	backup := func(name, seg string, auth BackupAuth) *BackupInfo {
		b := pghoardBackup(t, name, seg)
		b.Auth = auth
		return b
	}
	old := backup("2024-03-01_10-00_0", "000000010000000000000001", AuthNone)
	r1 := backup("2024-03-07_10-00_0", "000000010000000000000003", AuthOK)
	r2 := backup("2024-03-08_10-00_0", "000000010000000000000005", AuthOK)
	planted := backup("2099-01-01_00-00_0", "000000010000001000000000", AuthNone)
	altered := backup("2098-01-01_00-00_0", "000000010000001000000000", AuthInvalid)
	wals := segs(1, 1, 6)
	p := RetentionPolicy{MaxCount: 2}
	names := func(ds []BackupDecision) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Backup.Name)
		}
		return out
	}
	walNames := func(ds []WALDeletion) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Name)
		}
		return out
	}
	tests := []struct {
		name              string
		backups           []*BackupInfo
		delete, deleteWAL []string
	}{
		{name: "Planted", backups: []*BackupInfo{old, r1, r2, planted},
			delete: []string{old.Name}, deleteWAL: segs(1, 1, 2)},
		{name: "AlteredKeepsAllWAL", backups: []*BackupInfo{old, r1, r2, planted, altered},
			delete: []string{old.Name}},
		{name: "NoneAuthenticated", backups: []*BackupInfo{
			backup(old.Name, old.StartWALSegment, AuthNone), backup(r1.Name, r1.StartWALSegment, AuthNone),
			backup(r2.Name, r2.StartWALSegment, AuthNone), planted},
			delete: []string{old.Name, r1.Name}, deleteWAL: segs(1, 1, 4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanRetention(tc.backups, wals, p, retentionNow)
			if diff := cmp.Diff(tc.delete, names(plan.Delete)); diff != "" {
				t.Errorf("deleted backups (-want +got):\n%s\nnotes: %q", diff, plan.Notes)
			}
			if diff := cmp.Diff(tc.deleteWAL, walNames(plan.WAL)); diff != "" {
				t.Errorf("deleted WAL (-want +got):\n%s\nnotes: %q", diff, plan.Notes)
			}
			if len(plan.Keep)+len(plan.Delete) != len(tc.backups) {
				t.Errorf("plan keeps %v and deletes %v of %d backups", names(plan.Keep), names(plan.Delete), len(tc.backups))
			}
			if tc.name != "NoneAuthenticated" && !slices.ContainsFunc(plan.Notes, func(n string) bool {
				return strings.Contains(n, planted.Name)
			}) {
				t.Errorf("no note names %s: %q", planted.Name, plan.Notes)
			}
		})
	}
}

// signBackup stores backup name's control object again with its metadata
// signed, as hoard signs the backups it takes in a site with keys.
func signBackup(t testing.TB, a *Archive, name string) {
	t.Helper()
	ctx := context.Background()
	b, err := a.FindBackup(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	md := b.ToMetadata()
	if err := a.Codec.SignBackup(name, md); err != nil {
		t.Fatal(err)
	}
	body, _ := storedPlain(t, a, b.Key)
	if _, err := a.Codec.Put(ctx, a.Store, b.Key, bytes.NewReader(body), int64(len(body)), md); err != nil {
		t.Fatal(err)
	}
}

// TestArchive_PlanRetentionSameName: a main object planted under the
// other key of a backup's name (PGHoard's basebackup/NAME beside hoard's
// basebackup/NAME.00000000.pghoard) by someone who can write the bucket
// but holds no key makes retention keep more, never delete: the two
// signed backups of a site keeping two, their chunks and the WAL from
// the older's start stay, whether the planted object claims an old start
// (it would be deleted, and with it the chunk folder of that name: the
// newest backup's chunks) or is a copy of the newest's control object,
// metadata and HMAC included (which binds the name alone, so it
// authenticates, and counted twice it made the older backup surplus).
func TestArchive_PlanRetentionSameName(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	policy := RetentionPolicy{MaxCount: 2}
	const older, newest = "2024-03-08_10-00_0", "2024-03-09_10-00_0"
	setup := func(t *testing.T) (*Archive, []string) {
		a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
		keep := putBackup(t, a, older, "000000010000000000000004", 2, 0)
		keep = append(keep, putBackup(t, a, newest, "000000010000000000000006", 2, 0)...)
		signBackup(t, a, older)
		signBackup(t, a, newest)
		if err := a.MarkSigned(ctx); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, putWAL(t, a, segs(1, 4, 7)...)...)
		putWAL(t, a, segs(1, 1, 3)...)
		return a, keep
	}
	tests := []struct {
		name  string
		plant func(t *testing.T, a *Archive) storage.Metadata
	}{
		{name: "OldStart", plant: func(t *testing.T, a *Archive) storage.Metadata {
			info := &BackupInfo{Format: FormatBBv2, StartWALSegment: "000000010000000000000002",
				StartTime: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), ChunkCount: 1}
			return info.ToMetadata()
		}},
		{name: "CopiedSigned", plant: func(t *testing.T, a *Archive) storage.Metadata {
			o, err := a.Store.Stat(ctx, a.Layout.BackupKey(newest))
			if err != nil {
				t.Fatal(err)
			}
			return o.Metadata
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, keep := setup(t)
			rc, _, err := a.Store.Open(ctx, a.Layout.BackupKey(newest))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			planted := a.Layout.join(BasebackupDir, newest)
			if err := a.Store.Put(ctx, planted, bytes.NewReader(body), tc.plant(t, a)); err != nil {
				t.Fatal(err)
			}
			plan, err := a.PlanRetention(ctx, policy, now)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range plan.Delete {
				if d.Backup.Key != planted {
					t.Errorf("plan deletes backup %s (%s): %s", d.Backup.Name, d.Backup.Key, d.Reason)
				}
			}
			if !slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.Contains(n, planted) }) {
				t.Errorf("no note names %s: %q", planted, plan.Notes)
			}
			if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
				t.Fatal(err)
			}
			left := map[string]bool{}
			for _, k := range allKeys(t, a) {
				left[k] = true
			}
			for _, k := range keep {
				if !left[k] {
					t.Errorf("retention deleted %s, which a backup the policy keeps needs", k)
				}
			}
		})
	}
}

// TestArchive_PlanRetentionReservedName: a main object planted under the
// name of a folder retention keeps its own records in
// (basebackup_chunk/hoard-incremental/, the markers of incremental
// backups in progress; basebackup_delta_chunk/hoard-retention/, those of
// retention runs deleting delta objects), claiming an old start, is not
// deleted with that folder: the markers stay.
func TestArchive_PlanRetentionReservedName(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ name, format, marker string }{
		{incrementalMarkerFolder, FormatBBv2, "2024-03-09_10-00_0/1-1"},
		{deltaRetentionFolder, FormatDeltaV2, "1-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
			putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000004", 2, 0)
			putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000006", 2, 0)
			signBackup(t, a, "2024-03-08_10-00_0")
			signBackup(t, a, "2024-03-09_10-00_0")
			putWAL(t, a, segs(1, 1, 7)...)
			dir := BasebackupChunkDir
			if tc.format == FormatDeltaV2 {
				dir = basebackupDeltaChunkDir
			}
			marker := a.Layout.Dir(dir) + tc.name + "/" + tc.marker
			putMarkerKey(t, a, marker)
			info := &BackupInfo{Format: tc.format, StartWALSegment: "000000010000000000000002",
				StartTime: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), ChunkCount: 1}
			if err := a.Store.Put(ctx, a.Layout.join(BasebackupDir, tc.name), strings.NewReader("x"), info.ToMetadata()); err != nil {
				t.Fatal(err)
			}
			plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 2}, now)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Store.Stat(ctx, marker); err != nil {
				t.Errorf("marker %s after retention: %v; plan deleted %v", marker, err, names(plan.Delete))
			}
			planted := a.Layout.join(BasebackupDir, tc.name)
			if !slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.Contains(n, planted) }) {
				t.Errorf("no note names %s: %q", planted, plan.Notes)
			}
		})
	}
}

// TestArchive_ApplyRetentionRunningName: a main object planted under the
// name of a backup still being taken (its chunks stored, its control
// object not yet; the name is its start time, which anyone can foresee),
// claiming an old start, is deleted as a surplus unsigned backup, but
// the chunk folder stays while the storage wrote anything in it in the
// last day: it may be the running backup's (one running longer than a
// day too), which would otherwise be listed without its chunks once it
// stores its control object. A folder written to more than a day ago
// goes with it, as a PGHoard backup's does, and a signed backup's
// folder goes at once.
func TestArchive_ApplyRetentionRunningName(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	const running = "2024-03-10_11-00_0"
	for _, tc := range []struct {
		name    string
		written []time.Time // when the storage wrote each chunk of the running backup
		kept    bool
	}{
		{name: "OK", written: []time.Time{now.Add(-time.Hour), now.Add(-time.Hour)}, kept: true},
		{name: "LongRunning", written: []time.Time{now.Add(-48 * time.Hour), now.Add(-time.Hour)}, kept: true},
		{name: "Aged", written: []time.Time{now.Add(-49 * time.Hour), now.Add(-48 * time.Hour)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
			gone := putBackup(t, a, "2024-03-07_10-00_0", "000000010000000000000002", 2, 0)
			putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000004", 2, 0)
			putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000006", 2, 0)
			for _, n := range []string{"2024-03-07_10-00_0", "2024-03-08_10-00_0", "2024-03-09_10-00_0"} {
				signBackup(t, a, n)
			}
			putWAL(t, a, segs(1, 1, 7)...)
			var chunks []string
			for i, at := range tc.written {
				key := a.Layout.ChunkKey(ChunkFilename(running, i+1))
				body := []byte(key)
				if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(body), int64(len(body)), storage.Metadata{MetaFormat: FormatBBv2}); err != nil {
					t.Fatal(err)
				}
				ageKeys(a, []string{key}, at)
				chunks = append(chunks, key)
			}
			planted := a.Layout.join(BasebackupDir, running)
			info := &BackupInfo{Format: FormatBBv2, StartWALSegment: "000000010000000000000001",
				StartTime: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), ChunkCount: 2}
			if err := a.Store.Put(ctx, planted, strings.NewReader("x"), info.ToMetadata()); err != nil {
				t.Fatal(err)
			}
			plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 2}, now)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(plan.Delete, func(d BackupDecision) bool { return d.Backup.Key == planted }) {
				t.Fatalf("plan deletes %v, want %s among them", names(plan.Delete), planted)
			}
			if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
				t.Fatal(err)
			}
			left := map[string]bool{}
			for _, k := range allKeys(t, a) {
				left[k] = true
			}
			if left[planted] {
				t.Errorf("%s left, want it deleted", planted)
			}
			for _, k := range chunks {
				if left[k] != tc.kept {
					t.Errorf("chunk %s of the running backup: stored %v after retention, want %v (written %v)", k, left[k], tc.kept, tc.written)
				}
			}
			for _, k := range gone {
				if left[k] {
					t.Errorf("%s of the signed backup retention deleted is left", k)
				}
			}
		})
	}
}

// TestArchive_PlanRetentionDamagedName: a main object planted under the
// other key of a damaged backup's name (its metadata cannot be read, so
// retention neither counts nor deletes it), claiming an old start, is
// kept and not counted, with a note naming it: deleted as a surplus
// unsigned backup, it would take the chunk folder of that name, the
// damaged backup's chunks, however old they are.
func TestArchive_PlanRetentionDamagedName(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	const damaged = "2024-03-07_10-00_0"
	a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
	chunks := putBackup(t, a, damaged, "000000010000000000000002", 2, 0)
	putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000004", 2, 0)
	putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000006", 2, 0)
	signBackup(t, a, "2024-03-08_10-00_0")
	signBackup(t, a, "2024-03-09_10-00_0")
	damageBackup(t, a, damaged, MetaStartTime, "last week")
	ageKeys(a, chunks, now.Add(-72*time.Hour))
	putWAL(t, a, segs(1, 1, 7)...)
	planted := a.Layout.join(BasebackupDir, damaged)
	info := &BackupInfo{Format: FormatBBv2, StartWALSegment: "000000010000000000000001",
		StartTime: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), ChunkCount: 2}
	if err := a.Store.Put(ctx, planted, strings.NewReader("x"), info.ToMetadata()); err != nil {
		t.Fatal(err)
	}
	plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 2}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Delete) != 0 {
		t.Errorf("plan deletes %v, want nothing", names(plan.Delete))
	}
	if !slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.Contains(n, planted) }) {
		t.Errorf("no note names %s: %q", planted, plan.Notes)
	}
	if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, k := range allKeys(t, a) {
		left[k] = true
	}
	for _, k := range append(chunks, planted) {
		if !left[k] {
			t.Errorf("retention deleted %s", k)
		}
	}
}
