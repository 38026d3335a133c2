package daemon

import (
	"context"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// walSegment writes a 1 MiB segment file called name (timeline 1, segment
// 5) into dir, with a PostgreSQL 15 page header, and returns its path.
func walSegment(t *testing.T, dir, name string) string {
	t.Helper()
	b := make([]byte, 1<<20)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110) // PostgreSQL 15's XLOG_PAGE_MAGIC
	le.PutUint16(b[2:], 0x0002) // XLP_LONG_HEADER
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], 5<<20)
	le.PutUint64(b[24:], 7123456789012345678)
	le.PutUint32(b[32:], 1<<20)
	le.PutUint32(b[36:], 8192)
	for i := 8192; i < len(b); i += 8192 {
		b[i] = 1
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Once a complete segment is stored, the .partial copies uploaded while
// it was being received are deleted.
func TestUploader_UploadDeletesPartial(t *testing.T) {
	ctx := context.Background()
	arch := &archive.Archive{Store: storage.NewLocal(t.TempDir()), Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "test"}, Site: "test"}
	u := &uploader{arch: arch, log: zerolog.Nop(), warn: func(bool) {}, failed: func() {}, uploaded: func() {}}
	name := "000000010000000000000005"
	dir := t.TempDir()
	if err := u.UploadPartial(ctx, walSegment(t, dir, name+".partial"), 0, false); err != nil {
		t.Fatal(err)
	}
	partialKey := arch.Layout.WALKey(name + ".partial")
	if _, err := arch.Store.Stat(ctx, partialKey); err != nil {
		t.Fatalf("partial not stored: %v", err)
	}
	if err := u.Upload(ctx, walSegment(t, dir, name)); err != nil {
		t.Fatal(err)
	}
	if _, err := arch.Store.Stat(ctx, arch.Layout.WALKey(name)); err != nil {
		t.Errorf("segment not stored: %v", err)
	}
	if _, err := arch.Store.Stat(ctx, partialKey); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%s still stored after the complete segment (err %v)", partialKey, err)
	}
}

// The server's full version is asked once and recorded as pg-version; a
// failed question is not repeated at every upload, and the page header's
// major is recorded meanwhile.
func TestUploader_ServerVersion(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ask  func(context.Context) (int, error)
		want string
	}{
		{"OK", func(context.Context) (int, error) { return 150018, nil }, "150018"},
		{"ErrUnreachable", func(context.Context) (int, error) { return 0, errors.New("connection refused") }, "150000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arch := &archive.Archive{Store: storage.NewLocal(t.TempDir()), Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "test"}, Site: "test"}
			asked := 0
			u := &uploader{arch: arch, log: zerolog.Nop(), warn: func(bool) {}, failed: func() {}, uploaded: func() {},
				serverVersion: func(ctx context.Context) (int, error) { asked++; return tc.ask(ctx) }}
			dir := t.TempDir()
			name := "000000010000000000000005"
			if err := u.UploadPartial(ctx, walSegment(t, dir, name+".partial"), 0, false); err != nil {
				t.Fatal(err)
			}
			if err := u.Upload(ctx, walSegment(t, dir, name)); err != nil {
				t.Fatal(err)
			}
			obj, err := arch.Store.Stat(ctx, arch.Layout.WALKey(name))
			if err != nil {
				t.Fatal(err)
			}
			if got := obj.Metadata[archive.MetaPGVersion]; got != tc.want {
				t.Errorf("pg-version = %q, want %q", got, tc.want)
			}
			if asked != 1 {
				t.Errorf("server asked %d times for 2 uploads, want 1", asked)
			}
		})
	}
}

// An ended timeline's .partial that the archive refuses for good (a copy
// stored under its name claims more WAL, and this daemon holds only the
// public key) is retried by walstream after the files queued behind it,
// whose uploads succeed: the upload_retries_warning alert is raised all
// the same once it was refused past the limit, stays raised while the
// other files are stored, and clears once it is stored.
func TestUploader_RefusedPartialKeepsAlert(t *testing.T) {
	ctx := context.Background()
	key, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	store := storage.NewMem()
	t.Cleanup(func() { store.Close() })
	withKey := &archive.Archive{Store: store, Layout: archive.Layout{Prefix: "test"}, Site: "test",
		Codec: &archive.Codec{KeyID: "k1", PublicKey: &key.PublicKey, PrivateKeys: map[string]*rsa.PrivateKey{"k1": key}}}
	name := "000000010000000000000005"
	dir := t.TempDir()
	// The copy stored first holds the whole segment's WAL.
	if _, err := withKey.PutPartialWAL(ctx, walSegment(t, t.TempDir(), name+".partial"), archive.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	// This daemon's final copy holds less, zero-padded.
	p := walSegment(t, dir, name+".partial")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	clear(b[100000:])
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	publicOnly := &archive.Archive{Store: store, Layout: withKey.Layout, Site: "test",
		Codec: &archive.Codec{KeyID: "k1", PublicKey: &key.PublicKey, PublicKeys: map[string]*rsa.PublicKey{"k1": &key.PublicKey}}}
	var alert []bool
	u := &uploader{arch: publicOnly, limit: 3, log: zerolog.Nop(), warn: func(on bool) { alert = append(alert, on) }, failed: func() {}, uploaded: func() {}}
	next := 6
	for i := 0; i < 5; i++ {
		if err := u.UploadPartial(ctx, p, 0, true); !errors.Is(err, archive.ErrUnverifiedPartial) {
			t.Fatalf("refusal %d: %v, want ErrUnverifiedPartial", i+1, err)
		}
		// The next timeline's segment, stored meanwhile.
		seg := fmt.Sprintf("%08X%08X%08X", 2, 0, next)
		sp := walSegment(t, dir, seg)
		b, err := os.ReadFile(sp)
		if err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint32(b[4:], 2)
		binary.LittleEndian.PutUint64(b[8:], uint64(next)<<20)
		if err := os.WriteFile(sp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		next++
		if err := u.Upload(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	// The first success clears a file an earlier run may have left.
	if len(alert) != 2 || alert[0] || !alert[1] {
		t.Fatalf("alert changes %v after 5 refusals of %s between stored segments, want [false true]", alert, name)
	}
	if err := store.Delete(ctx, withKey.Layout.WALKey(name+".partial")); err != nil {
		t.Fatal(err)
	}
	if err := u.UploadPartial(ctx, p, 0, true); err != nil {
		t.Fatal(err)
	}
	if len(alert) != 3 || alert[2] {
		t.Fatalf("alert changes %v once %s is stored, want [false true false]", alert, name)
	}
}
