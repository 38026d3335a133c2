package basebackup

import (
	"archive/tar"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
)

// A local-tar chunk compressed with zstd at level 3 is first sampled:
// codecSamples pieces of codecSampleSize bytes, spread evenly over its
// files' bytes, fill the worker's read buffer before its first member is
// read.
const (
	codecSamples    = 4
	codecSampleSize = readBufferSize / codecSamples
	// minSampledChunk: a chunk with fewer file bytes keeps the backup's
	// level (sampling it would cost more than it could save).
	minSampledChunk = 4 << 20
)

// chunkCodec returns the codec that compresses plan's chunk: the
// backup's, or, when it is zstd at a level klauspost/compress gives its
// default encoder (0, 3-5) and samples of the chunk's files hardly
// compress, the fastest encoder storing them as well
// (compress.ZstdFastSuffices: random or already compressed bytes, such as
// encrypted columns), the same at level 1, which costs a quarter to a
// half of the CPU on such data. The chunk's
// compression-level metadata says which. Sampling reads about 256 KiB of
// the chunk's files; a file that is gone or unreadable gives no sample
// (the chunk's own read reports it).
func (w *worker) chunkCodec(plan chunkPlan) (*archive.Codec, error) {
	c := w.l.o.Archive.Codec
	if c.Compression != compress.Zstd {
		return c, nil
	}
	sample := w.sample(plan)
	if len(sample) == 0 {
		return c, nil
	}
	fast, err := compress.ZstdFastSuffices(sample, c.Level)
	if err != nil || !fast {
		return c, err
	}
	fc := *c
	fc.Level = 1
	return &fc, nil
}

// sample reads codecSamples pieces of plan's regular files into w.buf,
// spread evenly over their bytes, and returns them; nothing for a chunk
// of fewer than minSampledChunk file bytes.
func (w *worker) sample(plan chunkPlan) []byte {
	var total int64
	for _, i := range plan.entries {
		if e := &w.l.entries[i]; e.typ == tar.TypeReg {
			total += e.size
		}
	}
	if total < minSampledChunk {
		return nil
	}
	out := w.buf[:0]
	k, pos := 0, int64(0) // the next sample, and where in the files' bytes it starts
	var at int64          // bytes of the files before the current one
	for _, i := range plan.entries {
		e := &w.l.entries[i]
		if e.typ != tar.TypeReg {
			continue
		}
		for k < codecSamples {
			pos = total*int64(2*k+1)/(2*codecSamples) - codecSampleSize/2
			if pos >= at+e.size {
				break
			}
			out = readSample(out, e, max(pos-at, 0), min(codecSampleSize, e.size))
			k++
		}
		at += e.size
	}
	return out
}

// readSample appends up to n bytes of the file e from off to out: none
// when it cannot be opened (openListed: it neither waits on a named pipe
// nor follows a link put in its place) or read.
func readSample(out []byte, e *entry, off, n int64) []byte {
	f, err := openListed(e)
	if err != nil {
		return out
	}
	defer f.Close()
	m, _ := f.ReadAt(out[len(out):len(out)+int(n)], off)
	return out[:len(out)+m]
}
