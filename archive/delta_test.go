package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// digest returns a 64-hex delta object name made of c.
func digest(c byte) string { return strings.Repeat(string(c), 64) }

// putDelta stores delta objects named by digest (as PGHoard's delta mode
// does: one file each) and returns their keys.
func putDelta(t testing.TB, a *Archive, digests ...string) []string {
	t.Helper()
	var keys []string
	for _, d := range digests {
		key := a.Layout.DeltaKey(d)
		body := []byte("file " + d)
		if _, err := a.Codec.Put(context.Background(), a.Store, key, bytes.NewReader(body), int64(len(body)), storage.Metadata{MetaFormat: FormatDeltaV2}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	return keys
}

// putDeltaBackup stores the control object of a pghoard-delta-v2 backup
// whose manifest refers to the delta objects digests, and returns its key.
func putDeltaBackup(t testing.TB, a *Archive, name, startSeg string, digests ...string) string {
	t.Helper()
	start, _ := backupNameTime(name)
	var files []map[string]any
	for i, d := range digests {
		files = append(files, map[string]any{"relative_path": fmt.Sprintf("base/1/%d", 1000+i), "hexdigest": d, "file_size": len("file " + d), "stored_file_size": 0})
	}
	dm, err := json.Marshal(map[string]any{"snapshot_result": map[string]any{"state": map[string]any{"files": files}}})
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{BackupStartTime: LabelTime{start}, BackupStartWALSegment: startSeg, PGHoardObject: "basebackup",
		Tablespaces: map[string]ManifestTablespace{}, DeltaManifest: dm}
	js, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: ManifestName, Mode: 0o600, Size: int64(len(js))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(js); err != nil {
		t.Fatal(err)
	}
	label := testLabel(t, startSeg)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: ControlBackupLabel, Mode: 0o600, Size: int64(len(label))}); err != nil {
		t.Fatal(err)
	}
	testio.WriteClose(t, tw, label)
	info := &BackupInfo{Format: FormatDeltaV2, StartWALSegment: startSeg, StartTime: start, Site: a.Site}
	key := a.Layout.BackupKey(name)
	if _, err := a.Codec.Put(context.Background(), a.Store, key, &tb, int64(tb.Len()), info.ToMetadata()); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestArchive_ApplyRetentionDelta: PGHoard delta backups d1 (objects A,
// B) and d2 (B, C), and D, which no backup names, written days ago. With
// basebackup_count 1, retention deletes d1, then A (only d1 named it) and
// D (no backup names it, written more than a day ago); B and C stay for
// d2, which still checks. While a delta backup may be running (an object
// written after the newest backup started) no delta object is deleted.
func TestArchive_ApplyRetentionDelta(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	name := func(ago time.Duration) string { return now.Add(-ago).Format("2006-01-02_15-04") + "_0" }
	setup := func(t *testing.T) (*Archive, string, []string) {
		dir := t.TempDir()
		a := localArchive(t, dir, "site", retentionCodec(t))
		objs := putDelta(t, a, digest('a'), digest('b'), digest('c'), digest('d'))
		ageKeys(a, objs, now.Add(-96*time.Hour))
		// C was written by d2 itself, after d2 started: no sign of a
		// running backup.
		ageKeys(a, objs[2:3], now.Add(-47*time.Hour))
		putDeltaBackup(t, a, name(72*time.Hour), "000000010000000000000002", digest('a'), digest('b'))
		d2 := putDeltaBackup(t, a, name(48*time.Hour), "000000010000000000000004", digest('b'), digest('c'))
		wal := putWAL(t, a, segs(1, 2, 5)...)
		keep := append([]string{d2, a.Layout.DeltaKey(digest('b')), a.Layout.DeltaKey(digest('c'))}, wal[2:]...)
		sort.Strings(keep)
		return a, dir, keep
	}
	t.Run("OK", func(t *testing.T) {
		a, _, keep := setup(t)
		plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
		if err != nil {
			t.Fatal(err)
		}
		var planned []string
		for _, d := range plan.Delta {
			planned = append(planned, d.Key)
		}
		if diff := cmp.Diff([]string{a.Layout.DeltaKey(digest('a')), a.Layout.DeltaKey(digest('d'))}, planned); diff != "" {
			t.Fatalf("delta objects planned (-want +got):\n%s\nnotes %q", diff, plan.Notes)
		}
		res, err := a.ApplyRetention(ctx, plan, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if res.Backups != 1 || res.Delta != 2 {
			t.Errorf("deleted %d backups and %d delta objects, want 1 and 2", res.Backups, res.Delta)
		}
		if diff := cmp.Diff(keep, allKeys(t, a)); diff != "" {
			t.Errorf("objects after retention (-want +got):\n%s", diff)
		}
		bs, err := a.ListBackups(ctx)
		if err != nil || len(bs) != 1 {
			t.Fatalf("%d backups after retention: %v", len(bs), err)
		}
		if err := a.CheckBackup(ctx, bs[0], true); err != nil {
			t.Errorf("kept delta backup: %v", err)
		}
	})
	// With the public key only, the kept backup's manifest, the only list
	// of the objects it refers to, cannot be read: every delta object is
	// kept (the backup itself is deleted), and the plan says why.
	t.Run("PublicKeyOnly", func(t *testing.T) {
		a, _, _ := setup(t)
		full := a.Codec
		a.Codec = &Codec{Compression: full.Compression, KeyID: full.KeyID, PublicKey: full.PublicKey, RequireEncryption: true}
		plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Delete) != 1 || len(plan.Delta) != 0 {
			t.Errorf("planned %d backup and %d delta deletions, want 1 and 0", len(plan.Delete), len(plan.Delta))
		}
		if !strings.Contains(plan.DeltaKept, "no private key") || !strings.Contains(plan.DeltaKept, "only in its encrypted manifest") ||
			!slices.Contains(plan.Notes, plan.DeltaKept) {
			t.Errorf("DeltaKept %q, notes %q: want why, naming the private key", plan.DeltaKept, plan.Notes)
		}
		if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		if n := len(deltaKeysOf(t, a)); n != 4 {
			t.Errorf("%d delta objects after retention, want all 4 kept", n)
		}
	})
	// A restore host's configuration (private keys, no encryption_key_id)
	// reads the plan but cannot encrypt the marker that deleting delta
	// objects stores first (ErrNoUploadKey): the backup and WAL deletions,
	// which store nothing, go ahead, the delta objects stay for a run
	// that can store the marker, and the log says why.
	t.Run("NoUploadKey", func(t *testing.T) {
		a, _, _ := setup(t)
		full := a.Codec
		a.Codec = &Codec{Compression: full.Compression, PrivateKeys: full.PrivateKeys, RequireEncryption: true}
		plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Delete) != 1 || len(plan.Delta) != 2 {
			t.Fatalf("planned %d backup and %d delta deletions, want 1 and 2", len(plan.Delete), len(plan.Delta))
		}
		var logs bytes.Buffer
		res, err := a.ApplyRetention(ctx, plan, zerolog.New(&logs))
		if err != nil {
			t.Fatalf("ApplyRetention: %v", err)
		}
		if res.Backups != 1 || res.Delta != 0 {
			t.Errorf("deleted %d backups and %d delta objects, want 1 and 0", res.Backups, res.Delta)
		}
		if n := len(deltaKeysOf(t, a)); n != 4 {
			t.Errorf("%d delta objects after retention, want all 4 kept", n)
		}
		if !strings.Contains(logs.String(), "encryption_key_id") {
			t.Errorf("log does not say why the delta objects stay (encryption_key_id):\n%s", logs.String())
		}
	})
	// With reference lists (which hoard's delta backups of an encrypting
	// site store), the public key alone is enough: the plan deletes what
	// it deletes with the private key. A kept backup whose list is
	// altered, another backup's, or missing makes it delete none, naming
	// the backup.
	t.Run("PublicKeyOnlyRefs", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			tamper func(t *testing.T, a *Archive, kept, deleted string)
			want   []string // delta objects planned; nil: none, and DeltaKept says why
			why    string
		}{
			{name: "OK", want: []string{digest('a'), digest('d')}},
			{name: "ErrStruck", why: "does not verify", tamper: func(t *testing.T, a *Archive, kept, _ string) {
				// Someone with bucket access strikes C from the kept
				// backup's list, keeping its MAC.
				editRefs(t, a, kept, func(l *deltaRefList) { l.Digests = []string{digest('b')} })
			}},
			{name: "ErrOtherBackups", why: "does not verify", tamper: func(t *testing.T, a *Archive, kept, deleted string) {
				// The deleted backup's list (A, B), valid, copied over the
				// kept one's.
				editRefs(t, a, kept, func(l *deltaRefList) {
					var o deltaRefList
					readRefsJSON(t, a, deleted, &o)
					*l = o
				})
			}},
			{name: "ErrRemoved", why: "no reference list", tamper: func(t *testing.T, a *Archive, kept, _ string) {
				if err := a.Store.Delete(context.Background(), a.Layout.DeltaRefsKey(kept)); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a, _, _ := setup(t)
				d1, d2 := name(72*time.Hour), name(48*time.Hour)
				for n, ds := range map[string][]string{d1: {digest('a'), digest('b')}, d2: {digest('b'), digest('c')}} {
					if err := a.StoreDeltaRefs(ctx, n, ds); err != nil {
						t.Fatal(err)
					}
				}
				// Written when d1 was taken: retention leaves the
				// objects of a deleted unsigned backup's folder written
				// in the last day (deleteBackup), and while they are
				// there deletes no delta object (deltaUnseen).
				ageKeys(a, []string{a.Layout.DeltaRefsKey(d1)}, now.Add(-72*time.Hour))
				if tc.tamper != nil {
					tc.tamper(t, a, d2, d1)
				}
				full := a.Codec
				a.Codec = &Codec{Compression: full.Compression, KeyID: full.KeyID, PublicKey: full.PublicKey, RequireEncryption: true}
				plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
				if err != nil {
					t.Fatal(err)
				}
				var planned []string
				for _, d := range plan.Delta {
					planned = append(planned, strings.TrimPrefix(d.Key, a.Layout.Dir(DeltaDir)))
				}
				if diff := cmp.Diff(tc.want, planned); diff != "" {
					t.Fatalf("delta objects planned (-want +got):\n%s\nnotes %q", diff, plan.Notes)
				}
				if tc.want == nil && (!strings.Contains(plan.DeltaKept, d2) || !strings.Contains(plan.DeltaKept, tc.why)) {
					t.Errorf("DeltaKept %q: want it to name %s and say %q", plan.DeltaKept, d2, tc.why)
				}
				if tc.want != nil && plan.DeltaKept != "" {
					t.Errorf("DeltaKept %q", plan.DeltaKept)
				}
				if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
					t.Fatal(err)
				}
				if n := len(deltaKeysOf(t, a)); n != 4-len(tc.want) {
					t.Errorf("%d delta objects after retention, want %d", n, 4-len(tc.want))
				}
			})
		}
	})
	// A delta backup's marker and a delta object E, planted in a local
	// store with their mtimes in 2099, stored before the newest backup
	// started and more than a day ago: the marker is an orphan like any
	// other folder of no backup, E is unreferenced, and neither stops a
	// deletion: their age is the storage's time (storedAt).
	t.Run("FutureMTime", func(t *testing.T) {
		a, dir, keep := setup(t)
		planted := name(100 * time.Hour)
		key := a.Layout.DeltaRunningKey(planted)
		if _, err := a.MarkDeltaRunning(ctx, planted); err != nil {
			t.Fatal(err)
		}
		keys := append(putDelta(t, a, digest('e')), key)
		setModified(t, dir, keys, future)
		ageKeys(a, keys, now.Add(-50*time.Hour))
		plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{a.Layout.Dir(basebackupDeltaChunkDir) + planted + "/"}, orphanFolders(plan)); diff != "" {
			t.Errorf("orphans (-want +got):\n%s\nnotes %q", diff, plan.Notes)
		}
		res, err := a.ApplyRetention(ctx, plan, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if res.Delta != 3 || res.Orphans != 1 {
			t.Errorf("deleted %d delta objects and %d orphans, want A, D and E, and the planted marker; notes %q", res.Delta, res.Orphans, plan.Notes)
		}
		if diff := cmp.Diff(keep, allKeys(t, a)); diff != "" {
			t.Errorf("objects after retention (-want +got):\n%s", diff)
		}
	})
	t.Run("BackupRunning", func(t *testing.T) {
		a, _, _ := setup(t)
		putDelta(t, a, digest('e'))
		plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Delta) != 0 || !strings.Contains(strings.Join(plan.Notes, "\n"), "a delta backup may be running") {
			t.Errorf("planned %d delta deletions with a backup running; notes %q", len(plan.Delta), plan.Notes)
		}
	})
}

// deltaKeysOf lists a's delta objects.
func deltaKeysOf(t *testing.T, a *Archive) []string {
	t.Helper()
	var out []string
	err := a.Store.List(context.Background(), a.Layout.Dir(DeltaDir), func(o storage.Object) error {
		out = append(out, o.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readRefsJSON reads backup name's stored reference list into l.
func readRefsJSON(t *testing.T, a *Archive, name string, l *deltaRefList) {
	t.Helper()
	rc, _, err := a.Store.Open(context.Background(), a.Layout.DeltaRefsKey(name))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(l); err != nil {
		t.Fatal(err)
	}
}

// editRefs rewrites backup name's reference list with edit, as someone
// with write access to the bucket but no key can.
func editRefs(t *testing.T, a *Archive, name string, edit func(*deltaRefList)) {
	t.Helper()
	var l deltaRefList
	readRefsJSON(t, a, name, &l)
	edit(&l)
	js, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	k := a.Layout.DeltaRefsKey(name)
	if err := a.Store.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if err := a.Store.Put(context.Background(), k, bytes.NewReader(js), storage.Metadata{MetaFormat: FormatDeltaRefs}); err != nil {
		t.Fatal(err)
	}
}

// TestArchive_PlanRetentionDeltaForeignControl: someone who can write the
// bucket but holds no key copies the control object of delta backup d1
// (objects A, B) under the name of kept delta backup d2 (B, C), d2's
// metadata kept: it decodes, and d2's metadata still authenticates. C,
// which only d2 refers to, must not be deleted for it: d2's control
// object is not d2's (CheckControl, as restore checks it), so d2 is not
// known good and its references are unknown. Before, retention took d1's
// references for d2's and deleted C, then the genuine control object put
// back, d2 could not be restored.
func TestArchive_PlanRetentionDeltaForeignControl(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	name := func(ago time.Duration) string { return now.Add(-ago).Format("2006-01-02_15-04") + "_0" }
	a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
	objs := putDelta(t, a, digest('a'), digest('b'), digest('c'))
	ageKeys(a, objs, now.Add(-96*time.Hour))
	ageKeys(a, objs[2:], now.Add(-47*time.Hour)) // written by d2
	d1 := putDeltaBackup(t, a, name(72*time.Hour), "000000010000000000000002", digest('a'), digest('b'))
	d2 := putDeltaBackup(t, a, name(48*time.Hour), "000000010000000000000004", digest('b'), digest('c'))
	putDeltaBackup(t, a, name(24*time.Hour), "000000010000000000000006", digest('b'))
	putWAL(t, a, segs(1, 2, 7)...)
	rc, _, err := a.Store.Open(ctx, d1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	o, err := a.Store.Stat(ctx, d2)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Store.Put(ctx, d2, rc, o.Metadata); err != nil {
		t.Fatal(err)
	}
	plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 2}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range plan.Delta {
		if d.Key == a.Layout.DeltaKey(digest('c')) {
			t.Errorf("plan deletes %s, which the kept backup %s refers to: %s", d.Key, BackupName(d2), d.Reason)
		}
	}
	if got := strings.Join(plan.Damaged, "\n"); !strings.Contains(got, BackupName(d2)) || !strings.Contains(got, "not this backup's") {
		t.Errorf("damaged %q: want %s named, its control object another's", plan.Damaged, BackupName(d2))
	}
}

// TestArchive_PlanRetentionDeltaControlReadOnce: PGHoard delta backups
// d1 (objects A, B) and d2 (B, C), and D, which no backup names; with
// basebackup_count 1, d2 is kept and checked (keepKnownGood), and its
// delta references are taken from the manifest that check read: its
// control object is read once, as d1's (deleted, unchecked: its
// references only free objects).
//
//   - Count: each control object is opened once.
//   - Swapped: from its second open on, d2's control object is d1's
//     (someone who can write the bucket but holds no key copies it under
//     d2's name after the check): the plan is the one of d2's own
//     references, A and D deleted.
//
// Before, planDelta read d2's control object a second time for its
// references (BackupDeltaRefs), after its check: two downloads and
// decodes of it, and given d1's there, the plan deleted no delta object
// (d2's references unknown), whatever the check had found.
func TestArchive_PlanRetentionDeltaControlReadOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	name := func(ago time.Duration) string { return now.Add(-ago).Format("2006-01-02_15-04") + "_0" }
	setup := func(t *testing.T) (a *Archive, d1, d2 string) {
		a = localArchive(t, t.TempDir(), "site", retentionCodec(t))
		objs := putDelta(t, a, digest('a'), digest('b'), digest('c'), digest('d'))
		ageKeys(a, objs, now.Add(-96*time.Hour))
		ageKeys(a, objs[2:3], now.Add(-47*time.Hour)) // C, written by d2
		d1 = putDeltaBackup(t, a, name(72*time.Hour), "000000010000000000000002", digest('a'), digest('b'))
		d2 = putDeltaBackup(t, a, name(48*time.Hour), "000000010000000000000004", digest('b'), digest('c'))
		putWAL(t, a, segs(1, 2, 5)...)
		return a, d1, d2
	}
	planned := func(t *testing.T, a *Archive, plan RetentionPlan) {
		t.Helper()
		if len(plan.Delete) != 1 || len(plan.Keep) != 1 || len(plan.Damaged) != 0 {
			t.Fatalf("plan keeps %d, deletes %d backups, damaged %q; want 1, 1, none", len(plan.Keep), len(plan.Delete), plan.Damaged)
		}
		var got []string
		for _, d := range plan.Delta {
			got = append(got, d.Key)
		}
		if diff := cmp.Diff([]string{a.Layout.DeltaKey(digest('a')), a.Layout.DeltaKey(digest('d'))}, got); diff != "" {
			t.Errorf("delta objects planned (-want +got):\n%s\nnotes %q", diff, plan.Notes)
		}
	}
	t.Run("Count", func(t *testing.T) {
		a, d1, d2 := setup(t)
		log := &storetest.OpenLog{Store: a.Store, Match: func(key string) bool { return strings.Contains(key, "/basebackup/") }}
		a.Store = log
		plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{d1, d2} {
			if got, want := log.Count(key), 1; got != want {
				t.Errorf("control object %s opened %d times, want %d: %v", key, got, want, log.Keys())
			}
		}
		planned(t, a, plan)
	})
	t.Run("Swapped", func(t *testing.T) {
		a, d1, d2 := setup(t)
		a.Store = &storetest.SwapOpen{Store: a.Store, Key: d2, Other: d1, At: 2}
		plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
		if err != nil {
			t.Fatal(err)
		}
		planned(t, a, plan)
	})
}
