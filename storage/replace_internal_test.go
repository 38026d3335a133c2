package storage

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A sidecar temp planted under an object's replace name (by a storage
// writer, who could rewrite the sidecar itself) is read only when it
// describes the file, not through a link, and then its change time counts:
// unencrypted_objects_before refuses what it re-describes after the cutoff.
func TestLocal_OpenPlantedReplaceTemp(t *testing.T) {
	ctx := context.Background()
	l := NewLocal(t.TempDir())
	const key = "site/xlog/000000010000000000000001.partial"
	if err := l.Put(ctx, key, strings.NewReader("data"), Metadata{"v": "put"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(l.root, key)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(p), replaceName(filepath.Base(p), fi.Size(), fi.ModTime()))
	plant := func(sum []byte) {
		t.Helper()
		b, err := encodeSidecar(Metadata{"v": "planted"}, sum, fi.Size())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tmp+"-real", b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	open := func() Object {
		t.Helper()
		rc, obj, err := l.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		return obj
	}

	plant(make([]byte, 32))
	if err := os.Rename(tmp+"-real", tmp); err != nil {
		t.Fatal(err)
	}
	if obj := open(); obj.Metadata["v"] != "put" {
		t.Errorf("a planted sidecar temp with another hash was read: %v", obj.Metadata)
	}

	sum := sha256.Sum256([]byte("data"))
	plant(sum[:])
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(tmp)+"-real", tmp); err != nil {
		t.Fatal(err)
	}
	if obj := open(); obj.Metadata["v"] != "put" {
		t.Errorf("a planted sidecar temp was read through a link: %v", obj.Metadata)
	}

	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp+"-real", tmp); err != nil {
		t.Fatal(err)
	}
	tfi, err := os.Stat(tmp)
	if err != nil {
		t.Fatal(err)
	}
	obj := open()
	if obj.Metadata["v"] != "planted" {
		t.Errorf("a sidecar temp that describes the file was not read: %v", obj.Metadata)
	}
	if obj.Changed.Before(changeTime(tfi)) {
		t.Errorf("Open's change time %v is before the change time %v of the sidecar temp it read", obj.Changed, changeTime(tfi))
	}
}
