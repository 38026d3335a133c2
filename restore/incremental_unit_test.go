package restore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
)

// incrementalFile builds an incremental file as PostgreSQL writes one.
func incrementalFile(trunc uint32, blocks map[uint32]byte) []byte {
	var nums []uint32
	for b := range blocks {
		nums = append(nums, b)
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, []uint32{incrementalMagic, uint32(len(nums)), trunc})
	binary.Write(&buf, binary.LittleEndian, nums)
	if len(nums) > 0 && buf.Len()%blockSize != 0 {
		buf.Write(make([]byte, blockSize-buf.Len()%blockSize))
	}
	for _, b := range nums {
		buf.Write(bytes.Repeat([]byte{blocks[b]}, blockSize))
	}
	return buf.Bytes()
}

// fileOfBlocks is a relation file whose block i is filled with fill[i].
func fileOfBlocks(fill ...byte) []byte {
	var out []byte
	for _, f := range fill {
		out = append(out, bytes.Repeat([]byte{f}, blockSize)...)
	}
	return out
}

func TestApplyIncremental(t *testing.T) {
	cases := []struct {
		name   string
		parent []byte
		trunc  uint32
		blocks map[uint32]byte
		want   []byte
	}{
		{"blocks replaced", fileOfBlocks(1, 2, 3, 4), 4, map[uint32]byte{1: 9, 3: 8}, fileOfBlocks(1, 9, 3, 8)},
		{"truncated", fileOfBlocks(1, 2, 3, 4), 2, map[uint32]byte{0: 7}, fileOfBlocks(7, 2)},
		{"truncated to nothing", fileOfBlocks(1, 2), 0, nil, nil},
		{"extended past the truncation length", fileOfBlocks(1, 2), 2, map[uint32]byte{4: 5}, fileOfBlocks(1, 2, 0, 0, 5)},
		{"parent shorter than the truncation length", fileOfBlocks(1), 3, map[uint32]byte{2: 6}, fileOfBlocks(1, 0, 6)},
		{"truncated then regrown", fileOfBlocks(1, 2, 3, 4), 1, map[uint32]byte{2: 6}, fileOfBlocks(1, 0, 6)},
		{"unchanged", fileOfBlocks(1, 2), 2, nil, fileOfBlocks(1, 2)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "16384")
			if err := os.WriteFile(p, c.parent, 0o600); err != nil {
				t.Fatal(err)
			}
			inc := incrementalFile(c.trunc, c.blocks)
			// Applied twice, as a retried chunk would: the same result.
			for range 2 {
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				err = applyIncremental(f, bytes.NewReader(inc), int64(len(inc)), make([]byte, copyBufferSize))
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, c.want) {
					t.Fatalf("got %d bytes, want %d (or other contents)", len(got), len(c.want))
				}
			}
		})
	}
}

func TestApplyIncremental_ErrBroken(t *testing.T) {
	good := incrementalFile(2, map[uint32]byte{1: 3})
	badMagic := bytes.Clone(good)
	badMagic[0] ^= 1
	tooManyBlocks := bytes.Clone(good)
	binary.LittleEndian.PutUint32(tooManyBlocks[4:], 2)
	hugeTrunc := bytes.Clone(good)
	binary.LittleEndian.PutUint32(hugeTrunc[8:], 1<<30)
	cases := map[string][]byte{
		"bad magic":        badMagic,
		"truncated":        good[:len(good)-1],
		"block count":      tooManyBlocks,
		"truncation":       hugeTrunc,
		"no header":        good[:8],
		"trailing garbage": append(bytes.Clone(good), 0),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "16384")
			parent := fileOfBlocks(1, 2)
			if err := os.WriteFile(p, parent, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = applyIncremental(f, bytes.NewReader(data), int64(len(data)), make([]byte, copyBufferSize))
			if !errors.Is(err, ErrBrokenChain) {
				t.Fatalf("got %v, want ErrBrokenChain", err)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, parent) {
				t.Error("the parent's file changed")
			}
		})
	}
}

// TestPGManifest_Paths: the files of an incremental backup (a level of
// a chain, chainLevel.files) are the paths its backup_manifest lists,
// INCREMENTAL. dropped from incremental files' names.
func TestPGManifest_Paths(t *testing.T) {
	pm, err := parsePGManifest(strings.NewReader(`{"PostgreSQL-Backup-Manifest-Version": 2, "Files": [
		{"Path": "base/5/INCREMENTAL.16384", "Size": 12}, {"Path": "global/pg_control", "Size": 8192},
		{"Encoded-Path": "626173652f352f31363338352e31", "Size": 0}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := pm.paths()
	for _, p := range []string{"base/5/16384", "global/pg_control", "base/5/16385.1"} {
		if !got[p] {
			t.Errorf("%s missing from %v", p, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("got %v", got)
	}
}

// A backup_manifest whose Files are entries of a few bytes each is
// refused past maxManifestFiles entries (lowered here), decoded one at a
// time. Before, this 16 MiB of "{}" entries (5.6 million) was decoded
// whole into a slice, allocating 1.2 GiB; the 1 GiB a control object's
// backup_manifest may be, some 75 GiB.
func TestParsePGManifest_ErrTooMany(t *testing.T) {
	old := maxManifestFiles
	maxManifestFiles = 1 << 10
	t.Cleanup(func() { maxManifestFiles = old })
	data := append([]byte(`{"Files": [`), bytes.Repeat([]byte(`{},`), 16<<20/3)...)
	data = append(data, `{}]}`...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := parsePGManifest(bytes.NewReader(data))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, archive.ErrControlLimit) {
		t.Errorf("err = %v, want ErrControlLimit", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("allocated %d MiB", alloc>>20)
	}
}

// A bad Encoded-Path is named in the error by its start only: the
// manifest holds whatever whoever stored the backup put there (a site
// without keys), and the error is logged and kept in the daemon's
// status. Before, a 1 MiB path was quoted whole.
func TestParsePGManifest_ErrLongEncodedPath(t *testing.T) {
	long := strings.Repeat("zz", 1<<19)
	_, err := parsePGManifest(strings.NewReader(`{"Files": [{"Encoded-Path": "` + long + `", "Size": 0}]}`))
	if err == nil || !strings.Contains(err.Error(), "Encoded-Path") {
		t.Fatalf("err = %v, want a bad Encoded-Path", err)
	}
	if len(err.Error()) > 1024 {
		t.Errorf("error of %d bytes, want the path's start only", len(err.Error()))
	}
}

func TestStripIncrementalLabel(t *testing.T) {
	in := "START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\nINCREMENTAL FROM LSN: 0/6000028\nINCREMENTAL FROM TLI: 1\nLABEL: x\n"
	want := "START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\nLABEL: x\n"
	if got := string(stripIncrementalLabel([]byte(in))); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
