package storage_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// readOps are the local store's reads of key, each returning what it read
// of the object (its bytes, or its size for Stat).
func readOps(st *storage.Local, key string) []struct {
	name string
	do   func(ctx context.Context) (string, error)
} {
	readAll := func(rc io.ReadCloser, err error) (string, error) {
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	return []struct {
		name string
		do   func(ctx context.Context) (string, error)
	}{
		{"Open", func(ctx context.Context) (string, error) {
			rc, _, err := st.Open(ctx, key)
			return readAll(rc, err)
		}},
		{"OpenRange", func(ctx context.Context) (string, error) { return readAll(st.OpenRange(ctx, key, 0, -1)) }},
		{"Stat", func(ctx context.Context) (string, error) {
			o, err := st.Stat(ctx, key)
			return strings.Repeat("x", int(o.Size)), err
		}},
		{"Sync", func(ctx context.Context) (string, error) { return "", st.Sync(ctx, key) }},
	}
}

// listKeys lists prefix in st and returns the keys.
func listKeys(ctx context.Context, st *storage.Local, prefix string) ([]string, error) {
	var keys []string
	err := st.List(ctx, prefix, func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	})
	return keys, err
}

// plantOutside writes, in a new directory outside the store, a file that
// looks like an object (seg and its sidecar) and returns the directory.
func plantOutside(t *testing.T, seg string) string {
	t.Helper()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, seg), []byte("secret of the hoard user"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, seg+".metadata"), []byte(`{"compression-algorithm": "none"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return outside
}

// TestLocal_ErrReadLinkedDirectory: someone who can write the storage
// directory replaces <site>/xlog, or <site> itself, with a link to a
// directory outside the store that holds a file named like an object and
// one like its sidecar. No read of the local store returns those bytes:
// each fails with a permanent error naming the link, and List refuses the
// listing rather than report what lies outside as objects (retention would
// then delete by those keys).
func TestLocal_ErrReadLinkedDirectory(t *testing.T) {
	const seg = "000000010000000000000003"
	for _, link := range []string{"site/xlog", "site"} {
		t.Run(strings.ReplaceAll(link, "/", "_"), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			outside := plantOutside(t, seg)
			if link == "site" {
				if err := os.Mkdir(filepath.Join(outside, "xlog"), 0o755); err != nil {
					t.Fatal(err)
				}
				for _, n := range []string{seg, seg + ".metadata"} {
					if err := os.Rename(filepath.Join(outside, n), filepath.Join(outside, "xlog", n)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, filepath.FromSlash(link))), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(dir, filepath.FromSlash(link))); err != nil {
				t.Fatal(err)
			}
			st := storage.NewLocal(dir)
			want := `"` + link + `" is a symbolic link out of the storage directory`
			for _, op := range readOps(st, "site/xlog/"+seg) {
				t.Run(op.name, func(t *testing.T) {
					got, err := op.do(ctx)
					if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), want) {
						t.Errorf("%s through a link out of the store = %q, %v; want a permanent error saying %s", op.name, got, err, want)
					}
				})
			}
			keys, err := listKeys(ctx, st, "site/xlog/")
			if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), want) {
				t.Errorf("List through a link out of the store = %v, %v; want a permanent error saying %s", keys, err, want)
			}
		})
	}
}

// TestLocal_ErrReadLinkedFile: an object's file, or its sidecar, is a link
// to a file outside the store (/etc/shadow, a file of the hoard user).
// Reads refuse the object, naming the link, and List follows neither; a
// link out lower down (a directory in <site>/xlog) is not followed either.
func TestLocal_ErrReadLinkedFile(t *testing.T) {
	const seg = "000000010000000000000003"
	ctx := context.Background()
	for _, linked := range []string{seg, seg + ".metadata"} {
		t.Run(linked, func(t *testing.T) {
			dir := t.TempDir()
			outside := plantOutside(t, seg)
			st := storage.NewLocal(dir)
			if err := st.Put(ctx, "site/xlog/"+seg, strings.NewReader("wal"), nil); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "site", "xlog", linked)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(outside, linked), p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(dir, "site", "xlog", "sub")); err != nil {
				t.Fatal(err)
			}
			for _, op := range readOps(st, "site/xlog/"+seg) {
				t.Run(op.name, func(t *testing.T) {
					got, err := op.do(ctx)
					if err == nil || !strings.Contains(err.Error(), linked+" is a symbolic link") {
						t.Errorf("%s of an object whose %s links out = %q, %v; want an error naming the link", op.name, linked, got, err)
					}
				})
			}
			// An object file that is a link is no object; one whose
			// sidecar is a link is listed as what the store holds (the
			// sidecar is not followed), and reading it fails as above.
			var objs []storage.Object
			err := st.List(ctx, "site/xlog/", func(o storage.Object) error { objs = append(objs, o); return nil })
			switch {
			case err != nil:
				t.Errorf("List: %v", err)
			case linked == seg && len(objs) != 0:
				t.Errorf("List = %v, want no object", objs)
			case linked != seg && (len(objs) != 1 || objs[0].Size != int64(len("wal"))):
				t.Errorf("List = %v, want the object in the store, of 3 bytes", objs)
			}
			// The planted files are still there, and untouched.
			if b, err := os.ReadFile(filepath.Join(outside, seg)); err != nil || string(b) != "secret of the hoard user" {
				t.Errorf("the file outside: %q, %v", b, err)
			}
		})
	}
}

// TestLocal_ListLinkIntoProc: a link planted in <site>/basebackup_chunk to
// / makes the prefix of a backup named "proc" lead into /proc. List refuses
// at once instead of walking it (or, through a loop, the whole file system).
func TestLocal_ListLinkIntoProc(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(dir, "site", "basebackup_chunk")); err != nil {
		t.Fatal(err)
	}
	st := storage.NewLocal(dir)
	done := make(chan error, 1)
	go func() {
		_, err := listKeys(ctx, st, "site/basebackup_chunk/proc/")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), `"site/basebackup_chunk" is a symbolic link out of the storage directory`) {
			t.Errorf("List into /proc = %v, want a permanent error naming the link", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("List into /proc did not return in 2 minutes")
	}
}

// TestLocal_ReadLinksInside: links that stay inside the storage directory
// are followed (an operator may have moved a site's directory within it),
// and the storage directory itself may be a link: only what is below it is
// checked.
func TestLocal_ReadLinksInside(t *testing.T) {
	ctx := context.Background()
	real := t.TempDir()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Symlink(real, dir); err != nil {
		t.Fatal(err)
	}
	st := storage.NewLocal(dir)
	const seg = "000000010000000000000003"
	if err := st.Put(ctx, "old/xlog/"+seg, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("old", filepath.Join(real, "site")); err != nil {
		t.Fatal(err)
	}
	for _, op := range readOps(st, "site/xlog/"+seg) {
		t.Run(op.name, func(t *testing.T) {
			if got, err := op.do(ctx); err != nil || (op.name != "Sync" && got != "xxx" && got != "wal") {
				t.Errorf("%s through a link inside the store = %q, %v; want the object", op.name, got, err)
			}
		})
	}
	if keys, err := listKeys(ctx, st, "site/xlog/"); err != nil || len(keys) != 1 || keys[0] != "site/xlog/"+seg {
		t.Errorf("List through a link inside the store = %v, %v", keys, err)
	}
	// A listing of the whole store does not enter the linked site
	// directory, and says that one of the site's prefix does.
	var why string
	st.OnSkip = func(key, w string) { why += key + ": " + w }
	if keys, err := listKeys(ctx, st, ""); err != nil || !slices.Equal(keys, []string{"old/xlog/" + seg}) {
		t.Errorf("List of the store = %v, %v; want the object under its directory's own name only", keys, err)
	}
	if !strings.HasPrefix(why, "site: a symbolic link to a directory inside") || !strings.Contains(why, `a listing of the prefix "site/"`) {
		t.Errorf("OnSkip heard %q, want the linked site directory, and that a listing of its prefix follows it", why)
	}
	st.OnSkip = nil
	if err := st.Delete(ctx, "site/xlog/"+seg); err != nil {
		t.Fatal(err)
	}
	if keys, err := listKeys(ctx, st, "old/xlog/"); err != nil || len(keys) != 0 {
		t.Errorf("List after Delete = %v, %v; want nothing", keys, err)
	}
}

// TestLocal_ListSkippedLinks: List follows no link below the listed
// directory, and says so: OnSkip hears of each link it leaves out under
// the prefix (an object file or a directory linked out of the store, a
// directory linked to another place in it, an object file linked to
// another, a link to nothing), with what is left out, why, and what the
// operator does, so that an operator learns that something in the store
// is ignored. Links outside the prefix are not its business, nor is a
// sidecar that is a link: it is not followed, and its object is listed,
// which reading refuses (TestLocal_ErrReadLinkedFile).
func TestLocal_ListSkippedLinks(t *testing.T) {
	const seg, stored = "000000010000000000000003", "site/xlog/000000010000000000000001"
	ctx := context.Background()
	dir := t.TempDir()
	outside := plantOutside(t, seg)
	st := storage.NewLocal(dir)
	if err := st.Put(ctx, stored, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	xlog := filepath.Join(dir, "site", "xlog")
	for link, to := range map[string]string{
		seg:               filepath.Join(outside, seg),
		seg + ".metadata": filepath.Join(outside, seg+".metadata"),
		"sub":             outside,
		"inside":          "..",
		"copy":            path.Base(stored),
		"gone":            "nothing",
	} {
		if err := os.Symlink(to, filepath.Join(xlog, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, "site", "other")); err != nil {
		t.Fatal(err)
	}
	skipped := map[string]string{}
	st.OnSkip = func(key, why string) { skipped[key] = why }
	keys, err := listKeys(ctx, st, "site/xlog/")
	if err != nil || !slices.Equal(keys, []string{stored}) {
		t.Fatalf("List = %v, %v; want only the object stored", keys, err)
	}
	// What it is and what is left out, then what to do.
	want := map[string][]string{
		"site/xlog/" + seg: {"a symbolic link out of the storage directory", "nothing under this name is listed", "Move what it names back", "remove it"},
		"site/xlog/sub":    {"a symbolic link out of the storage directory", "nothing under this name is listed", "Move what it names back", "remove it"},
		"site/xlog/inside": {"a symbolic link to a directory inside the storage directory", "leaves out every object under this name",
			`a listing of the prefix "site/xlog/inside/"`, "Move the directory it names to this name"},
		"site/xlog/copy": {"a symbolic link where an object's file belongs", "is not listed", "Replace it with the file it names"},
		"site/xlog/gone": {"a symbolic link to nothing", "remove it"},
	}
	if len(skipped) != len(want) {
		t.Errorf("OnSkip heard %q, want %d links", skipped, len(want))
	}
	for key, phrases := range want {
		why, ok := skipped[key]
		if !ok {
			t.Errorf("OnSkip did not hear of %s", key)
			continue
		}
		if !strings.HasPrefix(why, phrases[0]) {
			t.Errorf("OnSkip(%s, %q): want it to start with %q", key, why, phrases[0])
		}
		for _, p := range phrases[1:] {
			if !strings.Contains(why, p) {
				t.Errorf("OnSkip(%s, %q): want it to say %q", key, why, p)
			}
		}
	}
}
