package compress

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The bounds of FuzzAppender's inputs. An input runs one appender and
// decodes its whole stream after every piece, so its cost grows with
// pieces times total size: unbounded (20 pieces of up to 256 KiB, up to
// 20 x 5 MiB decoded for one input) the fuzzer ran 50-1,100 inputs in
// scripts/fuzz.sh's 10 s. The bounds keep what the target is for: pieces
// that start, end and straddle the boundaries where the appenders cut
// their output (snappy chunks and lz4 blocks of 64 KiB, zstd blocks of
// 128 KiB), a piece larger than a zstd block, several boundaries in one
// stream, and every seed below.
const (
	fuzzAppendSteps = 4         // pieces an input appends
	fuzzAppendPiece = 136 << 10 // the largest piece: more than a zstd block
	fuzzAppendTotal = 200 << 10 // all pieces: 3 snappy chunks, 1.5 zstd blocks
)

// FuzzAppender appends a stream in pieces whose sizes come from the
// input (zero included) and checks, after every Append, that the stream
// decodes with hoard's readers to exactly what was appended; and that
// asking for the stream twice changes nothing. The input also chooses
// the appender (one of appenderCases), and every seed runs with each.
// Running all seven on every input cost 7 times as much, zstd at level 9
// two thirds of it (its encoder's tables are allocated and cleared for
// each Appender), for no more coverage: the fuzzer finds each appender's
// code through the input that chooses it.
func FuzzAppender(f *testing.F) {
	for _, seed := range [][]int{
		{0}, {1, 0, 1}, {65535, 1}, {65536, 0, 65536}, {65537, 65535}, {8192, 0, 0, 8192},
		{65535, 2, 65535}, {40000, 40000, 40000}, {131072, 1}, {131071, 2, 262144},
	} {
		b := make([]byte, 0, 3*len(seed))
		for _, v := range seed {
			b = append(b, byte(v), byte(v>>8), byte(v>>16))
		}
		for i := range appenderCases {
			f.Add(b, uint8(0), uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, steps []byte, seed, appender uint8) {
		var sizes []int
		total := 0
		for i := 0; i+2 < len(steps) && len(sizes) < fuzzAppendSteps; i += 3 {
			n := (int(steps[i]) | int(steps[i+1])<<8 | int(steps[i+2])<<16) % (fuzzAppendPiece + 1)
			n = min(n, fuzzAppendTotal-total)
			sizes = append(sizes, n)
			total += n
		}
		data := walLike(total + int(seed))[:total]
		tc := appenderCases[int(appender)%len(appenderCases)]
		a, err := NewAppender(tc.alg, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		off := 0
		for _, n := range sizes {
			if err := a.Append(data[off : off+n]); err != nil {
				t.Fatal(err)
			}
			off += n
			if off == 0 && tc.alg != None && tc.alg != Snappy {
				continue // zstd and lz4 need something appended
			}
			s1 := streamBytes(t, a)
			s2 := streamBytes(t, a)
			if !bytes.Equal(s1, s2) {
				t.Fatalf("%s: two streams of the same %d bytes differ", caseName(tc.alg, tc.opts), off)
			}
			got, err := decompressBytes(tc.alg, s1)
			if err != nil {
				t.Fatalf("%s: after %d bytes %v: %v", caseName(tc.alg, tc.opts), off, sizes, err)
			}
			if !bytes.Equal(got, data[:off]) {
				t.Fatalf("%s: after %d bytes %v: decodes to %d bytes", caseName(tc.alg, tc.opts), off, sizes, len(got))
			}
		}
	})
}

// TestAppender_ReferenceDecoders decodes the streams of edge-size
// appends (nothing new, one byte, a snappy chunk and an lz4 block
// exactly, 64 KiB +/- 1, a whole 1 MiB and 16 MiB segment) with the
// reference implementations: the zstd and lz4 command-line tools (libzstd,
// liblz4; skipped where absent) and PGHoard's Python (snappy, zstd;
// skipped without its venv).
func TestAppender_ReferenceDecoders(t *testing.T) {
	if testing.Short() {
		t.Skip("runs external decoders on 16 MiB of streams")
	}
	dir := t.TempDir()
	py := os.Getenv("HOARD_PGHOARD_PYTHON")
	if py == "" {
		py = "/tmp/pghoard/venv/bin/python"
	}
	script := filepath.Join(dir, "decode.py")
	if err := os.WriteFile(script, []byte(pghoardDecode), 0o600); err != nil {
		t.Fatal(err)
	}
	type decoder struct {
		name string
		cmd  func(src, dst string) *exec.Cmd
	}
	decoders := map[string][]decoder{}
	if _, err := os.Stat(py); err == nil {
		for _, alg := range []string{Snappy, Zstd} {
			decoders[alg] = append(decoders[alg], decoder{"pghoard-python", func(src, dst string) *exec.Cmd {
				return exec.Command(py, script, alg, src, dst)
			}})
		}
	}
	if p, err := exec.LookPath("zstd"); err == nil {
		decoders[Zstd] = append(decoders[Zstd], decoder{"zstd-cli", func(src, dst string) *exec.Cmd {
			return exec.Command(p, "-q", "-d", "-f", src, "-o", dst)
		}})
	}
	if p, err := exec.LookPath("lz4"); err == nil {
		decoders[LZ4] = append(decoders[LZ4], decoder{"lz4-cli", func(src, dst string) *exec.Cmd {
			return exec.Command(p, "-q", "-d", "-f", src, dst)
		}})
	}
	if len(decoders) == 0 {
		t.Skip("no reference decoder")
	}
	for _, segSize := range []int{1 << 20, 16 << 20} {
		data := walLike(segSize)
		steps := []int{8192, 0, 1, 65535, 65536 - 8192 - 1 - 65535 + 65536, 65537, 65535, 0, 1 << 19}
		for _, tc := range appenderCases {
			for _, d := range decoders[tc.alg] {
				t.Run(fmtCase(segSize, tc.alg, tc.opts, d.name), func(t *testing.T) {
					a, err := NewAppender(tc.alg, tc.opts)
					if err != nil {
						t.Fatal(err)
					}
					defer a.Close()
					check := func(n int) {
						src, dst := filepath.Join(dir, "in"), filepath.Join(dir, "out")
						if err := os.WriteFile(src, streamBytes(t, a), 0o600); err != nil {
							t.Fatal(err)
						}
						if out, err := d.cmd(src, dst).CombinedOutput(); err != nil {
							t.Fatalf("after %d bytes: %s: %v\n%s", n, d.name, err, out)
						}
						got, err := os.ReadFile(dst)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(got, data[:n]) {
							t.Fatalf("after %d bytes: %s decodes %d bytes", n, d.name, len(got))
						}
					}
					off := 0
					for _, n := range steps {
						n = min(n, segSize-off)
						if err := a.Append(data[off : off+n]); err != nil {
							t.Fatal(err)
						}
						off += n
						check(off)
					}
					// The rest of the segment, then nothing more.
					if err := a.Append(data[off:]); err != nil {
						t.Fatal(err)
					}
					check(segSize)
					if err := a.Append(nil); err != nil {
						t.Fatal(err)
					}
					check(segSize)
				})
			}
		}
	}
}

func fmtCase(segSize int, alg string, o Options, dec string) string {
	return caseName(alg, o) + "/" + dec + "/seg" + itoa(segSize>>20) + "MiB"
}

func itoa(n int) string { return string(rune('0'+n/10%10)) + string(rune('0'+n%10)) }
