package storage

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// syncRecorder records the paths a Local fsyncs.
type syncRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (r *syncRecorder) fsync(f *os.File) error {
	r.mu.Lock()
	r.paths = append(r.paths, filepath.Clean(f.Name())) // a directory synced through an os.Root is named dir/.
	r.mu.Unlock()
	return f.Sync()
}

func (r *syncRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.paths
	r.paths = nil
	return p
}

// The directories Put creates are fsynced in their parents, up to the
// first one that existed: without it a crash can take away a new
// directory, and every object in it, after Put returned.
func TestLocal_PutSyncsNewDirectories(t *testing.T) {
	base := t.TempDir()
	rec := &syncRecorder{}
	l := &Local{root: filepath.Join(base, "store"), fsync: rec.fsync}
	ctx := context.Background()
	if err := l.Put(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	got := rec.take()
	for _, dir := range []string{base, l.root, filepath.Join(l.root, "site")} {
		if !slices.Contains(got, dir) {
			t.Errorf("Put created %s's child directory without fsyncing %s; fsynced %v", dir, dir, got)
		}
	}
	// An existing directory is not synced again for its own sake.
	if err := l.Put(ctx, "site/xlog/000000010000000000000002", strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); slices.Contains(got, base) || slices.Contains(got, l.root) {
		t.Errorf("second Put into existing directories fsynced their parents: %v", got)
	}
}

// Sync fsyncs the object, its sidecar and every directory from the
// object's up to the root's parent: what a Put that died before its
// fsyncs may have left unsynced.
func TestLocal_Sync(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		base := t.TempDir()
		rec := &syncRecorder{}
		l := &Local{root: filepath.Join(base, "store"), fsync: rec.fsync}
		ctx := context.Background()
		key := "site/xlog/000000010000000000000001"
		if err := l.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
			t.Fatal(err)
		}
		rec.take()
		if err := l.Sync(ctx, key); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(l.root, "site", "xlog", "000000010000000000000001")
		want := []string{p, p + sidecarSuffix, filepath.Dir(p), filepath.Join(l.root, "site"), l.root, base}
		if got := rec.take(); !slices.Equal(got, want) {
			t.Errorf("Sync fsynced %v, want %v", got, want)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		l := NewLocal(t.TempDir())
		if err := l.Sync(context.Background(), "site/xlog/x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Sync of a missing key: %v, want ErrNotFound", err)
		}
	})
	t.Run("ThroughRetry", func(t *testing.T) {
		rec := &syncRecorder{}
		l := &Local{root: t.TempDir(), fsync: rec.fsync}
		ctx := context.Background()
		if err := l.Put(ctx, "k", strings.NewReader("v"), nil); err != nil {
			t.Fatal(err)
		}
		rec.take()
		if err := Sync(ctx, WithRetry(l, RetryOptions{}), "k"); err != nil {
			t.Fatal(err)
		}
		if got := rec.take(); !slices.Contains(got, filepath.Join(l.root, "k")) {
			t.Errorf("Sync through the retry wrapper fsynced %v", got)
		}
		if err := Sync(ctx, WithRetry(NewMem(), RetryOptions{}), "k"); err != nil {
			t.Errorf("Sync of a store without Sync: %v", err)
		}
	})
}

// A Put over an existing object that fails while writing the new file or
// its sidecar (a full disk, a failed fsync) leaves the old object as it
// was: the daemon replaces a stored .partial this way, and the WAL the old
// copy holds was already reported stored.
func TestLocal_PutFailedKeepsOld(t *testing.T) {
	for name, temp := range map[string]string{"Data": tempMarker, "Sidecar": sidecarTemp} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			failing := false
			l := &Local{root: t.TempDir(), fsync: func(f *os.File) error {
				if failing && strings.Contains(filepath.Base(f.Name()), temp) {
					return syscall.EIO
				}
				return f.Sync()
			}}
			const key = "site/xlog/000000010000000000000001.partial"
			if err := l.Put(ctx, key, strings.NewReader("old"), Metadata{"partial-data-size": "3"}); err != nil {
				t.Fatal(err)
			}
			failing = true
			if err := l.Put(ctx, key, strings.NewReader("newer"), Metadata{"partial-data-size": "5"}); !errors.Is(err, syscall.EIO) {
				t.Fatalf("Put with a failing fsync of its %s temp file = %v, want EIO", name, err)
			}
			rc, obj, err := l.Open(ctx, key)
			if err != nil {
				t.Fatalf("the old object is gone after a failed Put: %v", err)
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != "old" || obj.Metadata["partial-data-size"] != "3" {
				t.Errorf("after a failed Put the object holds %q with %v, want the old one", b, obj.Metadata)
			}
			entries, err := os.ReadDir(filepath.Join(l.root, "site", "xlog"))
			if err != nil {
				t.Fatal(err)
			}
			entries = slices.DeleteFunc(entries, func(e os.DirEntry) bool { return e.Name() == createLockName })
			if len(entries) != 2 {
				t.Errorf("the failed Put left files behind: %v", entries)
			}
		})
	}
}

// A Create whose fsync of the directory fails after it linked the object
// stores nothing: Linux may have dropped the directory's new entries and
// report it once, so a later fsync (Sync, called by a wal-push that finds
// the same bytes stored) would succeed with the entries gone. The object
// is removed, so that the next Create links it again and fsyncs that.
func TestLocal_CreateDirSyncError(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "site", "xlog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	failing := true
	l := &Local{root: root, fsync: func(f *os.File) error {
		if failing && filepath.Clean(f.Name()) == dir {
			failing = false
			return syscall.EIO
		}
		return f.Sync()
	}}
	const key = "site/xlog/000000010000000000000001"
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Create with a failing fsync of its directory = %v, want EIO", err)
	}
	if _, err := l.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a failed directory fsync the object is stored (Stat: %v): a Sync would report it durable", err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 || entries[0].Name() != createLockName {
		t.Errorf("the failed Create left %v (%v), want the lock file only", entries, err)
	}
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatalf("Create again: %v", err)
	}
	wantStored(t, l, key, "wal")
}

// Two writers of one key at once (PostgreSQL retrying archive_command
// while the first push still runs, the daemon and a wal-push of one
// segment, two daemons of one site): the first one's fsync of the
// directory fails after it linked the object, while the second one finds
// the object with its own bytes. It Syncs it to report it archived, as
// archive.PushWAL does, or its own Create meets it (ErrExist), which
// PushWAL's Sync and the signed-backups and signed-histories markers
// take for stored. What a writer reported stored must stay stored:
// PostgreSQL recycles the segment. The first writer may be a Put over an
// older copy (the daemon's .partial copy: the object is visible from its
// first rename), the second its retry finding the same bytes stored
// (PutPartialWAL's Sync).
func TestLocal_CreateDirSyncErrorConcurrent(t *testing.T) {
	create := func(ctx context.Context, l *Local, key string) error {
		return l.Create(ctx, key, strings.NewReader("wal"), nil)
	}
	put := func(ctx context.Context, l *Local, key string) error {
		return l.Put(ctx, key, strings.NewReader("wal"), nil)
	}
	sync := func(ctx context.Context, l *Local, key string) error {
		if _, err := l.Stat(ctx, key); err != nil {
			return err
		}
		return l.Sync(ctx, key)
	}
	for _, tc := range []struct {
		name          string
		first, second func(ctx context.Context, l *Local, key string) error // second: nil or ErrExist is reported stored
		old           bool                                                  // an older copy is stored first
	}{
		{"Sync", create, sync, false},
		{"Create", create, create, false},
		{"PutSync", put, sync, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testCreateDirSyncErrorConcurrent(t, tc.first, tc.second, tc.old) })
	}
}

func testCreateDirSyncErrorConcurrent(t *testing.T, first, secondOp func(ctx context.Context, l *Local, key string) error, old bool) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "site", "xlog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const key = "site/xlog/000000010000000000000001"
	second := newSecondWriter()
	var failed atomic.Bool
	l := &Local{root: root, lockWait: second.lockWait}
	if old {
		if err := l.Put(ctx, key, strings.NewReader("old"), nil); err != nil {
			t.Fatal(err)
		}
	}
	l.fsync = func(f *os.File) error {
		if filepath.Clean(f.Name()) != dir || !failed.CompareAndSwap(false, true) {
			return f.Sync()
		}
		// The first writer linked the object and fsyncs the directory:
		// the second writer finds it now. The first one's fsync fails
		// once the second has reported, or waits for the first.
		second.start(t, func() error { return secondOp(ctx, l, key) })
		return syscall.EIO
	}
	if err := first(ctx, l, key); !errors.Is(err, syscall.EIO) {
		t.Fatalf("first writer with a failing fsync of its directory = %v, want EIO", err)
	}
	err := second.result(t)
	switch {
	case err == nil || errors.Is(err, ErrExist):
		if _, serr := l.Stat(ctx, key); serr != nil {
			t.Fatalf("the second writer reported the object stored (%v), then the first writer's failure removed it: %v", err, serr)
		}
	case errors.Is(err, ErrNotFound):
		// Not reported stored: the key is free for the next push.
		if err := l.Create(ctx, key, strings.NewReader("wal"), nil); err != nil {
			t.Fatalf("Create again: %v", err)
		}
	default:
		t.Fatalf("the second writer: %v, want it stored or ErrNotFound", err)
	}
	wantStored(t, l, key, "wal")
}

// secondWriter runs a writer on a goroutine while a first one, failing
// an fsync, holds a directory's create lock.
type secondWriter struct {
	done  chan error    // the second writer's report
	waits chan struct{} // it waits for the lock (Local.lockWait)
}

func newSecondWriter() *secondWriter {
	return &secondWriter{done: make(chan error, 1), waits: make(chan struct{}, 1)}
}

// lockWait is the Local's lockWait hook.
func (s *secondWriter) lockWait() {
	select {
	case s.waits <- struct{}{}:
	default:
	}
}

// start runs write on a goroutine and returns once it has finished or
// waits for the lock.
func (s *secondWriter) start(t testing.TB, write func() error) {
	go func() { s.done <- write() }()
	select {
	case err := <-s.done:
		s.done <- err
	case <-s.waits:
	case <-time.After(time.Minute):
		t.Error("the second writer neither finished nor waited for the first")
	}
}

// result waits for the second writer and returns its report.
func (s *secondWriter) result(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the second writer did not finish")
		return nil
	}
}

// wantStored fails the test unless l holds want under key.
func wantStored(t *testing.T, l *Local, key, want string) {
	t.Helper()
	rc, _, err := l.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != want {
		t.Errorf("stored %q, %v; want %q", b, err, want)
	}
}

// A Put whose fsync of the directory fails after it renamed the new file
// over the key (or the new sidecar over the old) stores nothing: Linux may
// have dropped the directory's new entries and report it once, so a retry
// that found the same bytes stored and fsynced them again (PutPartialWAL's
// "same bytes" copy calls Sync) would count durable what may be lost. The
// object is removed, the old copy with it (its file was replaced), so that
// the retry writes and fsyncs it again.
func TestLocal_PutDirSyncError(t *testing.T) {
	for _, tc := range []struct {
		name string
		nth  int32 // which fsync of the object's directory fails
	}{
		{"FileRenamed", 1},
		{"SidecarRenamed", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			root := t.TempDir()
			dir := filepath.Join(root, "site", "xlog")
			const key = "site/xlog/000000010000000000000001.partial"
			var syncs atomic.Int32
			failing := false
			l := &Local{root: root}
			l.fsync = func(f *os.File) error {
				if failing && filepath.Clean(f.Name()) == dir && syncs.Add(1) == tc.nth {
					return syscall.EIO
				}
				return f.Sync()
			}
			if err := l.Put(ctx, key, strings.NewReader("old"), Metadata{"partial-data-size": "3"}); err != nil {
				t.Fatal(err)
			}
			failing = true
			if err := l.Put(ctx, key, strings.NewReader("newer"), Metadata{"partial-data-size": "5"}); !errors.Is(err, syscall.EIO) {
				t.Fatalf("Put with a failing fsync of its directory = %v, want EIO", err)
			}
			if err := l.Sync(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Sync after the Put's failed directory fsync = %v, want ErrNotFound: a retry would report the object durable", err)
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 || entries[0].Name() != createLockName {
				t.Errorf("the failed Put left %v (%v), want the lock file only", entries, err)
			}
			failing = false
			if err := l.Put(ctx, key, strings.NewReader("newer"), Metadata{"partial-data-size": "5"}); err != nil {
				t.Fatalf("Put again: %v", err)
			}
			wantStored(t, l, key, "newer")
		})
	}
}

// A directory Put creates (a new site's xlog/, a new backup's chunk
// folder, the storage directory and its missing parents at first use)
// whose parent's fsync fails may lose its entry in the parent although it
// reads well, and a second fsync of the parent would succeed without it.
// It is removed, so that the next Put creates it again and fsyncs the
// parent again; a Put that finds it while its creator fsyncs the parent
// waits, and reports its object stored only after a fsync of the parent
// that succeeded.
func TestLocal_MkdirSyncError(t *testing.T) {
	for _, inRoot := range []bool{false, true} {
		for _, concurrent := range []bool{false, true} {
			name := "Next"
			if concurrent {
				name = "Concurrent"
			}
			if inRoot {
				name = "Root" + name
			}
			t.Run(name, func(t *testing.T) { testMkdirSyncError(t, inRoot, concurrent) })
		}
	}
}

// testMkdirSyncError fails the first fsync of the parent of a directory
// Put creates: site/ for site/xlog/ (inRoot false), or, when the storage
// directory base/a/b/c is made at first use, base/a/b for c: a and b are
// made too, and their entries are fsynced, in base and a.
func testMkdirSyncError(t *testing.T, inRoot, concurrent bool) {
	ctx := context.Background()
	root := t.TempDir()
	failing := filepath.Join(root, "site")
	if inRoot {
		failing = filepath.Join(root, "a", "b")
		root = filepath.Join(failing, "c")
	} else if err := os.Mkdir(failing, 0o755); err != nil {
		t.Fatal(err)
	}
	const key, key2 = "site/xlog/000000010000000000000001", "site/xlog/000000010000000000000002"
	var (
		mu       sync.Mutex
		failed   bool // the creator's fsync of failing failed
		syncedOK bool // a fsync of failing succeeded after that
	)
	second := newSecondWriter()
	l := &Local{root: root, lockWait: second.lockWait}
	l.fsync = func(f *os.File) error {
		if filepath.Clean(f.Name()) != failing {
			return f.Sync()
		}
		mu.Lock()
		first := !failed
		failed = true
		mu.Unlock()
		if !first {
			err := f.Sync()
			mu.Lock()
			syncedOK = syncedOK || err == nil
			mu.Unlock()
			return err
		}
		if concurrent {
			// The new directory exists now: another writer finds it.
			second.start(t, func() error { return l.Put(ctx, key2, strings.NewReader("wal2"), nil) })
		}
		return syscall.EIO
	}
	if err := l.Put(ctx, key, strings.NewReader("wal"), nil); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Put with a failing fsync of the new directory's parent = %v, want EIO", err)
	}
	resynced := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return syncedOK
	}
	if concurrent {
		if err := second.result(t); err == nil && !resynced() {
			t.Fatalf("the second writer reported %s stored in a directory whose entry the failed fsync of %s may have lost", key2, failing)
		}
	} else {
		if inRoot {
			// Only the directory whose entry is not durable goes: b's
			// entry in a was fsynced, and the next Put makes c in it.
			if _, err := os.Lstat(root); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after the failed fsync of its parent, the new storage directory %s: %v, want it removed", root, err)
			}
			if _, err := os.Stat(failing); err != nil {
				t.Errorf("the storage directory's parent, made and fsynced in its own parent: %v, want it kept", err)
			}
		}
		if err := l.Put(ctx, key2, strings.NewReader("wal2"), nil); err != nil {
			t.Fatal(err)
		}
		if !resynced() {
			t.Fatalf("the next Put did not fsync %s again: the new directory's entry may be lost, the object is reported stored", failing)
		}
	}
	if err := l.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatalf("Put again: %v", err)
	}
	wantStored(t, l, key, "wal")
}

// A new directory whose parent's fsync failed and that cannot be removed,
// because a writer that takes no lock (a file system without locks) put a
// file in it, fails the Put with both errors: it is not stored.
func TestLocal_MkdirSyncErrorNotEmpty(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	xlog := filepath.Join(root, "site", "xlog")
	l := &Local{root: root, fsync: func(f *os.File) error {
		if filepath.Clean(f.Name()) != filepath.Dir(xlog) {
			return f.Sync()
		}
		if err := os.WriteFile(filepath.Join(xlog, "other"), []byte("x"), 0o600); err != nil {
			t.Error(err)
		}
		return syscall.EIO
	}}
	err := l.Put(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil)
	if !errors.Is(err, syscall.EIO) || !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("Put whose new directory neither reached the disk nor could go = %v, want EIO and ENOTEMPTY", err)
	}
}
