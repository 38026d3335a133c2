package compress

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// appenderCases are the algorithms and options NewAppender supports.
var appenderCases = []struct {
	alg  string
	opts Options
}{
	{None, Options{}},
	{Snappy, Options{}},
	{Zstd, Options{}},
	{Zstd, Options{NoChecksum: true}},
	{Zstd, Options{Level: 9}},
	{LZ4, Options{NoChecksum: true}},
	{LZ4, Options{NoChecksum: true, Level: 3}},
}

func caseName(alg string, o Options) string {
	if alg == None {
		alg = "none"
	}
	return fmt.Sprintf("%s/level%d/nocrc=%v", alg, o.Level, o.NoChecksum)
}

func streamBytes(t *testing.T, a Appender) []byte {
	t.Helper()
	parts, err := a.Stream()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Join(parts, nil)
}

// forEachAppender runs fn in a subtest for each of appenderCases whose
// algorithm is one of algs (every case when nil), with a new Appender
// that is closed after it.
func forEachAppender(t *testing.T, algs []string, fn func(t *testing.T, alg string, a Appender)) {
	for _, tc := range appenderCases {
		if len(algs) > 0 && !slices.Contains(algs, tc.alg) {
			continue
		}
		t.Run(caseName(tc.alg, tc.opts), func(t *testing.T) {
			a, err := NewAppender(tc.alg, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			fn(t, tc.alg, a)
		})
	}
}

// appenderSteps appends data in pieces of varied sizes (small ones, and
// ones across snappy's 64 KiB and the blocks of lz4 and zstd) and calls
// check with the stream after each.
func appenderSteps(t *testing.T, a Appender, data []byte, check func(n int, stream []byte)) {
	t.Helper()
	sizes := []int{1, 100, 8192, 65535, 1, 65536, 200 << 10, 3, 300 << 10, 8192, 1 << 20}
	off := 0
	for i := 0; off < len(data); i++ {
		n := min(sizes[i%len(sizes)], len(data)-off)
		if err := a.Append(data[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
		check(off, streamBytes(t, a))
	}
}

// TestAppender_EachStreamDecodes checks that after every Append the
// stream decodes, with hoard's readers, to exactly what was appended: a
// stream a reader takes as shorter (a frame end missing, a chunk left
// out) or rejects fails it.
func TestAppender_EachStreamDecodes(t *testing.T) {
	data := walLike(3<<20 + 12345)
	forEachAppender(t, nil, func(t *testing.T, alg string, a Appender) {
		appenderSteps(t, a, data, func(n int, stream []byte) {
			got, err := decompressBytes(alg, stream)
			if err != nil {
				t.Fatalf("after %d bytes: %v", n, err)
			}
			if !bytes.Equal(got, data[:n]) {
				t.Fatalf("after %d bytes: the stream decodes to %d bytes, not the %d appended", n, len(got), n)
			}
		})
	})
}

// TestAppender_FrameEndMatters checks that hoard's readers refuse the
// zstd and lz4 streams without the end Stream writes, rather than read
// them as complete: the end is what makes the frame whole.
func TestAppender_FrameEndMatters(t *testing.T) {
	data := walLike(300 << 10)
	forEachAppender(t, []string{Zstd, LZ4}, func(t *testing.T, alg string, a Appender) {
		if err := a.Append(data); err != nil {
			t.Fatal(err)
		}
		parts, err := a.Stream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decompressBytes(alg, parts[0]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("stream without its end: %v, want ErrCorrupt", err)
		}
		whole := bytes.Join(parts, nil)
		if _, err := decompressBytes(alg, whole[:len(whole)-1]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("stream one byte short: %v, want ErrCorrupt", err)
		}
	})
}

func TestAppender_Unsupported(t *testing.T) {
	for _, tc := range []struct {
		alg  string
		opts Options
	}{{LZMA, Options{}}, {LZ4, Options{}}} {
		if _, err := NewAppender(tc.alg, tc.opts); !errors.Is(err, ErrNoAppender) {
			t.Errorf("NewAppender(%s, %+v) = %v, want ErrNoAppender", tc.alg, tc.opts, err)
		}
	}
	if _, err := NewAppender("brotli", Options{}); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("NewAppender(brotli) = %v, want ErrUnknownAlgorithm", err)
	}
}

// pghoardPython returns the Python of a PGHoard virtualenv, with the
// zstandard and snappy modules PGHoard reads objects with:
// HOARD_PGHOARD_PYTHON, or /tmp/pghoard/venv/bin/python (made by
// install-pghoard.sh). The test is skipped without one.
func pghoardPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("HOARD_PGHOARD_PYTHON")
	if py == "" {
		py = "/tmp/pghoard/venv/bin/python"
	}
	if _, err := os.Stat(py); err != nil {
		t.Skipf("no PGHoard python (%s): set HOARD_PGHOARD_PYTHON", py)
	}
	return py
}

// pghoardDecode is how rohmu reads a stream (pghoard-format.md b.2, b.3):
// snappy's StreamDecompressor, zstandard's stream reader across frames.
const pghoardDecode = `
import sys, snappy, zstandard
alg, src, dst = sys.argv[1:]
data = open(src, "rb").read()
if alg == "snappy":
    out = snappy.StreamDecompressor().decompress(data)
else:
    out = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
    # a frame cut short reads short rather than failing: say so
    d = zstandard.ZstdDecompressor().decompressobj()
    d.decompress(data)
    if not d.eof:
        sys.exit("zstd frame not ended")
open(dst, "wb").write(out)
`

// TestAppender_PGHoardReads decodes the streams with the Python modules
// PGHoard reads snappy and zstd objects with (it has no lz4): each must
// read to exactly what was appended.
func TestAppender_PGHoardReads(t *testing.T) {
	py := pghoardPython(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "decode.py")
	if err := os.WriteFile(script, []byte(pghoardDecode), 0o600); err != nil {
		t.Fatal(err)
	}
	data := walLike(1<<20 + 777)
	forEachAppender(t, []string{Snappy, Zstd}, func(t *testing.T, alg string, a Appender) {
		step := 0
		appenderSteps(t, a, data, func(n int, stream []byte) {
			step++
			src, dst := filepath.Join(dir, "in"), filepath.Join(dir, "out")
			if err := os.WriteFile(src, stream, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(py, script, alg, src, dst).CombinedOutput(); err != nil {
				t.Fatalf("after %d bytes: python: %v\n%s", n, err, out)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data[:n]) {
				t.Fatalf("after %d bytes: python decodes %d bytes, not the %d appended", n, len(got), n)
			}
		})
	})
}
