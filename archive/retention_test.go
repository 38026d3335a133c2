package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pghoardtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

var update = flag.Bool("update", false, "rewrite testdata/retention/*.golden")

// retentionNow is the "now" of every planner test.
var retentionNow = time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)

// pghoardBackup builds a backup as PGHoard's metadata describes it: a name,
// a start time and a start segment, nothing else.
func pghoardBackup(t testing.TB, name, startSeg string) *BackupInfo {
	t.Helper()
	start, ok := backupNameTime(name)
	if !ok {
		t.Fatalf("bad backup name %q", name)
	}
	md := storage.Metadata{
		MetaFormat:          FormatBBv2,
		MetaStartTime:       start.Format("2006-01-02T15:04:05+00:00"),
		MetaStartWALSegment: startSeg,
		MetaTotalSizePlain:  "1000",
		MetaTotalSizeEnc:    "500",
	}
	b, err := ParseBackupInfo("site/basebackup/"+name+ControlSuffix, 100, md)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// segs returns the segment names of timeline tli from first to last.
func segs(tli uint32, first, last uint64) []string {
	var out []string
	for n := first; n <= last; n++ {
		out = append(out, wal.Segment{Timeline: tli, No: n}.Name(16<<20))
	}
	return out
}

func TestPlanRetention_Golden(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name    string
		backups func(t testing.TB) []*BackupInfo
		wal     []string
		policy  RetentionPolicy
	}{
		{
			name: "count_only",
			backups: func(t testing.TB) []*BackupInfo {
				return []*BackupInfo{
					pghoardBackup(t, "2024-03-09_10-00_0", "000000010000000000000008"),
					pghoardBackup(t, "2024-03-06_10-00_0", "000000010000000000000002"),
					pghoardBackup(t, "2024-03-08_10-00_0", "000000010000000000000006"),
					pghoardBackup(t, "2024-03-07_10-00_0", "000000010000000000000004"),
				}
			},
			wal:    append(segs(1, 1, 10), "000000010000000000000004.00000028.backup", "000000010000000000000006.00000028.backup"),
			policy: RetentionPolicy{MaxCount: 2, MinCount: 2, Interval: day},
		},
		{
			name: "age_with_min_count",
			backups: func(t testing.TB) []*BackupInfo {
				return []*BackupInfo{
					pghoardBackup(t, "2024-03-01_10-00_0", "000000010000000000000002"),
					pghoardBackup(t, "2024-03-02_10-00_0", "000000010000000000000004"),
					pghoardBackup(t, "2024-03-03_10-00_0", "000000010000000000000006"),
					pghoardBackup(t, "2024-03-04_10-00_0", "000000010000000000000008"),
					pghoardBackup(t, "2024-03-05_10-00_0", "00000001000000000000000A"),
				}
			},
			wal: segs(1, 1, 12),
			// Every backup is over 3 days old, but 3 must stay.
			policy: RetentionPolicy{MaxCount: 10, MinCount: 3, MaxAge: 3 * day, Interval: day},
		},
		{
			name: "age_stops_at_young_backup",
			backups: func(t testing.TB) []*BackupInfo {
				return []*BackupInfo{
					pghoardBackup(t, "2024-03-01_10-00_0", "000000010000000000000002"),
					pghoardBackup(t, "2024-03-07_10-00_0", "000000010000000000000004"),
					pghoardBackup(t, "2024-03-08_10-00_0", "000000010000000000000006"),
				}
			},
			wal: segs(1, 1, 7),
			// 2024-03-07 is 3.08 days old from its start, but only 2.08
			// from start + interval: kept, and so is every newer one.
			policy: RetentionPolicy{MaxAge: 3 * day, MinCount: 1, Interval: day},
		},
		{
			name: "preserved_stops_deletion",
			backups: func(t testing.TB) []*BackupInfo {
				return []*BackupInfo{
					pghoardBackup(t, "2024-03-05_10-00_0", "000000010000000000000002"),
					pghoardBackup(t, "2024-03-06_10-00_0", "000000010000000000000004"),
					pghoardBackup(t, "2024-03-07_10-00_0", "000000010000000000000006"),
					pghoardBackup(t, "2024-03-08_10-00_0", "000000010000000000000008"),
					pghoardBackup(t, "2024-03-09_10-00_0", "00000001000000000000000A"),
				}
			},
			wal: segs(1, 1, 11),
			policy: RetentionPolicy{MaxCount: 1, MinCount: 1, Interval: day, Preserved: map[string]time.Time{
				"2024-03-05_10-00_0": retentionNow.Add(-time.Hour), // expired: no effect
				"2024-03-07_10-00_0": retentionNow.Add(30 * day),
			}},
		},
		{
			name: "timelines",
			backups: func(t testing.TB) []*BackupInfo {
				return []*BackupInfo{
					pghoardBackup(t, "2024-03-07_10-00_0", "000000010000000000000003"),
					pghoardBackup(t, "2024-03-08_10-00_0", "000000020000000000000008"),
					pghoardBackup(t, "2024-03-09_10-00_0", "00000002000000000000000A"),
				}
			},
			// Promotion to timeline 2 in segment 6; a stale old primary
			// kept writing timeline 1 up to segment 9.
			wal: append(append(append(segs(1, 1, 9),
				"000000010000000000000006.partial",
				"000000010000000000000003.00000060.backup",
				"000000020000000000000008.00000028.backup",
				"00000002.history"), segs(2, 6, 12)...), "00000003.history"),
			policy: RetentionPolicy{MaxCount: 2, MinCount: 2, Interval: day},
		},
		{
			name: "newer_timeline_forked_lower",
			backups: func(t testing.TB) []*BackupInfo {
				return []*BackupInfo{
					pghoardBackup(t, "2024-03-06_10-00_0", "000000010000000000000002"),
					pghoardBackup(t, "2024-03-07_10-00_0", "00000001000000000000000A"),
					// A point-in-time restore to segment 4, promoted to
					// timeline 3, then backed up: its start is lower than
					// the older kept backup's.
					pghoardBackup(t, "2024-03-09_10-00_0", "000000030000000000000005"),
				}
			},
			wal:    append(append(segs(1, 1, 12), "00000003.history"), segs(3, 4, 7)...),
			policy: RetentionPolicy{MaxCount: 2, MinCount: 2, Interval: day},
		},
		{
			name: "pghoard_without_lsn",
			backups: func(t testing.TB) []*BackupInfo {
				old := pghoardBackup(t, "2024-03-07_10-00_0", "000000010000000000000002")
				// hoard backups carry the start LSN and timeline; a
				// backup with those but no start-wal-segment still
				// gives its start segment.
				md := storage.Metadata{
					MetaFormat:          FormatBBv2,
					MetaStartTime:       "2024-03-08 10:00:00.123+00:00",
					MetaStartLSN:        "0/5000028",
					MetaStartTimeline:   "1",
					MetaWALSegmentSize:  "16777216",
					MetaTotalSizePlain:  "1",
					MetaTotalSizeEnc:    "1",
					MetaBackupReason:    "requested",
					MetaStartWALSegment: "",
				}
				hoard, err := ParseBackupInfo("site/basebackup/2024-03-08_10-00_0"+ControlSuffix, 1, md)
				if err != nil {
					t.Fatal(err)
				}
				return []*BackupInfo{old, hoard, pghoardBackup(t, "2024-03-09_10-00_0", "000000010000000000000007")}
			},
			wal:    segs(1, 1, 8),
			policy: RetentionPolicy{MaxCount: 2, MinCount: 2, Interval: day},
		},
		{
			name: "count_min_0_no_age_deletion",
			backups: func(t testing.TB) []*BackupInfo {
				return []*BackupInfo{
					pghoardBackup(t, "2024-01-01_10-00_0", "000000010000000000000002"),
					pghoardBackup(t, "2024-01-02_10-00_0", "000000010000000000000004"),
				}
			},
			wal: segs(1, 1, 5),
			// Everything is too old but basebackup_count_min is 0: as in
			// PGHoard, age-based deletion needs a minimum above zero, so
			// nothing is deleted.
			policy: RetentionPolicy{MaxCount: 0, MinCount: 0, MaxAge: time.Hour},
		},
		{
			name:    "empty_archive",
			backups: func(t testing.TB) []*BackupInfo { return nil },
			wal:     append(segs(1, 1, 3), "00000002.history"),
			policy:  RetentionPolicy{MaxCount: 1},
		},
		{
			name: "backup_without_start_segment",
			backups: func(t testing.TB) []*BackupInfo {
				b := pghoardBackup(t, "2024-03-08_10-00_0", "000000010000000000000004")
				b.StartWALSegment, b.StartLSN = "", 0
				return []*BackupInfo{pghoardBackup(t, "2024-03-07_10-00_0", "000000010000000000000002"), b}
			},
			wal:    segs(1, 1, 5),
			policy: RetentionPolicy{MaxCount: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := PlanRetention(tt.backups(t), tt.wal, tt.policy, retentionNow)
			checkGolden(t, filepath.Join("testdata", "retention", tt.name+".golden"), formatPlan(plan))
		})
	}
}

// formatPlan renders a plan for golden files.
func formatPlan(p RetentionPlan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "now %s\n", p.Now.Format(time.RFC3339))
	for _, d := range p.Keep {
		fmt.Fprintf(&b, "keep   %s start=%s: %s\n", d.Backup.Name, startSegment(d.Backup), d.Reason)
	}
	for _, d := range p.Delete {
		fmt.Fprintf(&b, "delete %s start=%s: %s\n", d.Backup.Name, startSegment(d.Backup), d.Reason)
	}
	for _, w := range p.WAL {
		fmt.Fprintf(&b, "delete wal %s\n", w.Reason)
	}
	fmt.Fprintf(&b, "kept wal files: %d\n", p.KeptWAL)
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// TestPlanRetention_Invariants checks the safety rules on every prefix of a
// long history under several policies.
func TestPlanRetention_Invariants(t *testing.T) {
	var all []*BackupInfo
	for i := 0; i < 12; i++ {
		name := time.Date(2024, 2, 20+i/2, 10+i%2, 0, 0, 0, time.UTC).Format("2006-01-02_15-04") + "_0"
		all = append(all, pghoardBackup(t, name, wal.Segment{Timeline: 1 + uint32(i/5), No: uint64(2 + 3*i)}.Name(16<<20)))
	}
	wal := append(append(segs(1, 0, 20), segs(2, 14, 35)...), segs(3, 29, 40)...)
	policies := []RetentionPolicy{
		{}, {MaxCount: 1}, {MaxCount: 3, MinCount: 5}, {MaxAge: 48 * time.Hour, MinCount: 2, Interval: 12 * time.Hour},
		{MaxAge: time.Nanosecond}, {MaxCount: 1, Preserved: map[string]time.Time{all[4].Name: retentionNow.Add(time.Hour)}},
	}
	for pi, p := range policies {
		for n := 0; n <= len(all); n++ {
			plan := PlanRetention(all[:n], wal, p, retentionNow)
			if n > 0 && len(plan.Keep) == 0 {
				t.Fatalf("policy %d, %d backups: nothing kept", pi, n)
			}
			if len(plan.Keep)+len(plan.Delete) != n {
				t.Fatalf("policy %d, %d backups: %d kept + %d deleted", pi, n, len(plan.Keep), len(plan.Delete))
			}
			if p.MaxCount > 0 && n > p.MaxCount && len(plan.Keep) > p.MaxCount && plan.Keep[0].Backup.Name != all[4].Name {
				t.Fatalf("policy %d, %d backups: kept %d", pi, n, len(plan.Keep))
			}
			low := ""
			for _, k := range plan.Keep {
				if s := startSegment(k.Backup)[8:]; low == "" || s < low {
					low = s
				}
			}
			for _, w := range plan.WAL {
				if pos, _ := walPosition(w.Name); pos >= low {
					t.Fatalf("policy %d, %d backups: deletes %s at or after kept start %s", pi, n, w.Name, low)
				}
			}
			if len(plan.WAL)+plan.KeptWAL != len(wal) {
				t.Fatalf("policy %d: %d deleted + %d kept != %d", pi, len(plan.WAL), plan.KeptWAL, len(wal))
			}
		}
	}
}

func TestBackupNameTime(t *testing.T) {
	tests := []struct {
		name string
		want time.Time
		ok   bool
	}{
		{"2024-03-01_10-05_0", time.Date(2024, 3, 1, 10, 5, 0, 0, time.UTC), true},
		{"2024-03-01_10-05_12", time.Date(2024, 3, 1, 10, 5, 0, 0, time.UTC), true},
		{"2024-03-01_3", time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), true},
		{"2024-03-01_10-05_", time.Time{}, false},
		{"2024-03-01", time.Time{}, false},
		{"something", time.Time{}, false},
		{"2024-03-01_10-05_0x", time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := backupNameTime(tt.name)
		if ok != tt.ok || !got.Equal(tt.want) {
			t.Errorf("backupNameTime(%q) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// --- execution against a real local store ---

var retentionKey struct {
	once sync.Once
	key  *rsa.PrivateKey
	err  error
}

// retentionCodec returns an encrypting, compressing codec with one key.
func retentionCodec(t testing.TB) *Codec {
	t.Helper()
	retentionKey.once.Do(func() { retentionKey.key, retentionKey.err = crypto.GenerateKey(2048) })
	if retentionKey.err != nil {
		t.Fatal(retentionKey.err)
	}
	priv := retentionKey.key
	return &Codec{
		Compression: compress.Snappy,
		KeyID:       "k1",
		PublicKey:   &priv.PublicKey,
		PrivateKeys: map[string]*rsa.PrivateKey{"k1": priv},
	}
}

// localArchive opens an archive for site on a real local store in dir.
func localArchive(t testing.TB, dir, site string, codec *Codec) *Archive {
	t.Helper()
	st, err := storage.Open(context.Background(), storage.Config{Type: "local", Directory: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Archive{Store: st, Codec: codec, Layout: Layout{Prefix: site}, Site: site}
}

// putBackup stores a pghoard-bb-v2 backup: n chunks (all but stray listed
// in the manifest), the control object, then the main object's metadata.
// It returns the keys it wrote.
func putBackup(t testing.TB, a *Archive, name, startSeg string, n, stray int) []string {
	t.Helper()
	ctx := context.Background()
	start, _ := backupNameTime(name)
	m := &Manifest{
		BackupStartTime:       LabelTime{start},
		BackupStartWALSegment: startSeg,
		PGHoardObject:         "basebackup",
		Tablespaces:           map[string]ManifestTablespace{},
	}
	var keys []string
	for i := 1; i <= n+stray; i++ {
		cf := ChunkFilename(name, i)
		body := bytes.Repeat([]byte(name), 100*i)
		st, err := a.Codec.Put(ctx, a.Store, a.Layout.ChunkKey(cf), bytes.NewReader(body), int64(len(body)), storage.Metadata{MetaFormat: FormatBBv2})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, a.Layout.ChunkKey(cf))
		if i <= n {
			m.Chunks = append(m.Chunks, ManifestChunk{ChunkFilename: cf, InputSize: int64(len(body)), ResultSize: st.StoredSize})
		}
	}
	js, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, f := range []struct {
		name string
		data []byte
	}{{ManifestName, js}, {ControlBackupLabel, testLabel(t, startSeg)}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o600, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	info := &BackupInfo{Format: FormatBBv2, StartWALSegment: startSeg, StartTime: start, ChunkCount: n, Site: a.Site}
	key := a.Layout.BackupKey(name)
	if _, err := a.Codec.Put(ctx, a.Store, key, &tb, int64(tb.Len()), info.ToMetadata()); err != nil {
		t.Fatal(err)
	}
	return append(keys, key)
}

// testLabel is the backup_label of a backup starting at the start of
// segment startSeg (16 MiB segments, else the largest size its name fits),
// as CheckControl compares it with metadata that records no start LSN or
// the start of that segment (BackupInfo's StartLSN then).
func testLabel(t testing.TB, startSeg string) []byte {
	t.Helper()
	for size := uint64(16 << 20); size >= wal.MinSegmentSize; size >>= 1 {
		if seg, err := wal.ParseSegmentName(startSeg, size); err == nil {
			return []byte(fmt.Sprintf("START WAL LOCATION: %s (file %s)\n", seg.StartLSN(size), startSeg))
		}
	}
	t.Fatalf("segment name %s", startSeg)
	return nil
}

// setModified sets the modification time of the local store's files of
// keys (under dir).
func setModified(t testing.TB, dir string, keys []string, at time.Time) {
	t.Helper()
	for _, k := range keys {
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(k)), at, at); err != nil {
			t.Fatal(err)
		}
	}
}

// putWAL stores WAL files with small fake bodies.
func putWAL(t testing.TB, a *Archive, names ...string) []string {
	t.Helper()
	var keys []string
	for _, n := range names {
		key := a.Layout.WALKey(n)
		if _, err := a.Codec.Put(context.Background(), a.Store, key, strings.NewReader(n), int64(len(n)), nil); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	return keys
}

// storeKeys lists every object of a store.
func storeKeys(t testing.TB, st storage.Store) []string {
	t.Helper()
	var out []string
	if err := st.List(context.Background(), "", func(o storage.Object) error {
		out = append(out, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// checkIntact decodes every object in keys to EOF.
func checkIntact(t testing.TB, a *Archive, keys []string) {
	t.Helper()
	for _, k := range keys {
		rc, _, err := a.Codec.Open(context.Background(), a.Store, k)
		if err != nil {
			t.Fatalf("kept object: %v", err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("kept object %s: %v", k, err)
		}
	}
}

// retentionFixture is a site "new" that moved from site "old" (in the
// same local directory, as a prefix move), with backups, WAL and orphans.
type retentionFixture struct {
	a       *Archive
	old     *Archive
	keep    []string // keys that must survive
	drop    []string // keys retention must delete
	backups []string // names of the kept backups
	policy  RetentionPolicy
	now     time.Time
}

func newRetentionFixture(t testing.TB) *retentionFixture {
	t.Helper()
	dir := t.TempDir()
	codec := retentionCodec(t)
	f := &retentionFixture{
		a:      localArchive(t, dir, "new", codec),
		old:    localArchive(t, dir, "old", codec),
		policy: RetentionPolicy{MaxCount: 2, MinCount: 2, Interval: 24 * time.Hour},
		now:    time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC),
	}
	f.a.MovedFrom = []*Archive{f.old}
	// Site "old": the two oldest backups and their WAL. The policy would
	// delete them, but a site moved from is read-only to retention:
	// everything in it stays.
	f.keep = append(f.keep, putBackup(t, f.old, "2024-03-05_10-00_0", "000000010000000000000002", 2, 0)...)
	f.keep = append(f.keep, putWAL(t, f.old, segs(1, 1, 5)...)...)
	f.keep = append(f.keep, putBackup(t, f.old, "2024-03-06_10-00_0", "000000010000000000000004", 3, 1)...)
	// An interrupted backup of the old site: chunks but no main object.
	f.keep = append(f.keep, putWAL(t, f.old, "000000010000000000000002.00000028.backup")...)
	orphan := putBackup(t, f.old, "2024-03-05_22-00_0", "000000010000000000000003", 2, 0)
	if err := f.old.Store.Delete(context.Background(), orphan[len(orphan)-1]); err != nil {
		t.Fatal(err)
	}
	f.keep = append(f.keep, orphan[:len(orphan)-1]...)
	// Site "new": an interrupted backup (chunks last written days ago),
	// one more old backup, then the two kept ones.
	orphan = putBackup(t, f.a, "2024-03-06_22-00_0", "000000010000000000000005", 2, 0)
	if err := f.a.Store.Delete(context.Background(), orphan[len(orphan)-1]); err != nil {
		t.Fatal(err)
	}
	f.drop = append(f.drop, orphan[:len(orphan)-1]...)
	f.drop = append(f.drop, putBackup(t, f.a, "2024-03-07_10-00_0", "000000010000000000000006", 1, 0)...)
	f.drop = append(f.drop, putWAL(t, f.a, segs(1, 6, 7)...)...)
	f.keep = append(f.keep, putBackup(t, f.a, "2024-03-08_10-00_0", "000000010000000000000008", 2, 0)...)
	f.keep = append(f.keep, putBackup(t, f.a, "2024-03-09_10-00_0", "000000020000000000000009", 2, 1)...)
	f.keep = append(f.keep, putWAL(t, f.a, "000000010000000000000008", "00000002.history")...)
	f.keep = append(f.keep, putSegment(t, f.a, "000000010000000000000009"))
	// A .partial whose complete segment is stored: superseded.
	f.drop = append(f.drop, putWAL(t, f.a, "000000010000000000000009.partial")...)
	f.keep = append(f.keep, putWAL(t, f.a, segs(2, 9, 10)...)...)
	// The old site also holds WAL past the kept start: it stays.
	f.keep = append(f.keep, putWAL(t, f.old, "000000010000000000000008")...)
	// A backup in progress (chunks, no main object yet), started an hour
	// ago: never an orphan.
	running := putBackup(t, f.a, "2024-03-10_11-00_0", "00000002000000000000000A", 2, 0)
	if err := f.a.Store.Delete(context.Background(), running[len(running)-1]); err != nil {
		t.Fatal(err)
	}
	f.keep = append(f.keep, running[:len(running)-1]...)
	f.backups = []string{"2024-03-08_10-00_0", "2024-03-09_10-00_0"}
	sort.Strings(f.keep)
	// Chunks were written ten minutes after their backup started, the
	// running backup's ten minutes before now. Both sites' stores are
	// over dir: each reports those times.
	for _, k := range storeKeys(t, f.a.Store) {
		if _, rest, ok := strings.Cut(k, "/"+BasebackupChunkDir+"/"); ok {
			folder, _, _ := strings.Cut(rest, "/")
			at, ok := backupNameTime(folder)
			if !ok {
				t.Fatalf("chunk folder %q", folder)
			}
			at = at.Add(10 * time.Minute)
			if at.After(f.now) {
				at = f.now.Add(-10 * time.Minute)
			}
			ageKeys(f.a, []string{k}, at)
			ageKeys(f.old, []string{k}, at)
		}
	}
	return f
}

func TestArchive_ApplyRetention(t *testing.T) {
	t.Run("Damaged", func(t *testing.T) {
		// A backup whose metadata cannot be read, older than every other:
		// retention neither counts nor deletes it, nor its chunks.
		f := newRetentionFixture(t)
		ctx := context.Background()
		// Nor is any WAL deleted: its start cannot be read either.
		damaged := putBackup(t, f.a, "2024-03-04_10-00_0", "000000010000000000000001", 2, 0)
		damageBackup(t, f.a, "2024-03-04_10-00_0", MetaStartTime, "last week")
		plan, err := f.a.PlanRetention(ctx, f.policy, f.now)
		if err != nil {
			t.Fatalf("PlanRetention with a damaged backup: %v", err)
		}
		if !strings.Contains(strings.Join(plan.Notes, "\n"), "2024-03-04_10-00_0") {
			t.Errorf("notes %q do not name the damaged backup", plan.Notes)
		}
		if _, err := f.a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		want := append(append([]string{}, f.keep...), damaged...)
		for _, k := range f.drop {
			if strings.HasPrefix(k, f.a.Layout.Dir(XLogDir)) {
				want = append(want, k)
			}
		}
		sort.Strings(want)
		if diff := cmp.Diff(want, allKeys(t, f.a)); diff != "" {
			t.Errorf("objects after retention (-want +got):\n%s", diff)
		}
	})
	t.Run("OK", func(t *testing.T) {
		f := newRetentionFixture(t)
		ctx := context.Background()
		plan, err := f.a.PlanRetention(ctx, f.policy, f.now)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(plan.Delete), 1; got != want {
			t.Fatalf("plan deletes %d backups, want %d: %+v", got, want, plan.Delete)
		}
		if got, want := plan.Delete[0].Site, "new"; got != want {
			t.Errorf("deleted backup's site = %q, want %q", got, want)
		}
		// The policy would delete the old site's two backups too: they
		// are kept, read-only, and say why.
		var readOnly []string
		for _, k := range plan.Keep {
			if k.Extra == ExtraReadOnly {
				readOnly = append(readOnly, k.Site+"/"+k.Backup.Name)
				if !strings.Contains(k.Reason, "read-only") {
					t.Errorf("reason %q does not say the site is read-only", k.Reason)
				}
			}
		}
		if diff := cmp.Diff([]string{"old/2024-03-05_10-00_0", "old/2024-03-06_10-00_0"}, readOnly); diff != "" {
			t.Errorf("kept read-only (-want +got):\n%s", diff)
		}
		for _, w := range plan.WAL {
			if w.Site != "new" {
				t.Errorf("plan deletes WAL %s of site %s", w.Key, w.Site)
			}
		}
		if got, want := len(plan.Orphans), 1; got != want || plan.Orphans[0].Site != "new" {
			t.Fatalf("plan has %d orphan folders, want %d of site new: %+v", got, want, plan.Orphans)
		}
		res, err := f.a.ApplyRetention(ctx, plan, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(f.keep, allKeys(t, f.a)); diff != "" {
			t.Errorf("objects after retention (-want +got):\n%s", diff)
		}
		if got, want := res.Backups, 1; got != want {
			t.Errorf("deleted %d backups, want %d", got, want)
		}
		if got, want := res.Chunks, 1; got != want {
			t.Errorf("deleted %d chunks, want %d", got, want)
		}
		checkIntact(t, f.a, f.keep)
		again, err := f.a.PlanRetention(ctx, f.policy, f.now)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Empty() {
			t.Errorf("second plan is not empty: %+v", again)
		}
	})
	// A daemon that holds only the public key (all it needs to back up)
	// deletes backups too: retention never decrypts.
	t.Run("PublicKeyOnly", func(t *testing.T) {
		f := newRetentionFixture(t)
		ctx := context.Background()
		full := f.a.Codec
		pubOnly := &Codec{Compression: full.Compression, KeyID: full.KeyID, PublicKey: full.PublicKey, RequireEncryption: true}
		f.a.Codec, f.old.Codec = pubOnly, pubOnly
		plan, err := f.a.PlanRetention(ctx, f.policy, f.now)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.a.ApplyRetention(ctx, plan, zerolog.Nop())
		if err != nil {
			t.Fatalf("retention with the public key only: %v", err)
		}
		if diff := cmp.Diff(f.keep, allKeys(t, f.a)); diff != "" {
			t.Errorf("objects after retention (-want +got):\n%s", diff)
		}
		if res.Backups != 1 || res.Chunks != 1 || res.Bytes == 0 {
			t.Errorf("deleted %d backups, %d chunks, %d bytes; want 1, 1 and their size (as with the private key)", res.Backups, res.Chunks, res.Bytes)
		}
		if !strings.Contains(strings.Join(plan.Notes, "\n"), "checked without decrypting") {
			t.Errorf("plan notes %q do not say the backups were checked without decrypting", plan.Notes)
		}
		f.a.Codec = full
		checkIntact(t, f.a, f.keep)
	})
	t.Run("ErrPreservationUnreadable", func(t *testing.T) {
		f := newRetentionFixture(t)
		ctx := context.Background()
		key := f.a.Layout.Dir(PreservationDir) + "2024-03-05_10-00_0_x"
		if err := f.a.Store.Put(ctx, key, strings.NewReader(""), storage.Metadata{MetaPreserveBackup: "2024-03-05_10-00_0"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.a.PlanRetention(ctx, f.policy, f.now); err == nil {
			t.Fatal("plan with an unreadable preservation request succeeded")
		}
	})
	t.Run("Preserved", func(t *testing.T) {
		f := newRetentionFixture(t)
		ctx := context.Background()
		key := f.old.Layout.Dir(PreservationDir) + "2024-03-07_10-00_0.00000000.pghoard_2024-04-01 00:00:00+00:00"
		md := storage.Metadata{MetaPreserveBackup: "2024-03-07_10-00_0.00000000.pghoard", MetaPreserveUntil: "2024-04-01 00:00:00+00:00"}
		if err := f.old.Store.Put(ctx, key, strings.NewReader(""), md); err != nil {
			t.Fatal(err)
		}
		plan, err := f.a.PlanRetention(ctx, f.policy, f.now)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range plan.Delete {
			names = append(names, d.Backup.Name)
		}
		if len(names) != 0 {
			t.Errorf("plan deletes %v; the only deletable backup is preserved", names)
		}
		for _, k := range plan.Keep {
			if k.Backup.Name == "2024-03-07_10-00_0" && !strings.Contains(k.Reason, "preserved") {
				t.Errorf("preserved backup kept for %q", k.Reason)
			}
		}
	})
}

// allKeys lists every object of the fixture's shared store.
func allKeys(t testing.TB, a *Archive) []string {
	return storeKeys(t, a.Store)
}

// failingStore fails Delete once after a number of successful deletes.
type failingStore struct {
	storage.Store
	mu      sync.Mutex
	allowed int
}

var errInjected = errors.New("injected delete failure")

func (s *failingStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.allowed == 0 {
		return errInjected
	}
	s.allowed--
	return s.Store.Delete(ctx, key)
}

// TestArchive_ApplyRetentionInterrupted stops a run at every delete in
// turn: each time, every kept backup stays listed and whole, and a second
// run finishes the job.
func TestArchive_ApplyRetentionInterrupted(t *testing.T) {
	f := newRetentionFixture(t)
	total := len(storeKeys(t, f.a.Store)) - len(f.keep)
	if testing.Short() {
		total = 3
	}
	for n := 0; n < total; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newRetentionFixture(t)
			ctx := context.Background()
			fs := &failingStore{Store: f.a.Store, allowed: n}
			cut := *f.a
			cutOld := *f.old
			cut.Store, cutOld.Store = fs, fs
			cut.MovedFrom = []*Archive{&cutOld}
			plan, err := cut.PlanRetention(ctx, f.policy, f.now)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cut.ApplyRetention(ctx, plan, zerolog.Nop()); !errors.Is(err, errInjected) {
				t.Fatalf("apply with a delete failure after %d deletes: %v", n, err)
			}
			checkIntact(t, f.a, f.keep)
			listed := map[string]bool{}
			for _, s := range []*Archive{f.a, f.old} {
				bs, err := s.ListBackups(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range bs {
					listed[b.Name] = true
					// Every listed backup, kept or not yet deleted,
					// still has all its chunks.
					ctrl, err := s.ReadBackupControl(ctx, b, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range ctrl.Manifest.Chunks {
						checkIntact(t, s, []string{s.Layout.ChunkKey(c.ChunkFilename)})
					}
				}
			}
			for _, name := range f.backups {
				if !listed[name] {
					t.Errorf("kept backup %s is no longer listed", name)
				}
			}
			plan, err = f.a.PlanRetention(ctx, f.policy, f.now)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(f.keep, allKeys(t, f.a)); diff != "" {
				t.Errorf("objects after the second run (-want +got):\n%s", diff)
			}
		})
	}
}

// TestArchive_PlanRetentionKnownGood: with basebackup_count 1, the older
// backup is deleted only while the newest is known good. A newest backup
// with a chunk that fails its integrity check (same size: only a full
// decode sees it) or a missing chunk keeps the older one, and the plan
// says why.
func TestArchive_PlanRetentionKnownGood(t *testing.T) {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	policy := RetentionPolicy{MaxCount: 1}
	setup := func(t *testing.T) (*Archive, string, []string) {
		dir := t.TempDir()
		a := localArchive(t, dir, "site", retentionCodec(t))
		putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000002", 2, 0)
		newest := putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000004", 2, 0)
		putWAL(t, a, segs(1, 1, 5)...)
		return a, dir, newest
	}
	plan := func(t *testing.T, a *Archive) RetentionPlan {
		p, err := a.PlanRetention(context.Background(), policy, now)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// With the public key only, a missing chunk still keeps the older
	// backup: the sealed check counts the chunks.
	t.Run("ErrChunkMissingPublicKeyOnly", func(t *testing.T) {
		a, dir, newest := setup(t)
		full := a.Codec
		a.Codec = &Codec{Compression: full.Compression, KeyID: full.KeyID, PublicKey: full.PublicKey}
		if p := plan(t, a); len(p.Delete) != 1 {
			t.Fatalf("sound backups, public key only: plan deletes %+v, want the older backup", p.Delete)
		}
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(newest[1]))); err != nil {
			t.Fatal(err)
		}
		if p := plan(t, a); len(p.Delete) != 0 || len(p.Damaged) != 1 {
			t.Fatalf("newest backup misses a chunk, public key only: plan deletes %+v, damaged %q", p.Delete, p.Damaged)
		}
	})
	t.Run("OK", func(t *testing.T) {
		a, _, _ := setup(t)
		p := plan(t, a)
		if len(p.Delete) != 1 || p.Delete[0].Backup.Name != "2024-03-08_10-00_0" || p.KeptExtra() != 0 || len(p.Damaged) != 0 {
			t.Fatalf("plan: delete %+v, extra %d, damaged %v", p.Delete, p.KeptExtra(), p.Damaged)
		}
	})
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string, chunk string)
	}{
		{"ErrChunkTampered", func(t *testing.T, dir, chunk string) {
			path := filepath.Join(dir, filepath.FromSlash(chunk))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 1
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"ErrChunkMissing", func(t *testing.T, dir, chunk string) {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(chunk))); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, dir, newest := setup(t)
			tc.damage(t, dir, newest[1])
			p := plan(t, a)
			if len(p.Delete) != 0 {
				t.Fatalf("plan deletes %+v while the only other backup is damaged", p.Delete)
			}
			if p.KeptExtra() != 1 || len(p.Damaged) != 1 || !strings.Contains(p.Damaged[0], "2024-03-09_10-00_0") {
				t.Fatalf("extra %d, damaged %q", p.KeptExtra(), p.Damaged)
			}
			if p.WALHorizonBackup != "2024-03-08_10-00_0" {
				t.Errorf("WAL horizon %s (%s), want the kept older backup's start", p.WALHorizon, p.WALHorizonBackup)
			}
			if len(p.Notes) == 0 || !strings.Contains(strings.Join(p.Notes, "\n"), "known good") {
				t.Errorf("notes %q do not explain the extra backup", p.Notes)
			}
			if _, err := a.ApplyRetention(context.Background(), p, zerolog.Nop()); err != nil {
				t.Fatal(err)
			}
			if err := a.CheckBackup(context.Background(), p.Keep[0].Backup, true); err != nil {
				t.Errorf("the older backup is not intact after retention: %v", err)
			}
		})
	}
}

// TestArchive_PlanRetentionKnownGoodChain: a kept incremental backup is
// known good only with its chain of parents. With the full backup it was
// taken on missing a chunk, the incremental decodes in full but cannot be
// restored, so the older full backup, the only restorable one, stays.
func TestArchive_PlanRetentionKnownGoodChain(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	a := localArchive(t, dir, "site", retentionCodec(t))
	putBackup(t, a, "2024-03-07_10-00_0", "000000010000000000000002", 2, 0)
	parent := putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000004", 2, 0)
	putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000006", 2, 0)
	setParent(t, a, "2024-03-09_10-00_0", "2024-03-08_10-00_0")
	putWAL(t, a, segs(1, 1, 7)...)
	policy := RetentionPolicy{MaxCount: 1}
	p, err := a.PlanRetention(ctx, policy, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(names(p.Delete), " "), "2024-03-07"; got != want || len(p.Damaged) != 0 {
		t.Fatalf("sound chain: plan deletes %s (want %s), damaged %q", got, want, p.Damaged)
	}
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(parent[1]))); err != nil {
		t.Fatal(err)
	}
	p, err = a.PlanRetention(ctx, policy, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Delete) != 0 {
		t.Fatalf("plan deletes %s while the kept incremental's parent misses a chunk", names(p.Delete))
	}
	if p.KeptExtra() != 1 || !strings.Contains(strings.Join(p.Damaged, "\n"), "2024-03-08_10-00_0") {
		t.Errorf("extra %d, damaged %q: want the older full backup kept and the parent named", p.KeptExtra(), p.Damaged)
	}
	if p.WALHorizonBackup != "2024-03-07_10-00_0" {
		t.Errorf("WAL horizon %s (%s), want the older full backup's start", p.WALHorizon, p.WALHorizonBackup)
	}
}

// setParent rewrites backup name's main object to record parent as the
// backup it is an incremental of.
func setParent(t testing.TB, a *Archive, name, parent string) {
	t.Helper()
	ctx := context.Background()
	b, err := a.FindBackup(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	b.Parent = parent
	body, _ := storedPlain(t, a, b.Key)
	if _, err := a.Codec.Put(ctx, a.Store, b.Key, bytes.NewReader(body), int64(len(body)), b.ToMetadata()); err != nil {
		t.Fatal(err)
	}
}

// twoBackups stores, in a local store in dir, backups started on 7 and 9
// March 2024 and segments 1 to 5; old holds the older backup's keys, its
// main object last, all dated ten minutes after it started. now is the
// day after the newer one.
func twoBackups(t *testing.T) (a *Archive, dir string, old []string, now time.Time) {
	t.Helper()
	dir = t.TempDir()
	a = localArchive(t, dir, "site", retentionCodec(t))
	old = putBackup(t, a, "2024-03-07_10-00_0", "000000010000000000000002", 2, 0)
	ageKeys(a, old, time.Date(2024, 3, 7, 10, 10, 0, 0, time.UTC))
	putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000004", 2, 0)
	putWAL(t, a, segs(1, 1, 5)...)
	return a, dir, old, time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
}

// TestArchive_PlanRetentionDamagedKeepsWAL: the oldest backup's local
// metadata sidecar cut short (a disk that failed halfway) makes it
// damaged: retention keeps it, and keeps the WAL from its start too, which
// it needs once the sidecar is repaired.
func TestArchive_PlanRetentionDamagedKeepsWAL(t *testing.T) {
	ctx := context.Background()
	a, dir, old, now := twoBackups(t)
	sidecar := filepath.Join(dir, filepath.FromSlash(old[len(old)-1])) + ".metadata"
	js, err := os.ReadFile(sidecar)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sidecar, js[:len(js)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	before := storeKeys(t, a.Store)
	p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.WAL) != 0 || !strings.Contains(strings.Join(p.Notes, "\n"), "2024-03-07_10-00_0") {
		t.Errorf("plan deletes WAL %+v while backup 2024-03-07_10-00_0 is damaged; notes %q", p.WAL, p.Notes)
	}
	if _, err := a.ApplyRetention(ctx, p, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, storeKeys(t, a.Store)); diff != "" {
		t.Errorf("objects deleted (-before +after):\n%s", diff)
	}
}

// TestArchive_PlanRetentionSupersededPartial: a .partial is deleted as
// superseded only when its complete segment decodes and its first page
// fits its name. An object planted under the segment's name (bytes without
// the site's envelope, or another real segment copied there), which
// wal-fetch refuses, leaves the .partial, the only copy of that WAL.
func TestArchive_PlanRetentionSupersededPartial(t *testing.T) {
	ctx := context.Background()
	const seg, other = "000000010000000000000006", "000000010000000000000007"
	planted := func(t *testing.T, a *Archive) {
		if err := a.Store.Put(ctx, a.Layout.WALKey(seg), strings.NewReader("planted"), storage.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		store      func(t *testing.T, a *Archive)
		delete     bool
		publicOnly bool // retention with the public key only
	}{
		{"OK", func(t *testing.T, a *Archive) {
			putSegment(t, a, seg)
		}, true, false},
		{"OKPublicKeyOnly", func(t *testing.T, a *Archive) {
			putSegment(t, a, seg)
		}, true, true},
		{"ErrPlanted", planted, false, false},
		{"ErrPlantedPublicKeyOnly", planted, false, true},
		{"ErrOtherSegment", func(t *testing.T, a *Archive) {
			putSegment(t, a, other)
			raw, _ := storetest.Read(t, a.Store, a.Layout.WALKey(other))
			if err := a.Store.Put(ctx, a.Layout.WALKey(seg), bytes.NewReader(raw), statMetadata(t, a.Store, a.Layout.WALKey(other))); err != nil {
				t.Fatal(err)
			}
		}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _, _, now := twoBackups(t)
			putWAL(t, a, seg+".partial")
			tc.store(t, a)
			if tc.publicOnly {
				a.Codec = &Codec{Compression: a.Codec.Compression, KeyID: a.Codec.KeyID, PublicKey: a.Codec.PublicKey}
			}
			p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 2}, now)
			if err != nil {
				t.Fatal(err)
			}
			deleted := slices.ContainsFunc(p.WAL, func(w WALDeletion) bool { return w.Name == seg+".partial" })
			if deleted != tc.delete {
				t.Errorf("plan deletes %s.partial: %v, want %v (WAL %+v, notes %q)", seg, deleted, tc.delete, p.WAL, p.Notes)
			}
			if !tc.delete && !strings.Contains(strings.Join(p.Notes, "\n"), seg+".partial") {
				t.Errorf("notes %q do not say why %s.partial is kept", p.Notes, seg)
			}
		})
	}
}

// putSegment stores a WAL segment as wal-push does, and returns its key.
func putSegment(t testing.TB, a *Archive, name string) string {
	t.Helper()
	data := waltest.Segment(t, name, 16<<20, 1)
	if _, err := a.PushWAL(context.Background(), writeWALFile(t, t.TempDir(), name, data), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	return a.Layout.WALKey(name)
}

// statMetadata returns the stored metadata of key.
func statMetadata(t testing.TB, st storage.Store, key string) storage.Metadata {
	t.Helper()
	o, err := st.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return o.Metadata
}

// hidingStore leaves some keys out of its listings, as a listing that
// returns fewer objects than are stored does (one retried after an error
// on a later page, or not yet consistent): Stat and Open still find them.
// With once, a key is left out of the first listing that meets it only.
type hidingStore struct {
	storage.Store
	hidden map[string]bool
	once   bool
}

func (s hidingStore) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	return s.Store.List(ctx, prefix, func(o storage.Object) error {
		if s.hidden[o.Key] {
			if s.once {
				delete(s.hidden, o.Key)
			}
			return nil
		}
		return fn(o)
	})
}

// TestArchive_PlanRetentionShortListing: a listing of basebackup/ that
// left out a stored backup is found out by its chunk folder, which looks
// like an orphan; retention then fails and deletes nothing. Before, the
// folder was deleted as an orphan (the backup stayed listed without its
// chunks) and so was the WAL from the backup's start.
func TestArchive_PlanRetentionShortListing(t *testing.T) {
	ctx := context.Background()
	a, _, old, now := twoBackups(t)
	before := storeKeys(t, a.Store)
	short := *a
	short.Store = hidingStore{Store: a.Store, hidden: map[string]bool{old[len(old)-1]: true}}
	p, err := short.PlanRetention(ctx, RetentionPolicy{MaxCount: 2}, now)
	if err == nil {
		if _, err := short.ApplyRetention(ctx, p, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		t.Errorf("retention planned on a listing without backup 2024-03-07_10-00_0: orphans %+v, WAL %+v", p.Orphans, p.WAL)
	} else if !strings.Contains(err.Error(), "2024-03-07_10-00_0") || !strings.Contains(err.Error(), "listing") {
		t.Errorf("error %q does not name the backup the listing left out", err)
	}
	if diff := cmp.Diff(before, storeKeys(t, a.Store)); diff != "" {
		t.Errorf("objects deleted (-before +after):\n%s", diff)
	}
}

// TestArchive_PlanRetentionRunningSameMinute: a backup that started in the
// same minute as the newest complete one and still writes chunks more than
// OrphanMinAge after that minute is not an orphan; a folder whose last
// chunk was written days before the newest backup started is.
func TestArchive_PlanRetentionRunningSameMinute(t *testing.T) {
	dir := t.TempDir()
	a := localArchive(t, dir, "site", retentionCodec(t))
	ctx := context.Background()
	putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000004", 1, 0)
	// The complete backup started 30 s into its minute.
	b, err := a.FindBackup(ctx, "2024-03-09_10-00_0")
	if err != nil {
		t.Fatal(err)
	}
	md := b.ToMetadata()
	md[MetaStartTime] = "2024-03-09T10:00:30+00:00"
	body, _ := storedPlain(t, a, b.Key)
	if _, err := a.Codec.Put(ctx, a.Store, b.Key, bytes.NewReader(body), int64(len(body)), md); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	running := putBackup(t, a, "2024-03-09_10-00_1", "000000010000000000000004", 2, 0)
	if err := a.Store.Delete(ctx, running[len(running)-1]); err != nil {
		t.Fatal(err)
	}
	ageKeys(a, running[:len(running)-1], now.Add(-5*time.Minute))
	stale := putBackup(t, a, "2024-03-07_10-00_0", "000000010000000000000002", 2, 0)
	if err := a.Store.Delete(ctx, stale[len(stale)-1]); err != nil {
		t.Fatal(err)
	}
	ageKeys(a, stale[:len(stale)-1], time.Date(2024, 3, 7, 10, 20, 0, 0, time.UTC))
	p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 2}, now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"site/basebackup_chunk/2024-03-07_10-00_0/"}, orphanFolders(p)); diff != "" {
		t.Errorf("orphans (-want +got):\n%s", diff)
	}
}

// TestArchive_ApplyRetentionPGHoardSingleTar: a basic-mode backup a real
// PGHoard took (one pg_basebackup tar under basebackup/, no format; see
// testdata/pghoard-real), past basebackup_count once a newer backup
// exists, is deleted, object and sidecar, with the WAL before the newer
// backup's start, and nothing else; no key is needed.
func TestArchive_ApplyRetentionPGHoardSingleTar(t *testing.T) {
	ctx := context.Background()
	st := pghoardtest.CopyReal(t, "basic")
	a := &Archive{Store: st, Codec: &Codec{Compression: "zstd"}, Layout: Layout{Prefix: "site"}, Site: "site"}
	bs, err := a.ListBackups(ctx)
	if err != nil || len(bs) != 1 || bs[0].Format != "" {
		t.Fatalf("listed %+v, %v: want one backup without a format", bs, err)
	}
	old := bs[0]
	keep := putBackup(t, a, "2026-12-02_05-00_0", "000000010000000000000003", 1, 0)
	keep = append(keep, a.Layout.WALKey("000000010000000000000003"))
	sort.Strings(keep)
	plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Delete) != 1 || plan.Delete[0].Backup.Name != old.Name {
		t.Fatalf("plan deletes %+v, want %s", plan.Delete, old.Name)
	}
	res, err := a.ApplyRetention(ctx, plan, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if res.Backups != 1 {
		t.Errorf("deleted %d backups, want 1", res.Backups)
	}
	if diff := cmp.Diff(keep, allKeys(t, a)); diff != "" {
		t.Errorf("objects after retention (-want +got):\n%s", diff)
	}
}

// TestArchive_ApplyRetentionChainInterrupted stops a run that deletes a
// full backup and the incremental one taken on it at every delete in
// turn: each time, every backup still listed has its whole chain of
// parents listed, so no listed backup is one that cannot be restored,
// and a second run finishes the job.
func TestArchive_ApplyRetentionChainInterrupted(t *testing.T) {
	ctx := context.Background()
	policy := RetentionPolicy{MaxCount: 1}
	a, _, now := markedArchive(t)
	plan, err := a.PlanRetention(ctx, policy, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(names(plan.Delete), " "), "2024-03-07 2024-03-08"; got != want {
		t.Fatalf("plan deletes %s, want %s", got, want)
	}
	total := len(storeKeys(t, a.Store))
	for n := 0; n < total; n++ {
		a, _, now := markedArchive(t)
		cut := *a
		cut.Store = &failingStore{Store: a.Store, allowed: n}
		plan, err := cut.PlanRetention(ctx, policy, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cut.ApplyRetention(ctx, plan, zerolog.Nop()); err == nil {
			break // n deletes were enough: the run completed
		} else if !errors.Is(err, errInjected) {
			t.Fatalf("apply with a delete failure after %d deletes: %v", n, err)
		}
		bs, err := a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if _, err := Chain(bs, b); err != nil {
				t.Errorf("after %d deletes, listed backup %s cannot be restored: %v", n, b.Name, err)
			}
		}
		plan, err = a.PlanRetention(ctx, policy, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		bs, err = a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || bs[0].Name != "2024-03-09_10-00_0" {
			t.Errorf("after %d deletes and a second run, backups %v, want the newest alone", n, bs)
		}
	}
}

// TestArchive_PlanRetentionReadsControlOnce: a run that deletes a backup
// reads the control object of each kept backup once, the newest's too,
// which it checks in full (keepKnownGood): the full check makes the quick
// check's checks first. Before, the quick check of every kept backup read
// it, then the full check of the newest read it again.
func TestArchive_PlanRetentionReadsControlOnce(t *testing.T) {
	a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
	putBackup(t, a, "2024-03-07_10-00_0", "000000010000000000000002", 2, 0)
	putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000004", 2, 0)
	putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000006", 2, 0)
	putWAL(t, a, segs(1, 1, 7)...)
	var mu sync.Mutex
	reads := map[string]int{}
	b := *a
	b.Store = openHookStore{Store: a.Store, hook: func(key string) {
		mu.Lock()
		reads[key]++
		mu.Unlock()
	}}
	p, err := b.PlanRetention(context.Background(), RetentionPolicy{MaxCount: 2}, time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(names(p.Delete), " "), "2024-03-07"; got != want || len(p.Keep) != 2 || len(p.Damaged) != 0 {
		t.Fatalf("plan deletes %s (want %s), keeps %d, damaged %q", got, want, len(p.Keep), p.Damaged)
	}
	for _, k := range p.Keep {
		if got := reads[k.Backup.Key]; got != 1 {
			t.Errorf("control object %s read %d times, want once", k.Backup.Key, got)
		}
	}
}

// TestArchive_PlanRetentionStorageError: a storage that fails while
// retention checks a backup it keeps (a HEAD of a chunk answered 503 past
// the retries, access denied, the control object's download cut) fails
// the plan with the storage's error: nothing is deleted that run, and
// the backup is not reported damaged (plan.Damaged raises the daemon's
// backup_damaged alert), since nothing was found wrong with it. Before,
// it was taken for damaged like a chunk missing: the alert fired during
// a storage outage, and the plan went on.
func TestArchive_PlanRetentionStorageError(t *testing.T) {
	ctx := context.Background()
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: %w", "b", storage.ErrPermanent)
	for _, c := range []struct {
		name    string
		control bool
		err     error
		cut     bool
	}{
		{"ChunkUnavailable", false, unavailable, false},
		{"ChunkDenied", false, denied, false},
		{"ControlCut", true, io.ErrUnexpectedEOF, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			a := localArchive(t, dir, "site", retentionCodec(t))
			putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000002", 2, 0)
			newest := putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000004", 2, 0)
			putWAL(t, a, segs(1, 1, 5)...)
			key := newest[0]
			if c.control {
				key = newest[len(newest)-1]
			}
			a.Store = &faultStore{Store: a.Store, key: key, err: c.err, cut: c.cut}
			p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC))
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), "2024-03-09_10-00_0") {
				t.Fatalf("plan: %v (delete %+v, damaged %q); want the storage's error naming the backup", err, p.Delete, p.Damaged)
			}
			if len(p.Damaged) != 0 {
				t.Errorf("damaged %q: a storage error reported as damage", p.Damaged)
			}
		})
	}
}
