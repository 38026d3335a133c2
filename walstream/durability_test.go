package walstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/verify"
	"github.com/hoardbackup/hoard/wal"
)

// The tests in this file stream into a real archive (the local file store,
// snappy-compressed) and end as an operator would: a basebackup restored
// with the archived WAL, whose rows must equal the source's, and a full
// verify of the archive that finds every segment from the backup on.

// archiveUploader archives through the archive package as the daemon
// does: complete files with PushWAL, .partial files with PutPartialWAL,
// and a segment's .partial object deleted once the segment is stored. It
// records the calls.
type archiveUploader struct {
	a *archive.Archive
	// failing makes every call fail while set: the storage is down.
	failing atomic.Bool
	// system, when set, is the streamed cluster's system identifier,
	// which a .history file's signature binds in a site with keys.
	system uint64

	mu    sync.Mutex
	calls []upload
}

// errStorageDown is what archiveUploader returns while failing.
var errStorageDown = errors.New("storage unavailable")

func (u *archiveUploader) Upload(ctx context.Context, path string) error {
	if u.failing.Load() {
		return errStorageDown
	}
	_, err := u.a.PushWAL(ctx, path, archive.PushOptions{SystemID: u.system})
	if name := filepath.Base(path); err == nil && wal.IsSegmentName(name) {
		err = u.a.DeletePartialWAL(ctx, name)
	}
	u.record(path, false, err)
	return err
}

func (u *archiveUploader) UploadPartial(ctx context.Context, path string, stored int64, holdsSpool bool) error {
	if u.failing.Load() {
		return errStorageDown
	}
	_, err := u.a.PutPartialWAL(ctx, path, archive.PushOptions{StoredPartial: stored, HoldsSpool: holdsSpool})
	u.record(path, true, err)
	return err
}

func (u *archiveUploader) record(path string, partial bool, err error) {
	if err != nil {
		return
	}
	u.mu.Lock()
	u.calls = append(u.calls, upload{partial: partial, name: filepath.Base(path)})
	u.mu.Unlock()
}

func (u *archiveUploader) uploads() []upload {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.calls)
}

// openArchive returns the archive of site "test" stored in the local
// store at dir.
func openArchive(dir string) *archive.Archive {
	return &archive.Archive{
		Store:  storage.NewLocal(dir),
		Codec:  &archive.Codec{Compression: compress.Snappy},
		Layout: archive.Layout{Prefix: "test"},
		Site:   "test",
	}
}

// durable is a cluster streamed into a real archive.
type durable struct {
	t        *testing.T
	c        *pgtest.Cluster
	major    int
	segSize  uint64
	storeDir string
	arch     *archive.Archive
	up       *archiveUploader
	spool    string
}

// newDurable starts a cluster with 1 MiB segments and a table to count,
// and an archive for it. The spool is spool, or a new directory.
func newDurable(t *testing.T, spool string) *durable {
	t.Helper()
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	c.Exec(t, "create table rows (id bigint, pad text)")
	return durableOf(t, c, spool)
}

// durableOf is newDurable for the running cluster c.
func durableOf(t *testing.T, c *pgtest.Cluster, spool string) *durable {
	t.Helper()
	if spool == "" {
		spool = t.TempDir()
	}
	d := &durable{t: t, c: c, major: c.Major, segSize: segSizeOf(t, c), storeDir: t.TempDir(), spool: spool}
	d.arch = openArchive(d.storeDir)
	d.up = &archiveUploader{a: d.arch}
	return d
}

// start runs a Receiver on the spool into the archive.
func (d *durable) start(opts Options) *running {
	d.t.Helper()
	return start(d.t, d.c, d.spool, d.up, opts)
}

// insert adds n rows, about 1 KiB of WAL each.
func (d *durable) insert(n int) {
	d.t.Helper()
	d.c.Exec(d.t, fmt.Sprintf("insert into rows select g, repeat('x', 900) from generate_series(1, %d) g", n))
}

// summary is what a restore must reproduce.
func (d *durable) summary(c *pgtest.Cluster) string {
	d.t.Helper()
	return c.QueryString(d.t, "select count(*)::text || ' rows, sum ' || coalesce(sum(id), 0)::text from rows")
}

// backup takes a basebackup into the archive; the Receiver must hold the
// slot already, as the daemon makes sure.
func (d *durable) backup() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := basebackup.Run(ctx, basebackup.Options{
		ConnString: d.c.ConnString("postgres"), Archive: d.arch, Fast: true, NoWait: true, ChunkSize: 4 << 20, Logger: zerolog.Nop(),
	})
	if err != nil {
		d.t.Fatalf("basebackup: %v", err)
	}
}

// stored reports whether the archive holds xlog/name.
func (d *durable) stored(name string) bool {
	_, err := d.arch.Store.Stat(context.Background(), d.arch.Layout.WALKey(name))
	return err == nil
}

// archivedWAL returns the names under xlog/.
func (d *durable) archivedWAL() []string {
	d.t.Helper()
	var names []string
	dir := d.arch.Layout.Dir(archive.XLogDir)
	err := d.arch.Store.List(context.Background(), dir, func(o storage.Object) error {
		names = append(names, strings.TrimPrefix(o.Key, dir))
		return nil
	})
	if err != nil {
		d.t.Fatal(err)
	}
	return names
}

// finish writes the last rows, waits until their segment is archived
// while rr runs, stops rr, and checks the archive as an operator would:
// verify --full finds no problem and no gap, no complete segment was
// archived as a .partial, and a restore of the latest backup recovers the
// source's rows exactly.
func (d *durable) finish(rr *running) {
	t := d.t
	t.Helper()
	want, last := d.finishWAL(rr)
	rep := d.verifyFull()
	if !rep.OK() {
		t.Errorf("verify --full: %+v", rep)
	}
	for _, b := range rep.Backups {
		if len(b.Gaps) > 0 {
			t.Errorf("verify --full: backup %s has WAL gaps %v", b.Name, b.Gaps)
		}
		if b.ReachSegment < last {
			t.Errorf("verify --full: backup %s reaches %s, want at least %s", b.Name, b.ReachSegment, last)
		}
	}
	d.restoreLatest(want)
}

// finishWAL writes the last rows, waits until their segment is archived
// while rr runs, and stops rr. It checks that no complete segment was
// archived as a .partial, and returns the summary a restore must have and
// the last segment.
func (d *durable) finishWAL(rr *running) (want, last string) {
	t := d.t
	t.Helper()
	d.insert(500)
	want = d.summary(d.c)
	d.c.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'last')")
	last = d.c.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	d.c.Exec(t, "select pg_switch_wal()")
	waitFor(t, "segment "+last+" archived", func() bool { return d.stored(last) })
	// The stop stores the segment in progress as a .partial when WAL
	// reached it after the switch, which PostgreSQL may write on its own
	// at any moment (a standby snapshot, a checkpoint): a record past the
	// switch, flushed by the Receiver before the stop, makes that copy
	// happen every time.
	after := lsn(t, d.c, "select pg_logical_emit_message(false, 'hoard-test', 'after')")
	waitFor(t, "the record after the switch flushed", func() bool { return rr.r.Status().Flushed >= after })
	rr.stop(t)
	inProgress := rr.r.Status().Segment + wal.PartialSuffix
	stopCopy := false
	for _, name := range d.archivedWAL() {
		switch {
		case name == inProgress:
			stopCopy = true
		case wal.IsPartialName(name):
			t.Errorf("%s archived as a .partial on a timeline that did not end", name)
		}
	}
	if !stopCopy {
		t.Errorf("the stop did not archive %s, the segment in progress", inProgress)
	}
	return want, last
}

// verifyFull runs verify --full on the archive.
func (d *durable) verifyFull() *verify.Report {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	rep, err := verify.Run(ctx, verify.Options{Archive: d.arch, Full: true, Logger: zerolog.Nop()})
	if err != nil {
		d.t.Fatalf("verify --full: %v", err)
	}
	return rep
}

// restoreLatest restores the latest backup with the archived WAL and
// checks that the restored cluster has want. The restored server replays
// the WAL through a plain restore_command from a directory of segments
// fetched (and checked) by the archive package.
func (d *durable) restoreLatest(want string) {
	t := d.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	walDir := pgtest.TempDir(t)
	for _, name := range d.archivedWAL() {
		if err := d.arch.FetchWAL(ctx, name, filepath.Join(walDir, name), archive.FetchOptions{}); err != nil {
			t.Fatalf("fetch %s: %v", name, err)
		}
	}
	pgtest.Chown(t, walDir)
	target := filepath.Join(pgtest.TempDir(t), "data")
	_, err := restore.Run(ctx, restore.Options{
		Archive: d.arch, TargetDir: target, ArchiveOff: true,
		RestoreCommand: fmt.Sprintf("cp %s/%%f %%p", walDir), Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	pgtest.Chown(t, filepath.Dir(target))
	rc := pgtest.StartDataDir(t, d.major, target, map[string]string{"archive_mode": "off"})
	rc.WaitRecoveryDone(t, testTimeout)
	if got := d.summary(rc); got != want {
		t.Errorf("restored cluster has %s, the source committed %s", got, want)
	}
}

// lister lists the archive's segments for the hole check, as the daemon
// does.
type lister struct{ a *archive.Archive }

func (l lister) ArchivedSegments(ctx context.Context) ([]string, error) {
	return l.a.ListSegments(ctx)
}

func (l lister) ForeignSegment(ctx context.Context, name string, system uint64) (bool, error) {
	return l.a.ForeignSegment(ctx, name, system)
}

// TestReceiver_Run_Hole loses the spool (a disk replaced, a container
// rescheduled without its volume) while segments wait in it for the
// storage. The restarted Receiver resumes at the slot, and its hole check
// names exactly the lost segments, at Error and in Status.Holes; verify
// --full finds the same hole behind the old backup. A new basebackup is
// restorable with every row.
func TestReceiver_Run_Hole(t *testing.T) {
	d := newDurable(t, "")
	var logs testio.SyncBuffer
	opts := Options{Archived: lister{d.arch}}
	rr := startReceiver(t, d.c, d.spool, d.up, opts, &logs, nil)
	d.backup()
	d.insert(1000)
	archivedUpTo := switchWAL(t, d.c)
	waitFor(t, archivedUpTo+" archived", func() bool { return d.stored(archivedUpTo) })
	d.up.failing.Store(true)
	var lost string
	for range 3 {
		d.insert(500)
		lost = switchWAL(t, d.c)
	}
	target := lsn(t, d.c, "select pg_current_wal_flush_lsn()")
	waitFor(t, "WAL received", func() bool { return rr.r.Status().Received >= target })
	// The hole exists only once the server has taken the flush position
	// past the lost segments into the slot: the Receiver resumes at the
	// slot's restart_lsn. The final flush position sent at the stop may
	// never be read (the walsender can end on its failed send first), and
	// the Receiver then resumed at the first lost segment, which the
	// server still had, and found no hole.
	boundary := target - target%pglogrepl.LSN(d.segSize)
	waitFor(t, "the slot past "+lost, func() bool {
		return lsn(t, d.c, "select restart_lsn from pg_replication_slots where slot_name = 'hoard'") >= boundary
	})
	rr.stop(t)
	if len(rr.r.Status().Holes) != 0 {
		t.Fatalf("holes before the spool was lost: %v", rr.r.Status().Holes)
	}

	// The spool is lost; the storage is back.
	if err := os.RemoveAll(d.spool); err != nil {
		t.Fatal(err)
	}
	d.up.failing.Store(false)
	rr = startReceiver(t, d.c, d.spool, d.up, opts, &logs, nil)
	waitFor(t, "the hole check", func() bool { return len(rr.r.Status().Holes) > 0 })
	first, err := wal.ParseSegmentName(archivedUpTo, d.segSize)
	if err != nil {
		t.Fatal(err)
	}
	want := Hole{First: first.Next().Name(d.segSize), Last: lost, Count: uint64(len(waltest.Names(t, archivedUpTo, lost, d.segSize)) - 1)}
	if got := rr.r.Status().Holes; len(got) != 1 || got[0] != want {
		t.Errorf("holes %v, want [%v]", got, want)
	}
	if !strings.Contains(logs.String(), `"level":"error"`) || !strings.Contains(logs.String(), want.First) {
		t.Errorf("the hole %v is not logged at error", want)
	}

	// verify --full finds the same hole behind the first backup; a new
	// backup restores every row.
	d.backup()
	rows, _ := d.finishWAL(rr)
	rep := d.verifyFull()
	var gaps []verify.Gap
	for _, b := range rep.Backups {
		gaps = append(gaps, b.Gaps...)
	}
	if len(gaps) != 1 || gaps[0].First != want.First || gaps[0].Last != want.Last {
		t.Errorf("verify --full found gaps %v, want the hole %v", gaps, want)
	}
	d.restoreLatest(rows)
}

// TestReceiver_Run_SyncError makes one fsync, or one write, of the
// segment being received fail, as a disk does when it loses written
// pages: Linux reports such an error once, so a second fsync succeeds
// although the bytes may be gone. The Receiver must never report a flush
// position past what was fsynced before the failure: the session ends,
// the server is told nothing more, and the next session streams those
// bytes again.
func TestReceiver_Run_SyncError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    string
		fault func(*faults, func(string) error)
	}{
		{"Fsync", "fsync", func(f *faults, fn func(string) error) { f.sync = fn }},
		// A write fails with bytes written and not fsynced before it:
		// those count as lost too.
		{"Write", "write", func(f *faults, fn func(string) error) {
			f.write = func(path string, unsynced uint64) error {
				if unsynced == 0 {
					return nil
				}
				return fn(path)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDurable(t, "")
			var (
				armed, fired atomic.Bool
				mu           sync.Mutex
				failedAt     string
				before       pglogrepl.LSN // the flush position when the operation failed
				rr           *running
			)
			fault := func(path string) error {
				if !armed.Load() || !strings.HasSuffix(path, wal.PartialSuffix) || fired.Swap(true) {
					return nil
				}
				mu.Lock()
				failedAt, before = filepath.Base(path), rr.r.Status().Flushed
				mu.Unlock()
				return errInjectedEIO
			}
			// A slow reconnection leaves time to read the slot once the
			// failed session ended.
			rr = d.startWith(Options{}, func(r *Receiver) {
				tc.fault(&r.faults, fault)
				r.retryMin, r.retryMax = 3*time.Second, 3*time.Second
			})
			d.backup()
			d.insert(3000)
			armed.Store(true)
			d.insert(2000)
			waitFor(t, "the injected "+tc.op+" error", fired.Load)
			waitFor(t, "the failed session ended", func() bool { return !rr.r.Status().Connected })
			mu.Lock()
			t.Logf("%s of %s failed with %s flushed", tc.op, failedAt, before)
			mu.Unlock()
			// The slot must not pass the flush position of before the
			// failure: anything beyond may not be on disk. Looked at
			// for 2 s: a negative observation, with no event after
			// which the server could no longer move the slot.
			for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if restart := lsn(t, d.c, "select restart_lsn from pg_replication_slots where slot_name = 'hoard'"); restart > before {
					t.Fatalf("after the %s error in %s the server was told %s is flushed; only %s was fsynced", tc.op, failedAt, restart, before)
				}
			}
			waitFor(t, "streaming again", func() bool { return rr.r.Status().Connected })
			d.insert(2000)
			d.finish(rr)
		})
	}
}

// TestReceiver_Run_CompleteErrorServerGone: the directory fsync after
// a full segment's rename fails, so the segment is renamed back to
// .partial (fsynced whole) and the session ends; then the server dies
// for good before the next session could stream it again. The spool's
// file is then the only copy of that segment's WAL, commits included.
// The session's stream end stores it as its .partial, as it stores the
// segment in progress at any other stream end, while Run goes on trying
// to reconnect: a restore after losing the server then has that WAL (the
// stored copy is the server's segment).
func TestReceiver_Run_CompleteErrorServerGone(t *testing.T) {
	d := newDurable(t, "")
	var (
		armed, fired atomic.Bool
		mu           sync.Mutex
		failed       string
	)
	rr := d.startWith(Options{}, func(r *Receiver) {
		r.faults.syncDir = func(segment string) error {
			if !armed.Load() || fired.Swap(true) {
				return nil
			}
			mu.Lock()
			failed = segment
			mu.Unlock()
			return errInjectedEIO
		}
		// Time to kill the server before the next session.
		r.retryMin, r.retryMax = 5*time.Second, 5*time.Second
	})
	d.insert(100)
	armed.Store(true)
	for !fired.Load() {
		d.insert(300)
	}
	waitFor(t, "the failed session ended", func() bool { return !rr.r.Status().Connected })
	d.c.Kill(t)
	mu.Lock()
	seg := failed
	mu.Unlock()
	want, err := os.ReadFile(filepath.Join(d.c.DataDir, "pg_wal", seg))
	if err != nil {
		t.Fatal(err)
	}
	name := seg + wal.PartialSuffix
	waitFor(t, name+" stored", func() bool { return d.stored(name) })
	g := &serverGone{t: t, d: d}
	if got := g.decoded(name); !bytes.Equal(got, want) {
		t.Errorf("the stored %s (%d bytes) is not the server's %s (%d bytes)", name, len(got), seg, len(want))
	}
	select {
	case err := <-rr.done:
		rr.done = nil
		t.Fatalf("Run returned %v, want it to go on reconnecting", err)
	default:
	}
	rr.stop(t)
}

// TestReceiver_Run_SpoolErrorServerGone: an fsync, or a write, of the
// segment being received fails after part of it was fsynced and
// reported flushed, so the session ends; then the server dies for good
// before the next session could stream the segment again. The part
// fsynced before the error is on disk and the server heard it is
// flushed: the session's stream end stores it as the segment's
// .partial, as at any stream end, while Run goes on trying to
// reconnect.
func TestReceiver_Run_SpoolErrorServerGone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*faults, func(string) error)
	}{
		{"Fsync", func(f *faults, fn func(string) error) { f.sync = fn }},
		{"Write", func(f *faults, fn func(string) error) {
			f.write = func(path string, unsynced uint64) error {
				if unsynced == 0 {
					return nil
				}
				return fn(path)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDurable(t, "")
			var (
				armed, fired atomic.Bool
				mu           sync.Mutex
				failedAt     string
				before       pglogrepl.LSN // the flush position when the operation failed
				rr           *running
			)
			fault := func(path string) error {
				if !armed.Load() || !strings.HasSuffix(path, wal.PartialSuffix) || fired.Load() {
					return nil
				}
				// Only once part of this segment is fsynced: a segment
				// with nothing fsynced has nothing to store.
				flushed := rr.r.Status().Flushed
				seg := wal.SegmentOf(1, flushed, d.segSize)
				if seg.Name(d.segSize)+wal.PartialSuffix != filepath.Base(path) || flushed == seg.StartLSN(d.segSize) {
					return nil
				}
				mu.Lock()
				failedAt, before = filepath.Base(path), flushed
				mu.Unlock()
				fired.Store(true)
				return errInjectedEIO
			}
			rr = d.startWith(Options{}, func(r *Receiver) {
				tc.fault(&r.faults, fault)
				// Time to kill the server before the next session.
				r.retryMin, r.retryMax = 5*time.Second, 5*time.Second
			})
			d.insert(100)
			armed.Store(true)
			for !fired.Load() {
				d.insert(50)
			}
			waitFor(t, "the failed session ended", func() bool { return !rr.r.Status().Connected })
			d.c.Kill(t)
			mu.Lock()
			name, flushed := failedAt, before
			mu.Unlock()
			seg := strings.TrimSuffix(name, wal.PartialSuffix)
			want, err := os.ReadFile(filepath.Join(d.c.DataDir, "pg_wal", seg))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, name+" stored", func() bool { return d.stored(name) })
			g := &serverGone{t: t, d: d}
			got := g.decoded(name)
			s, err := wal.ParseSegmentName(seg, d.segSize)
			if err != nil {
				t.Fatal(err)
			}
			if n := int(flushed - s.StartLSN(d.segSize)); len(got) < n {
				t.Errorf("the stored %s holds %d bytes, less than the %d fsynced and reported flushed before the error", name, len(got), n)
			}
			if len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) {
				t.Errorf("the stored %s (%d bytes) is not the start of the server's %s", name, len(got), seg)
			}
			select {
			case err := <-rr.done:
				rr.done = nil
				t.Fatalf("Run returned %v, want it to go on reconnecting", err)
			default:
			}
			rr.stop(t)
		})
	}
}

// errInjectedEIO is the error the fault hooks inject.
var errInjectedEIO = errors.New("injected EIO")

// startWith runs a Receiver that setup adjusts before it runs (faults,
// retry delays).
func (d *durable) startWith(opts Options, setup func(*Receiver)) *running {
	d.t.Helper()
	return startReceiver(d.t, d.c, d.spool, d.up, opts, nil, setup)
}

// crashEnv names the environment variable that makes
// TestReceiver_CrashChild run: the JSON of a crashSpec.
const crashEnv = "HOARD_WALSTREAM_CRASH"

// crashSpec tells the child process where to stream and where to die.
type crashSpec struct {
	ConnString string
	Spool      string
	Store      string
	// Step is the step of completeSegment (see session.step) at which the
	// child kills itself with SIGKILL, the Nth time it gets there; ""
	// streams until the parent kills it.
	Step string
	N    int
	// StorageDown makes every upload of the child fail: the spool keeps
	// everything it receives.
	StorageDown bool
}

// TestReceiver_CrashChild is the child process of
// TestReceiver_Run_CrashWhileCompleting, which runs the test binary with
// crashEnv set; without it, it does nothing. It streams into the archive
// until it dies at its step.
func TestReceiver_CrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		return
	}
	var c crashSpec
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	up := &archiveUploader{a: openArchive(c.Store)}
	up.failing.Store(c.StorageDown)
	r, err := New(Options{
		ConnString: c.ConnString, Slot: "hoard", SpoolDir: c.Spool,
		Uploader:       up,
		StatusInterval: 100 * time.Millisecond,
		Logger:         zerolog.New(os.Stderr).Level(zerolog.DebugLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	if c.Step != "" {
		r.faults.step = func(step, segment string) {
			if step == c.Step && int(n.Add(1)) == c.N {
				fmt.Fprintf(os.Stderr, "crash at %s of %s\n", step, segment)
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	t.Fatalf("Run returned without the crash: %v", r.Run(ctx))
}

// TestReceiver_Run_CrashWhileCompleting kills a Receiver (a child process)
// with SIGKILL at each step of completing a segment, as a power cut or the
// OOM killer would, and restarts it on the same spool each time. Two
// more crashes leave the spool as earlier hoard versions left it when
// they died between creating the next segment and renaming the finished
// one: both as .partial, once with the slot before the finished segment's
// end, once after it (those versions could report it flushed). After each
// crash the server must not have been told of a flush position past a
// segment that is not complete under its final name; in the end the
// archive holds every segment, none as a .partial but the segment in
// progress at the last stop (the only .partial copies uploaded are those of
// the segment in progress at each stop), and a restore has every row.
func TestReceiver_Run_CrashWhileCompleting(t *testing.T) {
	d := newDurable(t, "")
	rr := d.start(Options{})
	d.backup()
	rr.stop(t)
	// The segment in progress at each stop, stored as a .partial then.
	atStop := map[string]bool{rr.r.Status().Segment + wal.PartialSuffix: true}
	for _, tc := range []struct {
		step string
		old  bool // leave the next segment's .partial too, as older versions did
		slot bool // and move the slot past the finished segment
	}{
		{step: "synced"}, {step: "renamed"}, {step: "dir-synced"}, {step: "next-opened"},
		{step: "synced", old: true}, {step: "synced", old: true, slot: true},
	} {
		d.crash(tc.step)
		full := d.checkSpoolAfterCrash()
		if tc.old {
			if full == nil {
				t.Fatalf("crash at %s left no full .partial", tc.step)
			}
			next, err := openSegment(d.spool, full.Next(), d.segSize, nil)
			if err != nil {
				t.Fatal(err)
			}
			next.close()
		}
		if tc.slot {
			end := full.Next().StartLSN(d.segSize)
			d.c.Exec(t, fmt.Sprintf("select pg_replication_slot_advance('hoard', '%s')", end))
			if got := lsn(t, d.c, "select restart_lsn from pg_replication_slots where slot_name = 'hoard'"); got < end {
				t.Fatalf("slot at %s after advancing it to %s", got, end)
			}
		}
		// Restarted on the same spool, the Receiver streams on.
		rr := d.start(Options{})
		d.insert(1500)
		rr.stop(t)
		atStop[rr.r.Status().Segment+wal.PartialSuffix] = true
	}
	rr = d.start(Options{})
	d.insert(1000)
	d.finish(rr)
	// The last stop's copy stays: its segment never completed.
	last := rr.r.Status().Segment + wal.PartialSuffix
	atStop[last] = true
	for _, u := range d.up.uploads() {
		if u.partial && !atStop[u.name] {
			t.Errorf("%s uploaded as a .partial, not the segment in progress at a stop", u.name)
		}
		if u.partial && u.name != last && d.stored(u.name) {
			t.Errorf("%s still stored: its complete segment did not supersede it", u.name)
		}
	}
}

// crash runs the child until it kills itself at the second time it
// reaches step, writing WAL meanwhile.
func (d *durable) crash(step string) {
	t := d.t
	t.Helper()
	ch := d.startChild(step)
	for i := 0; ; i++ {
		select {
		case err := <-ch.exited:
			ch.checkKilled(t, err)
			t.Logf("child: %s", lastLine(ch.out.String(), "crash at"))
			return
		default:
		}
		if i == 200 {
			_ = ch.cmd.Process.Kill()
			<-ch.exited
			t.Fatalf("child did not reach %s\n%s", step, ch.out.String())
		}
		d.insert(300)
		time.Sleep(20 * time.Millisecond)
	}
}

// child is a Receiver streaming in a child process
// (TestReceiver_CrashChild) into d's spool and archive.
type child struct {
	cmd    *exec.Cmd
	out    *testio.SyncBuffer
	exited chan error
	step   string
}

// startChild starts a child that kills itself the second time it
// reaches step; with step "", it streams until killed (child.kill).
func (d *durable) startChild(step string) *child {
	d.t.Helper()
	return d.runChild(crashSpec{Step: step, N: 2})
}

// runChild starts a child as spec says, streaming d's cluster into d's
// spool and archive.
func (d *durable) runChild(spec crashSpec) *child {
	t := d.t
	t.Helper()
	spec.ConnString, spec.Spool, spec.Store = d.c.ConnString("postgres"), d.spool, d.storeDir
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	step := spec.Step
	ch := &child{out: &testio.SyncBuffer{}, exited: make(chan error, 1), step: step}
	ch.cmd = exec.Command(os.Args[0], "-test.run=^TestReceiver_CrashChild$", "-test.count=1")
	ch.cmd.Env = append(os.Environ(), crashEnv+"="+string(js))
	ch.cmd.Stdout, ch.cmd.Stderr = ch.out, ch.out
	if err := ch.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { ch.exited <- ch.cmd.Wait() }()
	t.Cleanup(func() {
		_ = ch.cmd.Process.Kill()
	})
	return ch
}

// kill sends the child SIGKILL, as the OOM killer would, and waits until
// it is gone: it dies without its stop path.
func (ch *child) kill(t *testing.T) {
	t.Helper()
	if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ch.exited:
		ch.checkKilled(t, err)
	case <-time.After(testTimeout):
		t.Fatal("child alive after SIGKILL")
	}
}

// checkKilled fails the test unless err, the child's exit, is death by
// SIGKILL.
func (ch *child) checkKilled(t *testing.T, err error) {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL (step %q): %v\n%s", ch.step, err, ch.out.String())
	}
}

// checkSpoolAfterCrash checks what a crash left: the server heard no flush
// position at or past the end of a segment that is still a .partial. It
// returns the full .partial left, if any.
func (d *durable) checkSpoolAfterCrash() *wal.Segment {
	t := d.t
	t.Helper()
	restart := lsn(t, d.c, "select restart_lsn from pg_replication_slots where slot_name = 'hoard'")
	c, err := readSpool(d.spool)
	if err != nil {
		t.Fatal(err)
	}
	var full *wal.Segment
	for _, name := range c.partials {
		seg, err := wal.ParseSegmentName(strings.TrimSuffix(name, wal.PartialSuffix), d.segSize)
		if err != nil {
			t.Fatal(err)
		}
		if end := seg.Next().StartLSN(d.segSize); restart >= end {
			t.Errorf("the slot is at %s, past the end of %s, which the spool has only as .partial", restart, name)
		}
		if empty, err := isEmptyPartial(filepath.Join(d.spool, name)); err == nil && !empty && full == nil {
			full = &seg
		}
	}
	t.Logf("spool %v, slot at %s", c, restart)
	return full
}

// lastLine returns the last line of s that contains substr.
func lastLine(s, substr string) string {
	var last string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			last = l
		}
	}
	return last
}
