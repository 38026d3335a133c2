package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// realDeltaIn copies the real PGHoard delta fixture into a mem store,
// letting edit change each object (its key, bytes and metadata) or drop
// it (return nil data).
func realDeltaIn(t *testing.T, edit func(key string, data []byte, md storage.Metadata) ([]byte, storage.Metadata)) *archive.Archive {
	t.Helper()
	return realPGHoardIn(t, "delta", edit)
}

// realPGHoardIn copies the archive a real PGHoard made in mode into a mem
// store, letting edit change each object (its key, bytes and metadata) or
// drop it (return nil data).
func realPGHoardIn(t *testing.T, mode string, edit func(key string, data []byte, md storage.Metadata) ([]byte, storage.Metadata)) *archive.Archive {
	t.Helper()
	ctx := context.Background()
	a, _ := realPGHoard(t, mode)
	mem := storage.NewMem()
	t.Cleanup(func() { mem.Close() })
	err := a.Store.List(ctx, "site/", func(o storage.Object) error {
		data, info := storetest.Read(t, a.Store, o.Key)
		md := info.Metadata
		if edit != nil {
			if data, md = edit(o.Key, data, md); data == nil {
				return nil
			}
		}
		return mem.Put(ctx, o.Key, bytes.NewReader(data), md)
	})
	if err != nil {
		t.Fatal(err)
	}
	a.Store = mem
	return a
}

// TestRun_PGHoardDeltaErrTampered: a delta object of the real PGHoard
// delta fixture swapped for another (validly encrypted, but not the bytes
// its name is the digest of), altered, or missing fails the restore with
// an error naming the object, and leaves no pg_control.
func TestRun_PGHoardDeltaErrTampered(t *testing.T) {
	a, _ := realPGHoard(t, "delta")
	victim, other := archivetest.SameSizeDeltaObjects(t, a)
	otherData, info := storetest.Read(t, realDeltaIn(t, nil).Store, other)
	otherMD := info.Metadata
	cases := []struct {
		name string
		edit func(key string, data []byte, md storage.Metadata) ([]byte, storage.Metadata)
		want error // besides ErrIncomplete; nil: any
	}{
		{"swapped", func(key string, data []byte, md storage.Metadata) ([]byte, storage.Metadata) {
			if key == victim {
				return otherData, otherMD
			}
			return data, md
		}, ErrDeltaDigest},
		{"altered", func(key string, data []byte, md storage.Metadata) ([]byte, storage.Metadata) {
			if key == victim {
				data[len(data)/2] ^= 0x40
			}
			return data, md
		}, nil},
		{"missing", func(key string, data []byte, md storage.Metadata) ([]byte, storage.Metadata) {
			if key == victim {
				return nil, nil
			}
			return data, md
		}, storage.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := realDeltaIn(t, tc.edit)
			target := filepath.Join(t.TempDir(), "data")
			_, err := Run(context.Background(), Options{Archive: a, TargetDir: target, RestoreCommand: "false", Logger: zerolog.Nop()})
			if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), victim) {
				t.Fatalf("Run = %v, want ErrIncomplete naming %s", err, victim)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Run = %v, want %v", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pg_control after a failed restore: %v", err)
			}
		})
	}
}

// TestCheckMember_RelativeNamesAbsolute: a member named by an absolute path
// in a single-tar backup or a delta bundle, whose names are relative to
// the data directory, is refused by name; it is not taken as relative to
// the data directory once pgdata/ is put before it.
func TestCheckMember_RelativeNamesAbsolute(t *testing.T) {
	for _, name := range []string{"/etc/cron.d/x", "//etc/x", "/"} {
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 1}
		bundle := func(h *tar.Header) error { return CheckBundleMember(&archive.Manifest{}, h) }
		for what, check := range map[string]func(*tar.Header) error{"single": CheckSingleMember, "bundle": bundle} {
			if err := check(h); !errors.Is(err, ErrUnsafeMember) || !strings.Contains(err.Error(), name) {
				t.Errorf("%s member %q: %v, want ErrUnsafeMember naming it", what, name, err)
			}
		}
	}
}

// TestCheckBundleMember_Tablespaces: a delta backup names a tablespace's
// files pg_tblspc/<oid>/PG_<version>_<catalog>/...; restore takes such a
// name into the tablespace's directory only when the oid is one of the
// backup's tablespaces and the file is under its version directory, and
// refuses anything else under pg_tblspc/.
func TestCheckBundleMember_Tablespaces(t *testing.T) {
	m := &archive.Manifest{Tablespaces: map[string]archive.ManifestTablespace{"extra": {Path: "/srv/extra", OID: 16385}}}
	spcs := newDeltaTablespaces(m)
	for name, want := range map[string]memberPlan{
		"pg_tblspc/16385/PG_15_202209061/5/16386": {kind: memberFile, spc: "extra", rel: "PG_15_202209061/5/16386"},
		"base/5/16386": {kind: memberFile, rel: "base/5/16386"},
	} {
		p, err := planBundle(&tar.Header{Name: name, Typeflag: tar.TypeReg}, spcs)
		if err != nil || p != want {
			t.Errorf("%s: %+v, %v; want %+v", name, p, err, want)
		}
	}
	for _, name := range []string{
		"pg_tblspc/16399/PG_15_202209061/5/16386", // not the backup's
		"pg_tblspc/16385/other/x",                 // outside the version directory
		"pg_tblspc/16385/PG_15_202209061/../../x", // ..
		"pg_tblspc/16385",                         // the link itself, as a file
		"pg_tblspc/x",
	} {
		if err := CheckBundleMember(m, &tar.Header{Name: name, Typeflag: tar.TypeReg}); !errors.Is(err, ErrUnsafeMember) {
			t.Errorf("%s: %v, want ErrUnsafeMember", name, err)
		}
	}
}
