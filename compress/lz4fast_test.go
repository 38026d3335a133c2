package compress

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"

	"github.com/hoardbackup/hoard/internal/benchdata"
	"github.com/hoardbackup/hoard/internal/testio"
)

// lz4Inputs are data whose blocks exercise the frame writer's paths:
// nothing, fewer bytes than a match needs, incompressible bytes, long runs
// (match lengths past 15 + 255), long literal runs between matches,
// WAL-like and cluster-like data, and sizes around the 64 KiB block.
func lz4Inputs() map[string][]byte {
	rng := rand.New(rand.NewSource(7))
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	litRuns := make([]byte, 300<<10)
	for i := 0; i < len(litRuns); i += 1000 {
		// 700 random bytes, then 300 bytes repeating earlier ones.
		rng.Read(litRuns[i:min(i+700, len(litRuns))])
		if i+1000 <= len(litRuns) && i >= 1000 {
			copy(litRuns[i+700:i+1000], litRuns[i-1000:i-700])
		}
	}
	in := map[string][]byte{
		"empty":         {},
		"one":           {42},
		"twelve":        bytes.Repeat([]byte{1}, 12),
		"thirteen":      bytes.Repeat([]byte{1}, 13),
		"fourteen-text": []byte("hello, hello!!"),
		"zeros-64k":     make([]byte, 64<<10),
		"zeros-64k-1":   make([]byte, 64<<10-1),
		"zeros-64k+1":   make([]byte, 64<<10+1),
		"zeros-1m+7":    make([]byte, 1<<20+7),
		"random-64k":    random(64 << 10),
		"random-200k":   random(200<<10 + 3),
		"pattern":       bytes.Repeat([]byte("abcdefgh12345"), 40000),
		"literal-runs":  litRuns,
		"wal":           walLike(1<<20 + 1234),
		"cluster":       benchdata.ClusterLike(2 << 20),
	}
	// Random bytes with one match right at the end of the block.
	tail := random(64 << 10)
	copy(tail[len(tail)-40:], tail[:40])
	in["match-at-end"] = tail
	return in
}

// lz4Encode writes data through hoard's lz4 writer in pieces of the given
// sizes (cycled), as uploads write. Each piece is written from one reused
// buffer, overwritten after each Write returns, as the read-ahead's
// buffers are: a writer that still reads a piece after its Write returned
// compresses the wrong bytes.
func lz4Encode(t testing.TB, data []byte, o Options, pieces []int) []byte {
	t.Helper()
	var scratch []byte
	var buf bytes.Buffer
	w, err := NewWriterOptions(&buf, LZ4, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(*lz4Writer); !ok {
		t.Fatalf("lz4 at level %d writes with %T, not hoard's lz4Writer", o.Level, w)
	}
	for i, off := 0, 0; off < len(data); i++ {
		n := min(pieces[i%len(pieces)], len(data)-off)
		scratch = append(scratch[:0], data[off:off+n]...)
		if _, err := w.Write(scratch); err != nil {
			t.Fatal(err)
		}
		for j := range scratch {
			scratch[j] = 0xa5
		}
		off += n
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestLZ4Writer_RoundTrip: every input, written in pieces of several
// sizes, with and without the content checksum, decodes with pierrec/lz4's
// reader (what hoard and its older releases read lz4 with; it checks the
// content checksum) to exactly what was written, and its frame header is
// the one pierrec/lz4's writer wrote for the same options.
func TestLZ4Writer_RoundTrip(t *testing.T) {
	for name, data := range lz4Inputs() {
		for _, o := range []Options{{}, {NoChecksum: true}, {Concurrency: 4, NoChecksum: true}} {
			for _, pieces := range [][]int{{1 << 20}, {65536}, {1, 65535, 65537, 7, 128 << 10}} {
				frame := lz4Encode(t, data, o, pieces)
				got, err := decompressBytes(LZ4, frame)
				if err != nil {
					t.Fatalf("%s %+v %v: %v", name, o, pieces, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%s %+v %v: decodes to %d bytes, not the %d written", name, o, pieces, len(got), len(data))
				}
				var ref bytes.Buffer
				lw := lz4.NewWriter(&ref)
				if err := lw.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(!o.NoChecksum)); err != nil {
					t.Fatal(err)
				}
				if err := lw.Close(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(frame[:7], ref.Bytes()[:7]) {
					t.Fatalf("%s %+v: frame header % x, pierrec/lz4 writes % x", name, o, frame[:7], ref.Bytes()[:7])
				}
				if len(data) == 0 && !bytes.Equal(frame, ref.Bytes()) {
					t.Fatalf("empty %+v: frame % x, pierrec/lz4 writes % x", o, frame, ref.Bytes())
				}
			}
		}
	}
}

// TestLZ4Writer_ContentChecksum: a frame with a content checksum whose
// checksum is wrong does not decode, so the checksum is really written.
func TestLZ4Writer_ContentChecksum(t *testing.T) {
	frame := lz4Encode(t, walLike(100<<10), Options{}, []int{1 << 20})
	frame[len(frame)-1] ^= 1
	if _, err := decompressBytes(LZ4, frame); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a wrong content checksum decodes: %v", err)
	}
}

// TestLZ4Writer_Blocks: incompressible blocks are stored as they are
// (the block size's high bit), compressible ones compressed, and the ratio
// on cluster-like data is within 5 % of pierrec/lz4's Writer's (whose fast
// mode, Compressor, tries three positions a step where CompressorCCompat,
// as reference lz4, tries one; on a real BASE_BACKUP tar of the
// benchmark's cluster hoard's frames are smaller).
func TestLZ4Writer_Blocks(t *testing.T) {
	in := lz4Inputs()
	frame := lz4Encode(t, in["random-64k"], Options{NoChecksum: true}, []int{1 << 20})
	// Header (7), block size (4), 64 KiB, end mark (4).
	if len(frame) != 7+4+65536+4 || frame[7+3]&0x80 == 0 {
		t.Fatalf("random block: frame of %d bytes, block size % x", len(frame), frame[7:11])
	}
	data := in["cluster"]
	frame = lz4Encode(t, data, Options{NoChecksum: true}, []int{1 << 20})
	var ref bytes.Buffer
	lw := lz4.NewWriter(&ref)
	if err := lw.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)); err != nil {
		t.Fatal(err)
	}
	testio.WriteClose(t, lw, data)
	if float64(len(frame)) > float64(ref.Len())*1.05 {
		t.Fatalf("cluster data: %d bytes, pierrec/lz4 %d", len(frame), ref.Len())
	}
	t.Logf("cluster data: %d bytes of %d, pierrec/lz4 %d", len(frame), len(data), ref.Len())
}

// TestLZ4Writer_ReferenceDecoder: the lz4 command-line tool (liblz4)
// decodes every input's frame, with and without the content checksum, to
// exactly what was written. Skipped without the tool.
func TestLZ4Writer_ReferenceDecoder(t *testing.T) {
	p, err := exec.LookPath("lz4")
	if err != nil {
		t.Skip("no lz4 command")
	}
	dir := t.TempDir()
	for name, data := range lz4Inputs() {
		for _, o := range []Options{{}, {NoChecksum: true}} {
			src, dst := filepath.Join(dir, "in.lz4"), filepath.Join(dir, "out")
			if err := os.WriteFile(src, lz4Encode(t, data, o, []int{100 << 10}), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(p, "-q", "-d", "-f", src, dst).CombinedOutput(); err != nil {
				t.Fatalf("%s %+v: lz4 -d: %v\n%s", name, o, err, out)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s %+v: lz4 -d decodes %d bytes, not the %d written", name, o, len(got), len(data))
			}
		}
	}
}

// TestLZ4Writer_Levels: levels above 0 (lz4's high-compression modes) are
// still pierrec/lz4's writer.
func TestLZ4Writer_Levels(t *testing.T) {
	w, err := NewWriterOptions(&bytes.Buffer{}, LZ4, Options{Level: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(*lz4.Writer); !ok {
		t.Fatalf("level 3 writes with %T", w)
	}
}

// failAfter fails every write after the first n.
type failAfter struct{ n int }

var errFailAfter = errors.New("store failed")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errFailAfter
	}
	f.n--
	return len(p), nil
}

// TestLZ4Writer_Errors: an error of the underlying writer is returned by
// that Write or a later one and by Close, a closed writer refuses
// writes, and with several workers Close ends them whatever failed.
func TestLZ4Writer_Errors(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, conc := range []int{1, 2, 3} {
		for n := range 6 {
			w, err := NewWriterOptions(&failAfter{n: n}, LZ4, Options{NoChecksum: true, Concurrency: conc})
			if err != nil {
				t.Fatal(err)
			}
			var werr error
			for range 8 {
				if _, werr = w.Write(walLike(200 << 10)); werr != nil {
					break
				}
			}
			cerr := w.Close()
			if !errors.Is(werr, errFailAfter) && !errors.Is(cerr, errFailAfter) {
				t.Fatalf("%d workers, after %d writes: Write %v, Close %v", conc, n, werr, cerr)
			}
			if cerr == nil {
				t.Fatalf("%d workers, after %d writes: Close succeeds after a failed write", conc, n)
			}
		}
	}
	waitGoroutines(t, before)
	w, _ := NewWriterOptions(&bytes.Buffer{}, LZ4, Options{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("write after close succeeds")
	}
}

// waitGoroutines waits (up to a minute, for a loaded machine) until no
// more than n goroutines run: the workers of closed writers have ended.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines run, %d before: a closed writer left workers behind", runtime.NumGoroutine(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLZ4Writer_Workers: with several workers the frame is the same, byte
// for byte, as the writer alone writes, whatever the pieces written (the
// blocks are cut at the same offsets and written in order), and Close
// ends the workers; a writer closed without a write starts none.
func TestLZ4Writer_Workers(t *testing.T) {
	before := runtime.NumGoroutine()
	data := lz4Inputs()
	data["cluster-5m"] = benchdata.ClusterLike(5<<20 + 333)
	for name, in := range data {
		for _, o := range []Options{{}, {NoChecksum: true}} {
			for _, pieces := range [][]int{{1 << 20}, {65536}, {1, 65535, 65537, 7, 300 << 10}} {
				want := lz4Encode(t, in, o, pieces)
				for _, conc := range []int{2, 3} {
					po := o
					po.Concurrency = conc
					if got := lz4Encode(t, in, po, pieces); !bytes.Equal(got, want) {
						t.Fatalf("%s %+v %v: %d workers write a frame of %d bytes, different from the %d bytes of one", name, po, pieces, conc, len(got), len(want))
					}
				}
			}
		}
	}
	waitGoroutines(t, before)
}

// TestXXH32: known values of xxHash32 with seed 0, and the streaming sum
// equals the one-shot sum whatever the pieces.
func TestXXH32(t *testing.T) {
	for in, want := range map[string]uint32{
		"":    0x02cc5d05,
		"a":   0x550d7456,
		"abc": 0x32d153ff,
		"Nobody inspects the spammish repetition": 0xe2293b2f,
	} {
		if got := xxh32Sum([]byte(in)); got != want {
			t.Errorf("xxh32(%q) = %08x, want %08x", in, got, want)
		}
	}
	data := walLike(1000)
	want := xxh32Sum(data)
	rng := rand.New(rand.NewSource(1))
	for range 100 {
		var x xxh32
		for off := 0; off < len(data); {
			n := min(rng.Intn(40), len(data)-off)
			x.write(data[off : off+n])
			off += n
		}
		if got := x.sum(); got != want {
			t.Fatalf("streaming sum %08x, one-shot %08x", got, want)
		}
	}
}

// FuzzLZ4Writer: any input, written in two pieces, decodes with
// pierrec/lz4's reader (which checks the content checksum) to exactly the
// bytes written.
func FuzzLZ4Writer(f *testing.F) {
	f.Add([]byte("hello, hello, hello, hello!"), uint16(5))
	f.Add(bytes.Repeat([]byte{0}, 1000), uint16(999))
	f.Add(walLike(70000), uint16(65535))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		frame := lz4Encode(t, data, Options{}, []int{max(int(cut), 1), 1 << 20})
		got, err := decompressBytes(LZ4, frame)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: decode %v, %d bytes", len(data), err, len(got))
		}
	})
}

// BenchmarkLZ4Writer compresses 64 MiB of cluster-like data
// (benchdata.ClusterLike, or the file HOARD_BENCH_LZ4_FILE names, such as a
// pg_basebackup tar) in 128 KiB writes without a content checksum, as a
// BASE_BACKUP chunk is written: hoard's writer alone and on two workers,
// and pierrec/lz4's with the two goroutines BASE_BACKUP gave it before and
// with one. It reports the
// CPU seconds per GB of plaintext (all goroutines) and the ratio.
func BenchmarkLZ4Writer(b *testing.B) {
	plain := benchdata.ClusterLike(64 << 20)
	if f := os.Getenv("HOARD_BENCH_LZ4_FILE"); f != "" {
		var err error
		if plain, err = os.ReadFile(f); err != nil {
			b.Fatal(err)
		}
	}
	pierrec := func(conc int) func(w io.Writer) io.WriteCloser {
		return func(w io.Writer) io.WriteCloser {
			lw := lz4.NewWriter(w)
			opts := []lz4.Option{lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)}
			if conc > 1 {
				opts = append(opts, lz4.ConcurrencyOption(conc))
			}
			if err := lw.Apply(opts...); err != nil {
				b.Fatal(err)
			}
			return lw
		}
	}
	for _, tc := range []struct {
		name string
		new  func(w io.Writer) io.WriteCloser
	}{
		{"hoard", func(w io.Writer) io.WriteCloser { return newLZ4Writer(w, false, 1) }},
		{"hoard-workers2", func(w io.Writer) io.WriteCloser { return newLZ4Writer(w, false, 2) }},
		{"pierrec-2", pierrec(2)},
		{"pierrec-1", pierrec(1)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			start := benchdata.CPUTime(b)
			var out countingDiscard
			for b.Loop() {
				out = 0
				writeInPieces(b, tc.new(&out), plain, 128<<10)
			}
			benchdata.ReportCPUPerGB(b, start, int64(len(plain)))
			b.ReportMetric(float64(out)/float64(len(plain)), "ratio")
		})
	}
}

type countingDiscard int64

func (c *countingDiscard) Write(p []byte) (int, error) {
	*c += countingDiscard(len(p))
	return len(p), nil
}
