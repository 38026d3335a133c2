package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// deltaObjectsOf lists a's delta objects: key → when the storage wrote it.
func deltaObjectsOf(t testing.TB, a *archive.Archive) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	err := a.Store.List(context.Background(), a.Layout.Dir(archive.DeltaDir), func(o storage.Object) error {
		st, err := a.Store.Stat(context.Background(), o.Key)
		if err != nil {
			return err
		}
		out[o.Key] = st.Changed
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deltaFiles returns the files of a delta backup's manifest by path.
func deltaFiles(t testing.TB, a *archive.Archive, b *archive.BackupInfo) map[string]archive.DeltaFile {
	t.Helper()
	ctrl, err := a.ReadControl(context.Background(), b.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := archive.ParseDelta(ctrl.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]archive.DeltaFile{}
	for _, f := range dm.SnapshotResult.State.Files {
		out[f.RelativePath] = f
	}
	return out
}

// deltaOptions returns the options of a delta backup of c into a that
// the tests share: files of 256 KiB or more stored as delta objects, two
// workers, staging in a directory of the test's, warnings logged to it.
// A test sets what it does differently on the copy it gets.
func deltaOptions(t *testing.T, c *pgtest.Cluster, a *archive.Archive) Options {
	t.Helper()
	return Options{
		ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeDelta, PGData: c.DataDir,
		Fast: true, Parallel: 2, DeltaMinFileSize: 256 << 10, TempDir: t.TempDir(),
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
}

// stagedLog records the files a delta backup reads from their start
// (Options.storeRead at offset 0): those it stores in one read.
type stagedLog struct {
	mu    sync.Mutex
	paths []string
}

func (s *stagedLog) record(path string, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off == 0 {
		s.paths = append(s.paths, path)
	}
}

// TestRunDelta_TwoBackups takes two delta backups of a cluster, with one
// table changed between them: the second stores delta objects for the
// changed files only (the unchanged large files' objects are reused,
// never written again) and bundles for the small files. Both restore
// (checked by pg_verifybackup against the backup_manifest hoard wrote)
// and, with the archived WAL replayed, hold the source's rows.
func TestRunDelta_TwoBackups(t *testing.T) {
	pgtest.ForEachVersion(t, testRunDelta)
}

func testRunDelta(t *testing.T, major int) {
	ctx := testContext(t)
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table still as select g as i, md5(g::text) as h from generate_series(1, 20000) g")
	c.Exec(t, "create table changes as select g as i, md5(g::text) as h from generate_series(1, 20000) g")
	c.Exec(t, "checkpoint")
	still := c.QueryString(t, "select pg_relation_filepath('still')")
	changes := c.QueryString(t, "select pg_relation_filepath('changes')")
	a := encryptedArchive(t, compress.Zstd)
	opts := deltaOptions(t, c, a)
	opts.DeltaChunkSize = 1 << 20
	opts.BasebackupMode = "delta"
	b1, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("first backup: %v", err)
	}
	if b1.Format != archive.FormatDeltaV2 || b1.BasebackupMode != "delta" || b1.ChunkCount < 2 {
		t.Errorf("first backup: format %q, mode %q, %d bundles", b1.Format, b1.BasebackupMode, b1.ChunkCount)
	}
	objs1 := deltaObjectsOf(t, a)
	f1 := deltaFiles(t, a, b1)
	for _, p := range []string{still, changes} {
		if f1[p].Hexdigest == "" {
			t.Fatalf("%s is not a delta object: %+v", p, f1[p])
		}
	}
	if f1["PG_VERSION"].ContentB64 == nil {
		t.Errorf("PG_VERSION not embedded: %+v", f1["PG_VERSION"])
	}
	if len(objs1) == 0 {
		t.Fatal("no delta object stored")
	}

	c.Exec(t, "update changes set h = 'changed' where i % 7 = 0")
	c.Exec(t, "checkpoint")
	b2, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("second backup: %v", err)
	}
	f2 := deltaFiles(t, a, b2)
	objs2 := deltaObjectsOf(t, a)
	if f2[still].Hexdigest != f1[still].Hexdigest {
		t.Errorf("unchanged %s: digest %s, then %s", still, f1[still].Hexdigest, f2[still].Hexdigest)
	}
	if f2[changes].Hexdigest == f1[changes].Hexdigest {
		t.Errorf("changed %s kept its digest %s", changes, f1[changes].Hexdigest)
	}
	// Every object of the first backup is still there, never written
	// again; the objects the second stored are the digests it has that
	// no object had before it.
	for k, when := range objs1 {
		if objs2[k] != when {
			t.Errorf("%s written again (%s, then %s)", k, when, objs2[k])
		}
	}
	want := map[string]bool{}
	reused := 0
	for _, f := range f2 {
		if f.Hexdigest == "" {
			continue
		}
		k := a.Layout.DeltaKey(f.Hexdigest)
		if _, ok := objs1[k]; ok {
			reused++
		} else {
			want[k] = true
		}
	}
	var added []string
	for k := range objs2 {
		if _, ok := objs1[k]; !ok {
			added = append(added, k)
			if !want[k] {
				t.Errorf("second backup stored %s, which it does not refer to or which existed", k)
			}
		}
	}
	if len(added) != len(want) || !want[a.Layout.DeltaKey(f2[changes].Hexdigest)] || reused == 0 {
		t.Errorf("second backup stored %d objects, %d expected (the changed table's among them), reused %d", len(added), len(want), reused)
	}
	t.Logf("PostgreSQL %d: first backup %d delta objects, second stored %d and reused %d", major, len(objs1), len(added), reused)

	c.Exec(t, "insert into changes select g, 'after' from generate_series(20001, 20100) g")
	wantRows := tableDigests(t, c, "still", "changes")
	archivetest.StoreArchivedWAL(t, c, walDir, a)
	for _, b := range []*archive.BackupInfo{b1, b2} {
		r := restoreAndStart(t, a, b.Name, major, walDir, nil)
		checkTables(t, "restored "+b.Name, r, wantRows)
		r.Stop(t)
	}
}

// backupsABA takes two delta backups with opts, the first with the file
// hoard_test_blob of c holding 300 KiB of 'a', the second of 'b', then
// puts the 'a' bytes back, and returns the first backup and the key of
// its delta object for the file: an object only the first backup refers
// to, needed again by the next.
func backupsABA(ctx context.Context, t *testing.T, c *pgtest.Cluster, opts Options) (*archive.BackupInfo, string) {
	t.Helper()
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	write := func(b byte) {
		t.Helper()
		if err := os.WriteFile(blob, []byte(strings.Repeat(string(b), 300<<10)), 0o600); err != nil {
			t.Fatal(err)
		}
		pgtest.Chown(t, blob)
	}
	write('a')
	b0, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	x := opts.Archive.Layout.DeltaKey(deltaFiles(t, opts.Archive, b0)["hoard_test_blob"].Hexdigest)
	write('b')
	if _, err := Run(ctx, opts); err != nil {
		t.Fatal(err)
	}
	write('a')
	return b0, x
}

// TestRunDelta_RetentionConcurrent: retention runs while a delta backup is
// running, after its bundles are stored and before it looks for its delta
// objects. The running backup needs an object that only the backup
// retention deletes refers to (a file whose bytes came back): retention
// sees the running backup and keeps every delta object, and the new
// backup, reusing the object, restores with the file's bytes.
func TestRunDelta_RetentionConcurrent(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	ctx := testContext(t)
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table t as select g as i from generate_series(1, 1000) g")
	a := encryptedArchive(t, compress.Zstd)
	opts := deltaOptions(t, c, a)
	opts.BasebackupMode = "delta"
	b0, x := backupsABA(ctx, t, c, opts)
	var plan archive.RetentionPlan
	opts.afterBundles = func() {
		var err error
		plan, err = a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now())
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
			t.Error(err)
		}
	}
	b2, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("backup during retention: %v", err)
	}
	if len(plan.Delete) != 1 || plan.Delete[0].Backup.Name != b0.Name {
		t.Errorf("retention deleted %+v, want %s", plan.Delete, b0.Name)
	}
	if len(plan.Delta) != 0 {
		t.Errorf("retention deleted delta objects while a delta backup ran: %+v (notes %v)", plan.Delta, plan.Notes)
	}
	if got := a.Layout.DeltaKey(deltaFiles(t, a, b2)["hoard_test_blob"].Hexdigest); got != x {
		t.Errorf("the blob's bytes came back as %s, want %s reused", got, x)
	}
	if _, err := a.Store.Stat(ctx, x); err != nil {
		t.Fatalf("%s: %v", x, err)
	}
	archivetest.StoreArchivedWAL(t, c, walDir, a)
	r := restoreAndStart(t, a, b2.Name, major, walDir, nil)
	data, err := os.ReadFile(filepath.Join(r.DataDir, "hoard_test_blob"))
	if err != nil || string(data) != strings.Repeat("a", 300<<10) {
		t.Errorf("restored blob: %d bytes, %v", len(data), err)
	}
}

// TestRunDelta_RetentionRace: a retention run planned before a delta
// backup started (so it did not see it) deletes delta objects while the
// backup runs. The backup needs an object only the backup retention
// deletes refers to (a file whose bytes came back), and decides to reuse
// it. BeforeControl: the run's deletions come after the backup checked
// its reused objects, just before its control object: retention finds the
// running backup's marker and deletes no delta object. DeleteInFlight: the
// run had already checked for running backups and is deleting that very
// object when the backup looks: the backup waits for the run, finds the
// object gone, and stores it again. Either way the object exists after
// both, and the backup restores with the file's bytes and the table's rows.
func TestRunDelta_RetentionRace(t *testing.T) {
	pgtest.ForEachVersion(t, testRunDeltaRetentionRace)
}

// gateDelete is a store whose delete of key, once entered (reported on
// entered), waits for gate to close.
type gateDelete struct {
	storage.Store
	key     string
	entered chan struct{}
	gate    chan struct{}
}

func (s gateDelete) Delete(ctx context.Context, key string) error {
	if key == s.key {
		close(s.entered)
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Delete(ctx, key)
}

func testRunDeltaRetentionRace(t *testing.T, major int) {
	ctx := testContext(t)
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table t as select g as i, md5(g::text) as h from generate_series(1, 5000) g")
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	// setup takes b0 (blob a, object x) and b1 (blob b), puts a back, and
	// plans retention (basebackup_count 1): b0 and x go.
	setup := func(t *testing.T) (*archive.Archive, Options, string, archive.RetentionPlan) {
		a := encryptedArchive(t, compress.Zstd)
		opts := deltaOptions(t, c, a)
		opts.BasebackupMode = "delta"
		opts.Logger = log
		_, x := backupsABA(ctx, t, c, opts)
		plan, err := a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(plan.Delta, func(d archive.DeltaDeletion) bool { return d.Key == x }) {
			t.Fatalf("the plan does not delete %s: %+v, notes %q", x, plan.Delta, plan.Notes)
		}
		return a, opts, x, plan
	}
	check := func(t *testing.T, a *archive.Archive, b *archive.BackupInfo, x string) {
		t.Helper()
		if got := a.Layout.DeltaKey(deltaFiles(t, a, b)["hoard_test_blob"].Hexdigest); got != x {
			t.Errorf("the blob's bytes came back as %s, want %s", got, x)
		}
		if _, err := a.Store.Stat(ctx, x); err != nil {
			t.Fatalf("%s, which backup %s refers to: %v", x, b.Name, err)
		}
		want := tableDigests(t, c, "t")
		archivetest.StoreArchivedWAL(t, c, walDir, a)
		r := restoreAndStart(t, a, b.Name, major, walDir, nil)
		data, err := os.ReadFile(filepath.Join(r.DataDir, "hoard_test_blob"))
		if err != nil || string(data) != strings.Repeat("a", 300<<10) {
			t.Errorf("restored blob: %d bytes, %v", len(data), err)
		}
		checkTables(t, "restored "+b.Name, r, want)
		r.Stop(t)
	}
	t.Run("BeforeControl", func(t *testing.T) {
		a, opts, x, plan := setup(t)
		var res archive.RetentionResult
		opts.beforeControl = func() {
			var err error
			if res, err = a.ApplyRetention(ctx, plan, log); err != nil {
				t.Error(err)
			}
		}
		c.Exec(t, "update t set h = 'before control' where i % 4 = 0")
		b2, err := Run(ctx, opts)
		if err != nil {
			t.Fatalf("backup during retention: %v", err)
		}
		if res.Backups != 1 || res.Delta != 0 {
			t.Errorf("retention deleted %d backups and %d delta objects, want 1 and none", res.Backups, res.Delta)
		}
		check(t, a, b2, x)
	})
	// duringDelete starts plan's retention run, holds it inside its delete
	// of x, calls meanwhile, and takes a backup with opts: the backup's
	// retentionWait (or its end) lets the run go on. It returns the backup,
	// once both ended without error, and whether the backup waited.
	duringDelete := func(t *testing.T, a *archive.Archive, opts Options, x string, plan archive.RetentionPlan, meanwhile func()) (*archive.BackupInfo, bool) {
		t.Helper()
		g := gateDelete{Store: a.Store, key: x, entered: make(chan struct{}), gate: make(chan struct{})}
		ra := *a
		ra.Store = g
		done := make(chan error, 1)
		go func() {
			_, err := ra.ApplyRetention(ctx, plan, log)
			done <- err
		}()
		select {
		case <-g.entered:
		case err := <-done:
			t.Fatalf("retention did not delete %s: %v", x, err)
		}
		meanwhile()
		var once sync.Once
		open := func() { once.Do(func() { close(g.gate) }) }
		waited := false
		opts.retentionWait = func(string) { waited = true; open() }
		b, err := Run(ctx, opts)
		open()
		if rerr := <-done; rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			t.Fatalf("backup during retention: %v", err)
		}
		return b, waited
	}
	t.Run("DeleteInFlight", func(t *testing.T) {
		a, opts, x, plan := setup(t)
		b2, waited := duringDelete(t, a, opts, x, plan, func() {
			c.Exec(t, "update t set h = 'in flight' where i % 6 = 0")
		})
		if !waited {
			t.Error("the backup did not wait for the retention run")
		}
		check(t, a, b2, x)
	})
	t.Run("DeleteInFlightStoredOver", func(t *testing.T) {
		// As DeleteInFlight, but x was altered in the bucket after the
		// plan: no listed backup refers to it any more, so the backup reads
		// it back, stores its own object over it, and must find that one
		// deleted by the run and store it again.
		a, opts, x, plan := setup(t)
		b2, _ := duringDelete(t, a, opts, x, plan, func() {
			storetest.Tamper(t, a.Store, x)
			c.Exec(t, "update t set h = 'stored over' where i % 8 = 0")
		})
		check(t, a, b2, x)
	})
}

// noDeltaDelete is a store whose deletes of delta objects fail, as if
// the process died before it could make them: what a backup stores under
// basebackup_delta/ stays as it was stored.
type noDeltaDelete struct {
	storage.Store
	prefix string
}

func (s noDeltaDelete) Delete(ctx context.Context, key string) error {
	if strings.HasPrefix(key, s.prefix) {
		return errors.New("no delete: the process died")
	}
	return s.Store.Delete(ctx, key)
}

// deltaDigestOf is the delta object name of b's bytes.
func deltaDigestOf(b []byte) string {
	h := archive.NewDeltaHash()
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// TestRunDelta_FileChangesWhileStored: a large file that changes between
// the read that hashes it and the read that stores it is stored under the
// hash of the bytes the second read gave, never under the first read's
// (which, with the process dying before it could delete such an object,
// would stay mislabelled): every delta object holds the bytes its name
// says, the changed file restores with its new bytes, and a file of the
// same first bytes that did not change gets its own object. Nothing is
// left in the staging directory. Both files keep the size and
// modification time the previous backup recorded, so that they are hashed
// before they are stored (a file that differs from the previous manifest
// is stored in one read). One worker, so that the changed file (first by
// name) claims the shared digest first: with two, the unchanged file
// could store that digest's object first and the changed one reuse it
// before it was ever changed.
func TestRunDelta_FileChangesWhileStored(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	ctx := testContext(t)
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	same := filepath.Join(c.DataDir, "hoard_test_same")
	write := func(p, data string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if !mtime.IsZero() {
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		pgtest.Chown(t, p)
	}
	for _, p := range []string{blob, same} {
		write(p, strings.Repeat("a", 300<<10), time.Time{})
	}
	a := encryptedArchive(t, compress.Zstd)
	a.Store = noDeltaDelete{Store: a.Store, prefix: a.Layout.Dir(archive.DeltaDir)}
	staging := filepath.Join(t.TempDir(), "staging")
	var change bool
	opts := deltaOptions(t, c, a)
	opts.Parallel = 1
	opts.TempDir = staging
	opts.beforeStore = func(path string) {
		if change && path == blob {
			if err := os.WriteFile(blob, []byte(changed), 0o600); err != nil {
				t.Error(err)
			}
		}
	}
	if _, err := Run(ctx, opts); err != nil {
		t.Fatal(err)
	}
	// Other bytes, no object of them yet, the same size and times.
	orig := strings.Repeat("d", 300<<10)
	for _, p := range []string{blob, same} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		write(p, orig, st.ModTime())
	}
	change = true
	info, err := Run(ctx, opts)
	objs := deltaObjectsOf(t, a)
	for k := range objs {
		rc, _, err := a.Codec.Open(ctx, a.Store, k)
		if err != nil {
			t.Fatal(err)
		}
		h := archive.NewDeltaHash()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil || a.Layout.DeltaKey(hex.EncodeToString(h.Sum(nil))) != k {
			t.Errorf("%s does not hold the bytes its name says (%v)", k, err)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	files := deltaFiles(t, a, info)
	if f := files["hoard_test_blob"]; f.Hexdigest != deltaDigestOf([]byte(changed)) {
		t.Errorf("changed file in the manifest: %+v, want the digest of its new bytes", f)
	}
	if f := files["hoard_test_same"]; f.Hexdigest != deltaDigestOf([]byte(orig)) {
		t.Errorf("unchanged file in the manifest: %+v, want the digest of its bytes", f)
	}
	for _, d := range []string{deltaDigestOf([]byte(changed)), deltaDigestOf([]byte(orig))} {
		if _, ok := objs[a.Layout.DeltaKey(d)]; !ok {
			t.Errorf("no delta object %s", d)
		}
	}
	if left, err := os.ReadDir(staging); err != nil || len(left) != 0 {
		t.Errorf("staging directory after the backup: %v, %v", left, err)
	}
	archivetest.StoreArchivedWAL(t, c, walDir, a)
	r := restoreAndStart(t, a, info.Name, major, walDir, nil)
	for p, want := range map[string]string{"hoard_test_blob": changed, "hoard_test_same": orig} {
		if data, err := os.ReadFile(filepath.Join(r.DataDir, p)); err != nil || string(data) != want {
			t.Errorf("restored %s: %d bytes, %v", p, len(data), err)
		}
	}
}

// changed is what TestRunDelta_FileChangesWhileStored writes into a file
// between the two reads.
var changed = strings.Repeat("c", 300<<10)

// checkDeltaObjects fails t for a delta object of a that does not decode
// to the bytes its name says.
func checkDeltaObjects(t *testing.T, a *archive.Archive) {
	t.Helper()
	for k := range deltaObjectsOf(t, a) {
		data, _ := archivetest.Decode(t, a.Codec, a.Store, k)
		if a.Layout.DeltaKey(deltaDigestOf(data)) != k {
			t.Errorf("%s does not hold the bytes its name says", k)
		}
	}
}

// TestRunDelta_ChangesDuringSingleRead: a large file that the previous
// delta backup does not have is read once, hashed while it is compressed
// and encrypted; when it changes in the middle of that read, its object is
// named by the bytes the read gave (the first piece's old bytes, the rest
// new), which the manifest refers to and the object holds. Two workers,
// files of more pieces than a worker holds: every piece
// reaches both the hash and the compressor whole.
func TestRunDelta_ChangesDuringSingleRead(t *testing.T) {
	major := pgtest.Versions()[0]
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: major, DataChecksums: true})
	size := 4*deltaPieces*readBufferSize + 1000
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	other := filepath.Join(c.DataDir, "hoard_test_other")
	old, other1 := make([]byte, size), make([]byte, size)
	for i := range old {
		old[i] = byte(i * 7)
		other1[i] = byte(i * 13)
	}
	for p, data := range map[string][]byte{blob: old, other: other1} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pgtest.Chown(t, p)
	}
	newer := slices.Clone(old)
	for i := range newer {
		newer[i] ^= 0xff
	}
	var rewritten int
	var mu sync.Mutex
	a := localArchive(t)
	opts := deltaOptions(t, c, a)
	opts.NoWait = true
	opts.storeRead = func(path string, off int64) {
		mu.Lock()
		defer mu.Unlock()
		if path == blob && off == readBufferSize {
			rewritten++
			if err := os.WriteFile(blob, newer, 0o600); err != nil {
				t.Error(err)
			}
		}
	}
	info, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rewritten != 1 {
		t.Fatalf("the file was rewritten %d times during its read, want once", rewritten)
	}
	want := append(slices.Clone(old[:readBufferSize]), newer[readBufferSize:]...)
	files := deltaFiles(t, a, info)
	if f := files["hoard_test_blob"]; f.Hexdigest != deltaDigestOf(want) || f.FileSize != int64(size) {
		t.Errorf("file changed during its read: %+v, want the digest of the bytes read", f)
	}
	if f := files["hoard_test_other"]; f.Hexdigest != deltaDigestOf(other1) {
		t.Errorf("other file: %+v, want the digest of its bytes", f)
	}
	checkDeltaObjects(t, a)
	data, _ := archivetest.Decode(t, a.Codec, a.Store, a.Layout.DeltaKey(deltaDigestOf(want)))
	if !slices.Equal(data, want) {
		t.Errorf("object of the changed file holds %d bytes, not those read", len(data))
	}
}

// createLog is a store that records the keys Create is asked to store.
type createLog struct {
	storage.Store
	mu   sync.Mutex
	keys []string
}

func (s *createLog) Create(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return s.Store.Create(ctx, key, r, md)
}

// TestRunDelta_HintChangedSameBytes: a large file written again with the
// same bytes (a new modification time) looks changed against the previous
// backup's manifest and is read once to be stored; its digest names the
// object that exists, which is reused as it is: not uploaded again, not
// replaced.
func TestRunDelta_HintChangedSameBytes(t *testing.T) {
	major := pgtest.Versions()[0]
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: major})
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	data := []byte(strings.Repeat("hoard", 100<<10))
	write := func() {
		t.Helper()
		if err := os.WriteFile(blob, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pgtest.Chown(t, blob)
	}
	write()
	a := localArchive(t)
	store := &createLog{Store: a.Store}
	a.Store = store
	staged := &stagedLog{}
	opts := deltaOptions(t, c, a)
	opts.NoWait = true
	opts.storeRead = staged.record
	if _, err := Run(ctx, opts); err != nil {
		t.Fatal(err)
	}
	key := a.Layout.DeltaKey(deltaDigestOf(data))
	before := deltaObjectsOf(t, a)
	if _, ok := before[key]; !ok {
		t.Fatalf("no delta object %s", key)
	}
	write()
	later := time.Now().Add(time.Minute) // a new modification time, whatever the file system's resolution
	if err := os.Chtimes(blob, later, later); err != nil {
		t.Fatal(err)
	}
	staged.paths, store.keys = nil, nil
	info, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(staged.paths, blob) {
		t.Errorf("the rewritten file was not stored in one read: staged %v", staged.paths)
	}
	if slices.Contains(store.keys, key) {
		t.Errorf("%s uploaded again though it existed", key)
	}
	if after := deltaObjectsOf(t, a); after[key] != before[key] {
		t.Errorf("%s replaced: written %s, then %s", key, before[key], after[key])
	}
	if f := deltaFiles(t, a, info)["hoard_test_blob"]; f.Hexdigest != deltaDigestOf(data) {
		t.Errorf("manifest: %+v", f)
	}
	checkDeltaObjects(t, a)
}

// TestRunDelta_ForgedPrevious: the previous delta backup's manifest only
// chooses which read of a file comes first, never what the new backup
// refers to. A bucket writer rewrites it (no encryption here) so that a
// file's entry names another file's object; the file then gets other
// bytes of the same size and its old modification time, so that it looks
// unchanged: the new backup refers to the digest of the bytes it read and
// stores them, not the forged object.
func TestRunDelta_ForgedPrevious(t *testing.T) {
	major := pgtest.Versions()[0]
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: major})
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	evil := filepath.Join(c.DataDir, "hoard_test_evil")
	size := 300 << 10
	for p, b := range map[string]string{blob: "a", evil: "e"} {
		if err := os.WriteFile(p, []byte(strings.Repeat(b, size)), 0o600); err != nil {
			t.Fatal(err)
		}
		pgtest.Chown(t, p)
	}
	a := localArchive(t)
	opts := deltaOptions(t, c, a)
	opts.NoWait = true
	b1, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	evilDigest := deltaDigestOf([]byte(strings.Repeat("e", size)))
	forgeDeltaManifest(t, a, b1, func(dm *archive.DeltaManifest) {
		for i, f := range dm.SnapshotResult.State.Files {
			if f.RelativePath == "hoard_test_blob" {
				dm.SnapshotResult.State.Files[i].Hexdigest = evilDigest
			}
		}
	})
	if f := deltaFiles(t, a, b1)["hoard_test_blob"]; f.Hexdigest != evilDigest {
		t.Fatalf("forged entry: %+v", f)
	}
	st, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}
	now := []byte(strings.Repeat("b", size))
	if err := os.WriteFile(blob, now, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(blob, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	b2, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if f := deltaFiles(t, a, b2)["hoard_test_blob"]; f.Hexdigest != deltaDigestOf(now) {
		t.Errorf("new backup's entry: %+v, want the digest of the file's bytes", f)
	}
	checkDeltaObjects(t, a)
	if _, ok := deltaObjectsOf(t, a)[a.Layout.DeltaKey(deltaDigestOf(now))]; !ok {
		t.Error("the file's bytes were not stored")
	}
}

// forgeDeltaManifest rewrites the delta manifest in b's control object
// with edit, as a bucket writer of a site that does not encrypt can.
func forgeDeltaManifest(t *testing.T, a *archive.Archive, b *archive.BackupInfo, edit func(*archive.DeltaManifest)) {
	t.Helper()
	data, md := archivetest.Decode(t, a.Codec, a.Store, b.Key)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	testio.EachTarMember(t, b.Key, bytes.NewReader(data), func(h *tar.Header, r io.Reader) {
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == archive.ManifestName {
			var js map[string]json.RawMessage
			if err := json.Unmarshal(body, &js); err != nil {
				t.Fatal(err)
			}
			var dm archive.DeltaManifest
			if err := json.Unmarshal(js["manifest"], &dm); err != nil {
				t.Fatal(err)
			}
			edit(&dm)
			if js["manifest"], err = json.Marshal(&dm); err != nil {
				t.Fatal(err)
			}
			if body, err = json.Marshal(js); err != nil {
				t.Fatal(err)
			}
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Codec.Put(context.Background(), a.Store, b.Key, &out, int64(out.Len()), md); err != nil {
		t.Fatal(err)
	}
}

// TestRunDelta_Tablespace backs up a cluster with a tablespace in delta
// mode: the tablespace's files are named relative to the data directory
// through its link (pg_tblspc/<oid>/PG_.../...), its large table as a
// delta object, its small one in a bundle, and the control object lists
// the tablespace as PGHoard's does. Restored with the tablespace moved,
// pg_verifybackup passes, the link points to the new directory and, with
// the archived WAL replayed, the rows equal the source's.
func TestRunDelta_Tablespace(t *testing.T) {
	vs := pgtest.Versions()
	for _, major := range slices.Compact([]int{vs[0], vs[len(vs)-1]}) {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			ctx := testContext(t)
			c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
			tsDir := pgtest.TempDir(t)
			c.Exec(t, "create tablespace extra location '"+tsDir+"'")
			c.Exec(t, "create table big_extra tablespace extra as select g as i, md5(g::text) as h from generate_series(1, 20000) g")
			c.Exec(t, "create table small_extra tablespace extra as select g as i from generate_series(1, 100) g")
			c.Exec(t, "create table in_main as select g as i from generate_series(1, 1000) g")
			c.Exec(t, "checkpoint")
			oid := c.QueryString(t, "select oid::text from pg_tablespace where spcname = 'extra'")
			big := c.QueryString(t, "select pg_relation_filepath('big_extra')")
			small := c.QueryString(t, "select pg_relation_filepath('small_extra')")
			if !strings.HasPrefix(big, "pg_tblspc/"+oid+"/PG_") || !strings.HasPrefix(small, "pg_tblspc/"+oid+"/PG_") {
				t.Fatalf("tablespace files %s, %s", big, small)
			}
			a := encryptedArchive(t, compress.Zstd)
			opts := deltaOptions(t, c, a)
			opts.BasebackupMode = "delta"
			info, err := Run(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			files := deltaFiles(t, a, info)
			if f := files[big]; f.Hexdigest == "" {
				t.Errorf("%s: %+v, want a delta object", big, f)
			}
			if f := files[small]; !f.ShouldBeBundled {
				t.Errorf("%s: %+v, want bundled", small, f)
			}
			ctrl, err := a.ReadControl(ctx, info.Key, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ts := ctrl.Manifest.Tablespaces["extra"]; ts.Path != tsDir || strconv.FormatUint(uint64(ts.OID), 10) != oid {
				t.Errorf("control object's tablespaces: %+v", ctrl.Manifest.Tablespaces)
			}
			for _, ch := range ctrl.Manifest.Chunks {
				for _, f := range ch.Files {
					if strings.HasPrefix(f, "pgdata/") || strings.HasPrefix(f, "tablespaces/") {
						t.Errorf("bundle member %s is not named relative to the data directory", f)
					}
				}
			}

			c.Exec(t, "insert into big_extra select g, 'after' from generate_series(20001, 20100) g")
			want := tableDigests(t, c, "big_extra", "small_extra", "in_main")
			archivetest.StoreArchivedWAL(t, c, walDir, a)
			moved := filepath.Join(pgtest.TempDir(t), "extra")
			r := restoreAndStart(t, a, "", major, walDir, map[string]string{"extra": moved})
			checkTables(t, "restored", r, want)
			if link, err := os.Readlink(filepath.Join(r.DataDir, "pg_tblspc", oid)); err != nil || link != moved {
				t.Errorf("pg_tblspc/%s -> %q (%v), want %s", oid, link, err, moved)
			}
			if _, err := os.Stat(filepath.Join(moved, strings.TrimPrefix(big, "pg_tblspc/"+oid+"/"))); err != nil {
				t.Errorf("big table's file in the moved tablespace: %v", err)
			}
		})
	}
}

// TestRunDelta_RetentionPublicKeyOnly: a daemon holding only the public
// key takes three delta backups; each stores its reference list. A list
// struck by someone with bucket access (the MAC kept), or removed (as a
// PGHoard backup, or an older hoard's, has none), makes retention with
// the public key only delete no delta object, naming the backup. With
// the lists intact it deletes the first backup and exactly the delta
// objects only that backup refers to (as read from the manifests with
// the private key), and both kept backups restore with the source's rows.
func TestRunDelta_RetentionPublicKeyOnly(t *testing.T) {
	pgtest.ForEachVersion(t, testRunDeltaRetentionPublicKeyOnly)
}

func testRunDeltaRetentionPublicKeyOnly(t *testing.T, major int) {
	ctx := testContext(t)
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table t as select g as i, md5(g::text) as h from generate_series(1, 20000) g")
	c.Exec(t, "checkpoint")
	a := encryptedArchive(t, compress.Zstd)
	full := a.Codec
	pub := &archive.Codec{Compression: full.Compression, KeyID: full.KeyID, PublicKey: full.PublicKey, RequireEncryption: true, Host: full.Host}
	a.Codec = pub
	opts := deltaOptions(t, c, a)
	opts.BasebackupMode = "delta"
	var bs []*archive.BackupInfo
	for i, upd := range []string{"", "update t set h = 'changed' where i % 3 = 0", "update t set h = 'again' where i % 5 = 0"} {
		if upd != "" {
			c.Exec(t, upd)
			c.Exec(t, "checkpoint")
		}
		b, err := Run(ctx, opts)
		if err != nil {
			t.Fatalf("backup %d: %v", i+1, err)
		}
		bs = append(bs, b)
	}
	// What each backup refers to, from its manifest (the private key).
	a.Codec = full
	refs := make([]map[string]bool, len(bs))
	for i, b := range bs {
		refs[i] = map[string]bool{}
		for _, f := range deltaFiles(t, a, b) {
			if f.Hexdigest != "" {
				refs[i][a.Layout.DeltaKey(f.Hexdigest)] = true
			}
		}
	}
	a.Codec = pub
	var want []string
	for k := range refs[0] {
		if !refs[1][k] && !refs[2][k] {
			want = append(want, k)
		}
	}
	slices.Sort(want)
	if len(want) == 0 {
		t.Fatal("the first backup has no delta object of its own: the test proves nothing")
	}
	policy := archive.RetentionPolicy{MaxCount: 2}
	at := time.Now().Add(48 * time.Hour)
	listKey := a.Layout.DeltaRefsKey(bs[2].Name)
	orig, _ := storetest.Read(t, a.Store, listKey)
	replace := func(body []byte) {
		t.Helper()
		if err := a.Store.Delete(ctx, listKey); err != nil {
			t.Fatal(err)
		}
		if body != nil {
			if err := a.Store.Put(ctx, listKey, strings.NewReader(string(body)), storage.Metadata{archive.MetaFormat: archive.FormatDeltaRefs}); err != nil {
				t.Fatal(err)
			}
		}
	}
	planNone := func(why string) {
		t.Helper()
		plan, err := a.PlanRetention(ctx, policy, at)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Delete) != 1 || plan.Delete[0].Backup.Name != bs[0].Name || len(plan.Delta) != 0 {
			t.Errorf("%s: retention deletes %d backups and %d delta objects; want %s and none", why, len(plan.Delete), len(plan.Delta), bs[0].Name)
		}
		if !strings.Contains(plan.DeltaKept, bs[2].Name) || !strings.Contains(plan.DeltaKept, why) {
			t.Errorf("DeltaKept %q: want it to name %s and say %q", plan.DeltaKept, bs[2].Name, why)
		}
	}
	// Struck: one of the kept backup's own objects (one the first backup
	// shares, or the plan would not delete it anyway) removed from the
	// list, its MAC left as it was.
	var shared string
	for k := range refs[2] {
		if refs[0][k] && !refs[1][k] {
			shared = strings.TrimPrefix(k, a.Layout.Dir(archive.DeltaDir))
		}
	}
	if shared == "" {
		for k := range refs[2] {
			shared = strings.TrimPrefix(k, a.Layout.Dir(archive.DeltaDir))
		}
	}
	struck := strings.Replace(strings.Replace(string(orig), `"`+shared+`",`, "", 1), `,"`+shared+`"`, "", 1)
	if struck == string(orig) {
		t.Fatalf("%s not in the list %s", shared, orig)
	}
	replace([]byte(struck))
	planNone("does not verify")
	replace(nil)
	planNone("no reference list")
	replace(orig)

	before := deltaObjectsOf(t, a)
	plan, err := a.PlanRetention(ctx, policy, at)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, d := range plan.Delta {
		planned = append(planned, d.Key)
	}
	slices.Sort(planned)
	if !slices.Equal(planned, want) || plan.DeltaKept != "" {
		t.Fatalf("retention with the public key only deletes delta objects %v, want %v (only %s refers to them); DeltaKept %q", planned, want, bs[0].Name, plan.DeltaKept)
	}
	if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	after := deltaObjectsOf(t, a)
	for k := range before {
		if _, ok := after[k]; ok == slices.Contains(want, k) {
			t.Errorf("%s: kept %v after retention", k, ok)
		}
	}
	a.Codec = full
	wantRows := tableDigests(t, c, "t")
	archivetest.StoreArchivedWAL(t, c, walDir, a)
	for _, b := range bs[1:] {
		r := restoreAndStart(t, a, b.Name, major, walDir, nil)
		checkTables(t, "restored "+b.Name, r, wantRows)
		r.Stop(t)
	}
}

// TestRunDelta_HintFile: a site with the public key only cannot read the
// previous delta backup's manifest; Options.DeltaHintFile, written after
// each delta backup, stands in for it. A large file written again (same
// bytes, a new modification time) is then read once, to be stored, and the
// object of its digest reused as it is, not uploaded again. A hint file
// that names another backup is not used: the file is hashed first.
func TestRunDelta_HintFile(t *testing.T) {
	major := pgtest.Versions()[0]
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: major})
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	data := []byte(strings.Repeat("hoard", 100<<10))
	touch := func(d time.Duration) {
		t.Helper()
		when := time.Now().Add(d)
		if err := os.Chtimes(blob, when, when); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(blob, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, blob)
	a := encryptedArchive(t, compress.Snappy)
	a.Codec.PrivateKeys = nil // as a daemon given the public key only
	store := &createLog{Store: a.Store}
	a.Store = store
	hint := filepath.Join(t.TempDir(), "site", "delta_hint.json")
	staged := &stagedLog{}
	opts := deltaOptions(t, c, a)
	opts.NoWait = true
	opts.DeltaHintFile = hint
	opts.storeRead = staged.record
	b1, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(hint)
	if err != nil {
		t.Fatal(err)
	}
	var h deltaHint
	if err := json.Unmarshal(raw, &h); err != nil || h.Backup != b1.Name || h.Files["hoard_test_blob"].Size != int64(len(data)) {
		t.Fatalf("hint file after the first backup: %s (%v)", raw, err)
	}
	key := a.Layout.DeltaKey(deltaDigestOf(data))
	touch(time.Minute)
	staged.paths, store.keys = nil, nil
	if _, err := Run(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(staged.paths, blob) {
		t.Errorf("with the hint file, the touched file was not stored in one read: staged %v", staged.paths)
	}
	if slices.Contains(store.keys, key) {
		t.Errorf("%s uploaded again though it existed", key)
	}

	// A hint of another backup is left alone.
	raw, err = os.ReadFile(hint)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hint, []byte(strings.Replace(string(raw), `"backup":"`, `"backup":"x`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	touch(2 * time.Minute)
	staged.paths = nil
	if _, err := Run(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(staged.paths, blob) {
		t.Errorf("a hint naming another backup was used: staged %v", staged.paths)
	}
}

// TestRunDelta_StagedCopyChanged: a delta object's staging file that
// reads back other bytes than were written to it (a byte overwritten
// between stage and put, as a disk that failed its writeback would give)
// fails the backup with an error naming the file and the staging
// directory, and nothing is stored under the file's digest.
func TestRunDelta_StagedCopyChanged(t *testing.T) {
	major := pgtest.Versions()[0]
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: major})
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(blob, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, blob)
	a := encryptedArchive(t, compress.Zstd)
	opts := deltaOptions(t, c, a)
	opts.NoWait = true
	var flipped atomic.Int32
	opts.beforePut = func(path string, tmp *os.File) {
		if path != blob {
			return
		}
		b := make([]byte, 1)
		if _, err := tmp.ReadAt(b, 100); err != nil {
			t.Error(err)
			return
		}
		b[0] ^= 0xff
		if _, err := tmp.WriteAt(b, 100); err != nil {
			t.Error(err)
			return
		}
		flipped.Add(1)
	}
	_, err := Run(ctx, opts)
	if flipped.Load() == 0 {
		t.Fatal("the staged copy of the file was never changed")
	}
	if err == nil || !strings.Contains(err.Error(), blob) || !strings.Contains(err.Error(), "changed on the local disk") ||
		!strings.Contains(err.Error(), opts.TempDir) {
		t.Fatalf("Run = %v, want an error naming %s, its staging directory and the change", err, blob)
	}
	key := a.Layout.DeltaKey(deltaDigestOf(data))
	if _, err := a.Store.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat %s after the failed backup = %v, want not found", key, err)
	}
	checkDeltaObjects(t, a)
}
