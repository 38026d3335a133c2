package storage_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// replacer is a store whose Put replaces an object in steps: open returns
// one over dir whose Put calls before(i) ahead of its step i (a non-nil
// error is the step's); before is nil for a store that only reads.
type replacer struct {
	steps []string
	// syncs are the steps whose failure leaves no object: a failed fsync
	// of the directory after a rename (see Local.Put).
	syncs []string
	// serial says that the store's Puts of one directory wait for each
	// other from their first rename (the local store's create lock).
	serial bool
	open   func(t *testing.T, dir string, before func(i int) error) storage.Store
}

const replaceKey = "site/xlog/000000010000000000000001.partial"

// A Put over an existing local object leaves a copy whose bytes and
// metadata belong together, whichever of its steps fails and wherever it
// crashes (see testPutReplace). The steps: the new file's rename, the
// directory's fsync, the sidecar's rename, the directory's fsync.
func TestLocal_PutReplace(t *testing.T) {
	testPutReplace(t, localReplacer)
}

// localReplacer opens the local store with hooks on its renames and
// fsyncs.
var localReplacer = replacer{
	steps:  []string{"RenameData", "SyncDir", "RenameSidecar", "SyncDirAgain"},
	syncs:  []string{"SyncDir", "SyncDirAgain"},
	serial: true,
	open: func(t *testing.T, dir string, before func(int) error) storage.Store {
		if before == nil {
			return storage.NewLocal(dir)
		}
		objDir := filepath.Join(dir, filepath.Dir(replaceKey))
		last := -1
		step := func(i int) error {
			last = i
			return before(i)
		}
		rename := func(oldpath, newpath string) error {
			i := 0
			if strings.Contains(oldpath, ".metadata_tmp") {
				i = 2
			}
			if err := step(i); err != nil {
				return err
			}
			return os.Rename(oldpath, newpath)
		}
		fsync := func(f *os.File) error {
			if filepath.Clean(f.Name()) == objDir && (last == 0 || last == 2) {
				if err := step(last + 1); err != nil {
					return err
				}
			}
			return f.Sync()
		}
		return storage.NewLocalHooked(dir, rename, fsync)
	},
}

// The same for the SFTP store on OpenSSH's server: its steps are the new
// file's rename and the sidecar's (SFTP cannot fsync a directory).
func TestSFTP_PutReplace(t *testing.T) {
	testPutReplace(t, sftpReplacer(storetest.SFTP(t)))
}

// sftpReplacer opens SFTP stores on srv with a hook on their renames.
func sftpReplacer(srv storetest.SFTPServer) replacer {
	return replacer{
		steps: []string{"RenameData", "RenameSidecar"},
		open: func(t *testing.T, dir string, before func(int) error) storage.Store {
			c := srv.Config
			c.Directory, c.Prefix = dir, ""
			st, err := storage.Open(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if before != nil {
				storage.SetReplaceHook(st.(*storage.SFTP), func(oldname, _ string) error {
					if strings.Contains(oldname, ".metadata_tmp") {
						return before(1)
					}
					return before(0)
				})
			}
			return st
		},
	}
}

// testPutReplace replaces the object "old" by "new data" with each step of
// r's replace failing in turn, and with a crash before each step and after
// the last (the store's files as they were then, hard links of them taken
// by the hook, opened by another store). The old copy stays until the new
// file is in place; from then on the new sidecar's temp file completes it.
// checkReplaced checks each outcome.
func testPutReplace(t *testing.T, r replacer) {
	for i := 0; i <= len(r.steps); i++ {
		name, want := "Done", "new data"
		if i < len(r.steps) {
			name = r.steps[i]
		}
		if i == 0 {
			want = "old"
		}
		run := func(t *testing.T, at func(dir string) error) (dir string, err error) {
			dir = t.TempDir()
			armed := false
			var seen []int
			st := r.open(t, dir, func(s int) error {
				if !armed {
					return nil
				}
				seen = append(seen, s)
				if s == i {
					return at(dir)
				}
				return nil
			})
			ctx := context.Background()
			if err := st.Put(ctx, replaceKey, strings.NewReader("old"), storage.Metadata{"v": "old"}); err != nil {
				t.Fatal(err)
			}
			armed = true
			err = st.Put(ctx, replaceKey, strings.NewReader("new data"), storage.Metadata{"v": "new"})
			armed = false
			// A failing step is the last; a crash is only a look at the files.
			wantSeen := []int{0, 1, 2, 3}[:len(r.steps)]
			if err != nil {
				wantSeen = wantSeen[:i+1]
			}
			if !slices.Equal(seen, wantSeen) {
				t.Errorf("Put went through steps %v, want %v", seen, wantSeen)
			}
			return dir, err
		}
		if i < len(r.steps) {
			t.Run("Fail"+name, func(t *testing.T) {
				dir, err := run(t, func(string) error { return syscall.EIO })
				if !errors.Is(err, syscall.EIO) {
					t.Fatalf("Put failing at %s = %v, want EIO", name, err)
				}
				if slices.Contains(r.syncs, name) {
					// Its entries may be lost: a later fsync must not
					// count them durable.
					if _, err := r.open(t, dir, nil).Stat(context.Background(), replaceKey); !errors.Is(err, storage.ErrNotFound) {
						t.Errorf("after a failed fsync at %s: Stat = %v, want ErrNotFound", name, err)
					}
					return
				}
				checkReplaced(t, r.open(t, dir, nil), dir, want)
			})
		}
		t.Run("Crash"+name, func(t *testing.T) {
			var snap string
			dir, err := run(t, func(dir string) error {
				snap = snapshot(t, dir)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if i == len(r.steps) {
				snap = snapshot(t, dir)
			}
			checkReplaced(t, r.open(t, snap, nil), snap, want)
		})
	}
}

// checkReplaced checks that st (over dir) holds replaceKey with content
// want and the metadata that belongs to it, with Stat and List agreeing,
// also after a List that finds every temp file stale; then that a Put and
// a List leave only the object's two files.
func checkReplaced(t *testing.T, st storage.Store, dir, want string) {
	t.Helper()
	ctx := context.Background()
	wantV := map[string]string{"old": "old", "new data": "new"}[want]
	check := func(when string) {
		t.Helper()
		rc, obj, err := st.Open(ctx, replaceKey)
		if err != nil {
			t.Fatalf("%s: no object: %v", when, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want || obj.Metadata["v"] != wantV || obj.Size != int64(len(want)) {
			t.Errorf("%s: Open = %q (size %d) with %v, want %q with v=%s", when, b, obj.Size, obj.Metadata, want, wantV)
		}
		o, err := st.Stat(ctx, replaceKey)
		if err != nil || o.Size != obj.Size || o.Metadata["v"] != obj.Metadata["v"] || !o.Changed.Equal(obj.Changed) {
			t.Errorf("%s: Stat = %+v, %v; Open said %+v", when, o, err, obj)
		}
		var listed []storage.Object
		if err := st.List(ctx, "site/", func(o storage.Object) error { listed = append(listed, o); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(listed) != 1 || listed[0].Key != replaceKey || listed[0].Size != obj.Size {
			t.Errorf("%s: List = %+v, want %s of %d bytes", when, listed, replaceKey, obj.Size)
		}
	}
	check("after the replace")
	objDir := filepath.Join(dir, filepath.Dir(replaceKey))
	ageTemps(t, st, objDir)
	check("after a List of stale temp files")
	if err := st.Put(ctx, replaceKey, strings.NewReader("next"), storage.Metadata{"v": "next"}); err != nil {
		t.Fatal(err)
	}
	ageTemps(t, st, objDir)
	names := slices.DeleteFunc(testio.DirNames(t, objDir), func(n string) bool { return n == storage.CreateLockName })
	if base := filepath.Base(replaceKey); !slices.Equal(names, []string{base, base + ".metadata"}) {
		t.Errorf("after the next Put and List the directory holds %v, want the object's two files", names)
	}
}

// ageTemps sets the modification time of the temp files in dir (hidden:
// their names start with a dot) back past StaleTempAge, then Lists st,
// which removes the stale ones.
func ageTemps(t *testing.T, st storage.Store, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-storage.StaleTempAge - time.Hour)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			if err := os.Chtimes(filepath.Join(dir, e.Name()), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.List(context.Background(), "", func(storage.Object) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// snapshot returns a new directory holding hard links to every file
// under root: the files a crash at this moment leaves (Put fsynced them).
func snapshot(t *testing.T, root string) string {
	t.Helper()
	snap := t.TempDir()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(snap, rel), 0o755)
		}
		return os.Link(p, filepath.Join(snap, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// A Put of the same key that completes between Open's read of the sidecar
// and its open of the file does not pair the new bytes with the old
// metadata: Open and Stat read the key again.
func TestLocal_Open_RacingPut(t *testing.T) {
	for _, op := range []string{"Open", "Stat"} {
		t.Run(op, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			put := func(s storage.Store, data, v string) {
				t.Helper()
				if err := s.Put(ctx, replaceKey, strings.NewReader(data), storage.Metadata{"v": v}); err != nil {
					t.Fatalf("Put: %v", err)
				}
			}
			put(storage.NewLocal(dir), "old bytes", "old")
			l := storage.NewLocal(dir)
			raced := 0
			storage.SetOpenHook(l, func() {
				if raced++; raced == 1 {
					put(storage.NewLocal(dir), "the new, longer bytes", "new")
				}
			})
			var data []byte
			var o storage.Object
			var err error
			if op == "Open" {
				var rc io.ReadCloser
				if rc, o, err = l.Open(ctx, replaceKey); err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer rc.Close()
				if data, err = io.ReadAll(rc); err != nil {
					t.Fatal(err)
				}
			} else if o, err = l.Stat(ctx, replaceKey); err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if got, want := o.Metadata["v"], "new"; got != want {
				t.Errorf("%s: metadata v = %q with %d bytes %q, want %q", op, got, o.Size, data, want)
			}
			if got, want := o.Size, int64(len("the new, longer bytes")); got != want {
				t.Errorf("%s: size %d, want %d", op, got, want)
			}
			if op == "Open" && string(data) != "the new, longer bytes" {
				t.Errorf("Open read %q, want the new bytes", data)
			}
		})
	}
}

// Open gives up with an error, not a mismatched pair, when a Put replaces
// the key every time it is read.
func TestLocal_Open_ErrReplacedWhileRead(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if err := storage.NewLocal(dir).Put(ctx, replaceKey, strings.NewReader("0"), storage.Metadata{"v": "0"}); err != nil {
		t.Fatal(err)
	}
	l := storage.NewLocal(dir)
	n := 0
	storage.SetOpenHook(l, func() {
		n++
		v := strings.Repeat("x", n)
		if err := storage.NewLocal(dir).Put(ctx, replaceKey, strings.NewReader(v), storage.Metadata{"v": v}); err != nil {
			t.Fatal(err)
		}
	})
	rc, o, err := l.Open(ctx, replaceKey)
	if err == nil {
		rc.Close()
		t.Fatalf("Open returned %d bytes with metadata %v, want an error", o.Size, o.Metadata)
	}
	if !strings.Contains(err.Error(), "replaced while read") {
		t.Errorf("Open: %v, want replaced while read", err)
	}
}

// Two Puts of one key with as many bytes, whose files are modified within
// the same second, would want the same sidecar temp name (replaceName):
// the second Put must not write its sidecar where readers cannot find it.
// Put A is stopped before its sidecar's rename while Put B replaces the
// file and fails at its own sidecar's rename; then A goes on (Fail), or
// the store's files are taken as they are (Crash). Either way the key
// holds B's file, which B's sidecar temp must complete: a reader must not
// pair B's bytes with A's metadata or the old ones.
func TestLocal_PutReplaceSameSecond(t *testing.T) {
	testPutReplaceSameSecond(t, localReplacer)
}

// The same for the SFTP store on OpenSSH's server.
func TestSFTP_PutReplaceSameSecond(t *testing.T) {
	testPutReplaceSameSecond(t, sftpReplacer(storetest.SFTP(t)))
}

func testPutReplaceSameSecond(t *testing.T, r replacer) {
	sidecarStep := slices.Index(r.steps, "RenameSidecar")
	for _, crash := range []bool{false, true} {
		name := "Fail"
		if crash {
			name = "Crash"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			// Both Puts must run within one second, which the tries
			// start at the beginning of.
			for try := 0; ; try++ {
				time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
				began := time.Now().Unix()
				dir := t.TempDir()
				if err := r.open(t, dir, nil).Put(ctx, replaceKey, strings.NewReader("old"), storage.Metadata{"v": "old"}); err != nil {
					t.Fatal(err)
				}
				var snap string
				var errB error
				started := false
				doneB := make(chan struct{})
				a := r.open(t, dir, func(i int) error {
					if i != sidecarStep || started {
						return nil
					}
					started = true
					b := r.open(t, dir, func(j int) error {
						if j == sidecarStep {
							return syscall.EIO
						}
						return nil
					})
					putB := func() {
						defer close(doneB)
						errB = b.Put(ctx, replaceKey, strings.NewReader("new data"), storage.Metadata{"v": "new"})
						snap = snapshot(t, dir)
					}
					if !r.serial {
						putB()
						return nil
					}
					// B cannot rename while A holds the lock: it writes
					// its temp files, its sidecar's beside A's, and
					// waits; A goes on once B waits.
					waiting := make(chan struct{})
					storage.SetLockWait(b.(*storage.Local), func() { close(waiting) })
					go putB()
					select {
					case <-waiting:
					case <-doneB:
					case <-time.After(time.Minute):
						t.Error("Put B neither finished nor waited for A's lock")
					}
					return nil
				})
				errA := a.Put(ctx, replaceKey, strings.NewReader("abc data"), storage.Metadata{"v": "a"})
				<-doneB
				if errA != nil || !errors.Is(errB, syscall.EIO) {
					t.Fatalf("Put A = %v, Put B = %v, want nil and EIO", errA, errB)
				}
				if time.Now().Unix() != began {
					if try < 3 {
						continue
					}
					t.Fatal("the Puts never ran within one second")
				}
				if crash {
					dir = snap
				}
				checkReplaced(t, r.open(t, dir, nil), dir, "new data")
				return
			}
		})
	}
}
