package restore

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// tarEntry is one member of a test tar.
type tarEntry struct {
	name, body, link string
	typ              byte
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o700
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractor_OK(t *testing.T) {
	root := t.TempDir()
	pg, spc := filepath.Join(root, "pg"), filepath.Join(root, "spc")
	ex := newExtractor(pg, map[string]string{"ts1": spc})
	data := makeTar(t,
		tarEntry{name: ".pghoard_tar_metadata.json", body: "{}"},
		tarEntry{name: "pgdata", typ: tar.TypeDir},
		tarEntry{name: "pgdata/base", typ: tar.TypeDir},
		tarEntry{name: "pgdata/base/1/1259", body: "heap"},
		tarEntry{name: "pgdata/global/pg_control", body: "not from a chunk"},
		tarEntry{name: "pgdata/backup_label", body: "not from a chunk"},
		tarEntry{name: "pgdata/pg_wal", typ: tar.TypeSymlink, link: "/elsewhere/wal"},
		tarEntry{name: "pgdata/conf.d", typ: tar.TypeSymlink, link: "/etc/postgresql"},
		tarEntry{name: "tablespaces/ts1", typ: tar.TypeDir},
		tarEntry{name: "tablespaces/ts1/PG_15_1/5/16384", body: "spc"},
	)
	if err := ex.extract(bytes.NewReader(data), make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if err := ex.finishLinks(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		filepath.Join(pg, "base/1/1259"):      "heap",
		filepath.Join(spc, "PG_15_1/5/16384"): "spc",
	} {
		got, err := os.ReadFile(name)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"global/pg_control", "backup_label", "pg_wal", ".pghoard_tar_metadata.json"} {
		if _, err := os.Lstat(filepath.Join(pg, name)); err == nil {
			t.Errorf("%s was extracted from a chunk", name)
		}
	}
	if got, err := os.Readlink(filepath.Join(pg, "conf.d")); err != nil || got != "/etc/postgresql" {
		t.Errorf("conf.d link = %q, %v", got, err)
	}
}

func TestExtractor_ErrUnsafePath(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
	}{
		{"Absolute", []tarEntry{{name: "/etc/passwd", body: "x"}}},
		{"DotDot", []tarEntry{{name: "pgdata/../../escape", body: "x"}}},
		{"DotDotTablespace", []tarEntry{{name: "tablespaces/ts1/../../escape", body: "x"}}},
		{"OutsidePGData", []tarEntry{{name: "etc/passwd", body: "x"}}},
		{"UnknownTablespace", []tarEntry{{name: "tablespaces/other/x", body: "x"}}},
		{"ThroughSymlink", []tarEntry{
			{name: "pgdata/evil", typ: tar.TypeSymlink, link: "/tmp"},
			{name: "pgdata/evil/x", body: "x"},
		}},
		{"FileOverSymlink", []tarEntry{
			{name: "pgdata/evil", typ: tar.TypeSymlink, link: "/tmp"},
			{name: "pgdata/evil", typ: tar.TypeDir},
		}},
		{"HardLinkOutside", []tarEntry{{name: "pgdata/x", typ: tar.TypeLink, link: "/etc/passwd"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ex := newExtractor(filepath.Join(root, "pg"), map[string]string{"ts1": filepath.Join(root, "spc")})
			err := ex.extract(bytes.NewReader(makeTar(t, tt.entries...)), make([]byte, 4096))
			if err == nil {
				err = ex.finishLinks()
			}
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("extract = %v, want ErrUnsafePath", err)
			}
			if _, err := os.Stat(filepath.Join(root, "escape")); err == nil {
				t.Error("a member escaped the target")
			}
		})
	}
}

// TestExtractor_SymlinkAfterWrite: a link recorded after another chunk
// wrote under its path is refused when links are made.
func TestExtractor_SymlinkAfterWrite(t *testing.T) {
	root := t.TempDir()
	ex := newExtractor(filepath.Join(root, "pg"), nil)
	buf := make([]byte, 4096)
	if err := ex.extract(bytes.NewReader(makeTar(t, tarEntry{name: "pgdata/d/x", body: "x"})), buf); err != nil {
		t.Fatal(err)
	}
	if err := ex.extract(bytes.NewReader(makeTar(t, tarEntry{name: "pgdata/d", typ: tar.TypeSymlink, link: "/tmp"})), buf); err != nil {
		t.Fatal(err)
	}
	if err := ex.finishLinks(); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("finishLinks = %v, want ErrUnsafePath", err)
	}
}
