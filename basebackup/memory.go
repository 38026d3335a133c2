package basebackup

import (
	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
)

// chunkMemoryBudget bounds the memory the chunks in flight of one backup
// hold together, so that a backup's peak RSS stays under 256 MiB on a host
// with many cores: the rest is the process itself and the file list.
const chunkMemoryBudget = 160 << 20

// chunkMemory estimates the memory one chunk in flight holds: its
// worker's read buffer and tar batching, its compressor at conc
// goroutines, and the envelope's and the upload pipe's buffers. The
// storage's own upload buffer is not counted: local storage has none to
// speak of; object storage holds up to one part (segment_size) per upload.
func chunkMemory(codec *archive.Codec, conc int) int64 {
	return readBufferSize + uploadBufferSize + 128<<10 + compress.WriterMemory(codec.Compression, codec.Level, conc)
}

// fitParallel returns parallel (basebackup_threads, at most
// basebackup_chunks_in_progress when set), lowered so that as many chunks
// in flight fit chunkMemoryBudget, and at least 1.
func fitParallel(parallel int, codec *archive.Codec, conc int) int {
	return max(1, min(parallel, int(chunkMemoryBudget/chunkMemory(codec, conc))))
}
