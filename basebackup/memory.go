package basebackup

import (
	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/storage"
)

// chunkMemoryBudget bounds the memory the chunks in flight of one backup
// hold together, so that a backup's peak RSS stays under 256 MiB on a host
// with many cores: the rest is the process itself and the file list.
const chunkMemoryBudget = 160 << 20

// chunkMemory estimates the memory one chunk in flight holds: its
// worker's read buffer and tar batching, its compressor at conc
// goroutines, the envelope's buffer and the upload's
// (archive.UploadWriteSize), and upload, the store's own upload buffers
// for one chunk (storage.UploadMemory: a 256 KiB copy buffer for local
// storage; on S3 three parts, 5 MiB each for a chunk of up to 48 GiB).
func chunkMemory(codec *archive.Codec, conc int, upload int64) int64 {
	return readBufferSize + uploadBufferSize + archive.UploadWriteSize + 128<<10 + compress.WriterMemory(codec.Compression, codec.Level, conc) + upload
}

// fitParallel returns parallel (basebackup_threads, at most
// basebackup_chunks_in_progress when set), lowered so that as many chunks
// in flight fit chunkMemoryBudget, and at least 1. upload is the store's
// upload memory per chunk (see chunkMemory).
func fitParallel(parallel int, codec *archive.Codec, conc int, upload int64) int {
	return max(1, min(parallel, int(chunkMemoryBudget/chunkMemory(codec, conc, upload))))
}

// chunkUploadMemory is the store's upload memory for one chunk of a backup
// whose chunks hold about chunkSize bytes of tar (storage.UploadMemory of
// their largest stored size). A file larger than chunkSize gets a chunk
// of its own and may need larger parts; on S3 a chunk up to 48 GiB still
// has 5 MiB parts.
func chunkUploadMemory(st storage.Store, chunkSize int64) int64 {
	return storage.UploadMemory(st, archive.MaxStoredSize(chunkSize))
}
