package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/storage"
)

// controlTar builds a control tar: the manifest m, a backup_label
// (CheckControl compares it with metadata that records no start), then a
// member name of size zero bytes written from a stream (so that the test
// holds none of them).
func controlTar(t testing.TB, w io.Writer, m *Manifest, name string, size int64) {
	t.Helper()
	js, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(w)
	label := testLabel(t, "000000010000000000000002")
	for _, f := range []struct {
		name string
		data []byte
	}{{ManifestName, js}, {ControlBackupLabel, label}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: size}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeros{}, size); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// putBomb stores, zstd-compressed, a control object whose second member is
// size zero bytes: a few KiB stored.
func putBomb(t testing.TB, a *Archive, key string, size int64) {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		controlTar(t, pw, &Manifest{Chunks: []ManifestChunk{{ChunkFilename: "b/b.00000001.pghoard", InputSize: 10240}}}, "pgdata/backup_manifest", size)
	}()
	st, err := a.Codec.Put(context.Background(), a.Store, key, pr, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d decoded bytes stored in %d", size, st.StoredSize)
}

// TestReadControl_Bomb: a small zstd control object that decodes to
// 256 MiB is read with a bounded amount of memory (the manifest only), and
// past the size limit it is refused as it decodes.
func TestReadControl_Bomb(t *testing.T) {
	a := &Archive{Store: storage.NewMem(), Codec: &Codec{Compression: compress.Zstd}, Layout: Layout{Prefix: "s"}, Site: "s"}
	const size = 256 << 20
	putBomb(t, a, "s/basebackup/bomb", size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := a.ReadControl(context.Background(), "s/basebackup/bomb", nil)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size < size || len(c.Manifest.Chunks) != 1 {
		t.Errorf("read %d bytes, manifest %+v", c.Size, c.Manifest)
	}
	// Allocations are cumulative: reading the object whole into memory,
	// as restore and verify once did, allocates over 256 MiB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("reading a 256 MiB control object allocated %d MiB", alloc>>20)
	}

	old := maxControlSize
	maxControlSize = 16 << 20
	defer func() { maxControlSize = old }()
	if _, err := a.ReadControl(context.Background(), "s/basebackup/bomb", nil); !errors.Is(err, ErrControlLimit) {
		t.Fatalf("ReadControl over the limit = %v, want ErrControlLimit", err)
	}
}

func TestReadControl_Err(t *testing.T) {
	good := &Manifest{Chunks: []ManifestChunk{{ChunkFilename: "b/b.00000001.pghoard", InputSize: 10240}}}
	js, _ := good.Marshal()
	member := func(name string, typ byte, body string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Mode: 0o600, Size: int64(len(body))})
		tw.Write([]byte(body))
		tw.Flush()
		return b.Bytes()
	}
	end := make([]byte, 1024)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	errCheck := errors.New("refused by check")
	check := func(_ *Manifest, h *tar.Header, _ io.Reader) error {
		if h.Name == "refuse" {
			return errCheck
		}
		return nil
	}
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"Empty", nil, "EOF"},
		{"FirstNotManifest", cat(member("pgdata/x", tar.TypeReg, "x"), end), "first member"},
		{"ManifestNotFile", cat(member(ManifestName, tar.TypeDir, ""), end), "not a regular file"},
		{"ManifestNotJSON", cat(member(ManifestName, tar.TypeReg, "{"), end), "parse backup manifest"},
		{"ManifestInvalid", cat(member(ManifestName, tar.TypeReg, `{"chunks":[{"chunk_filename":"../x","input_size":1}]}`), end), `"../x"`},
		{"CheckRefuses", cat(member(ManifestName, tar.TypeReg, string(js)), member("refuse", tar.TypeReg, "x"), end), "refused by check"},
		{"Truncated", cat(member(ManifestName, tar.TypeReg, string(js)), member("pgdata/x", tar.TypeReg, strings.Repeat("x", 1000))[:700]), "EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadControl(bytes.NewReader(tt.data), check)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadControl = %v, want an error with %q", err, tt.want)
			}
		})
	}
	data := cat(member(ManifestName, tar.TypeReg, string(js)), member("pgdata/x", tar.TypeReg, "xyz"), end)
	c, err := ReadControl(bytes.NewReader(data), check)
	if err != nil || c.Size != int64(len(data)) || len(c.Manifest.Chunks) != 1 {
		t.Fatalf("ReadControl = %+v, %v", c, err)
	}
	// A check that reads a member's data, backup_label's part of it:
	// the label is kept whole all the same.
	label := "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
	data = cat(member(ManifestName, tar.TypeReg, string(js)), member(ControlBackupLabel, tar.TypeReg, label), member("pgdata/x", tar.TypeReg, "xyz"), end)
	read := map[string]string{}
	c, err = ReadControl(bytes.NewReader(data), func(_ *Manifest, h *tar.Header, r io.Reader) error {
		b := make([]byte, 5)
		n, err := io.ReadFull(r, b)
		read[h.Name] = string(b[:n])
		if err == io.ErrUnexpectedEOF {
			return nil // a member shorter than b
		}
		return err
	})
	if err != nil {
		t.Fatalf("ReadControl with a check that reads: %v", err)
	}
	if string(c.Label) != label || read[ControlBackupLabel] != label[:5] || read["pgdata/x"] != "xyz" {
		t.Fatalf("ReadControl with a check that reads: label %q, read %q", c.Label, read)
	}
}

func TestManifest_Validate(t *testing.T) {
	chunk := func(name string) ManifestChunk {
		return ManifestChunk{ChunkFilename: name, InputSize: 10240, ResultSize: 100}
	}
	ok := []*Manifest{
		{},
		{Chunks: []ManifestChunk{chunk("b/b.00000001.pghoard"), chunk("b/b.00000002.pghoard")},
			Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/srv/ts", OID: 16400}, "empty": {OID: 16401}}},
		{Chunks: []ManifestChunk{{ChunkFilename: "b/c", InputSize: 1, HMAC: strings.Repeat("0a", 32)}}},
		{Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/srv/ts", OID: 16400}},
			Hoard: &HoardManifest{TablespaceSizes: map[string]int64{"ts": 8192}}},
	}
	for _, m := range ok {
		if err := m.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", m, err)
		}
	}
	bad := map[string]*Manifest{
		"ChunkDotDot":       {Chunks: []ManifestChunk{chunk("../../xlog/x")}},
		"ChunkAbsolute":     {Chunks: []ManifestChunk{chunk("/etc/passwd")}},
		"ChunkEmpty":        {Chunks: []ManifestChunk{chunk("")}},
		"ChunkEmptyPart":    {Chunks: []ManifestChunk{chunk("b//c")}},
		"ChunkDot":          {Chunks: []ManifestChunk{chunk("./b")}},
		"ChunkBackslash":    {Chunks: []ManifestChunk{chunk(`b\..\c`)}},
		"ChunkNUL":          {Chunks: []ManifestChunk{chunk("b\x00")}},
		"ChunkTwice":        {Chunks: []ManifestChunk{chunk("b/c"), chunk("b/c")}},
		"ChunkNoInputSize":  {Chunks: []ManifestChunk{{ChunkFilename: "b/c"}}},
		"ChunkNegative":     {Chunks: []ManifestChunk{{ChunkFilename: "b/c", InputSize: 1, ResultSize: -1}}},
		"ChunkHMACShort":    {Chunks: []ManifestChunk{{ChunkFilename: "b/c", InputSize: 1, HMAC: "0a0b"}}},
		"ChunkHMACNotHex":   {Chunks: []ManifestChunk{{ChunkFilename: "b/c", InputSize: 1, HMAC: strings.Repeat("zz", 32)}}},
		"SpcRelative":       {Tablespaces: map[string]ManifestTablespace{"ts": {Path: "srv/ts", OID: 1}}},
		"SpcUnclean":        {Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/srv/../etc", OID: 1}}},
		"SpcRoot":           {Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/", OID: 1}}},
		"SpcNoOID":          {Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/srv/ts"}}},
		"SpcSameOID":        {Tablespaces: map[string]ManifestTablespace{"a": {Path: "/a", OID: 7}, "b": {Path: "/b", OID: 7}}},
		"SpcNameSlash":      {Tablespaces: map[string]ManifestTablespace{"a/b": {Path: "/a", OID: 7}}},
		"SpcNameDotDot":     {Tablespaces: map[string]ManifestTablespace{"..": {Path: "/a", OID: 7}}},
		"SpcNameEmpty":      {Tablespaces: map[string]ManifestTablespace{"": {Path: "/a", OID: 7}}},
		"SpcPathTrailSlash": {Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/srv/ts/", OID: 1}}},
		"SpcSizeNegative": {Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/srv/ts", OID: 1}},
			Hoard: &HoardManifest{TablespaceSizes: map[string]int64{"ts": -1}}},
		"SpcSizeUnknown": {Tablespaces: map[string]ManifestTablespace{"ts": {Path: "/srv/ts", OID: 1}},
			Hoard: &HoardManifest{TablespaceSizes: map[string]int64{"other": 1}}},
	}
	for name, m := range bad {
		if err := m.Validate(); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: Validate = %v, want ErrBadManifest", name, err)
		}
	}
}

// TestReadControl_ErrLongName: a backup_label member named by a 1 MiB
// path that cleans to backup_label ("././.../backup_label"), cut short,
// is refused with an error quoting the name's start and length only.
func TestReadControl_ErrLongName(t *testing.T) {
	good := &Manifest{Chunks: []ManifestChunk{{ChunkFilename: "b/b.00000001.pghoard", InputSize: 10240}}}
	js, _ := good.Marshal()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: ManifestName, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(js))})
	tw.Write(js)
	tw.WriteHeader(&tar.Header{Name: strings.Repeat("./", 1<<18) + ControlBackupLabel, Typeflag: tar.TypeReg, Mode: 0o600, Size: 1000})
	tw.Write(bytes.Repeat([]byte("x"), 1000))
	tw.Flush()
	data := b.Bytes()[:b.Len()-700]
	_, err := ReadControl(bytes.NewReader(data), nil)
	if err == nil {
		t.Fatal("read a control tar cut inside backup_label")
	}
	if n := len(err.Error()); n > 2048 || !strings.Contains(err.Error(), "././././") {
		t.Errorf("error of %d bytes, want the name's start only: %.300s", n, err)
	}
}
