// Package compress provides the compression formats of PGHoard's object
// store as plain io.Writer and io.Reader wrappers.
//
// Every object PGHoard (and hoard) stores is compressed first and then,
// optionally, encrypted (pghoard-format.md b.1); the compression-algorithm
// metadata names the format, and this package reads and writes exactly the
// bytes PGHoard's Python libraries do:
//
//   - snappy: the snappy framing format (b.2), not a raw block, because
//     python-snappy's StreamCompressor writes frames: a stream identifier
//     chunk, then compressed (0x00) or uncompressed (0x01) data chunks of at
//     most 64 KiB, each with a masked CRC-32C of its uncompressed bytes. An
//     empty stream is 0 bytes, with no identifier; readers accept it.
//     Framing has no end marker, so a stream cut at a chunk boundary reads
//     as a shorter valid stream: callers must compare the decoded size with
//     original-file-size (archive.Codec does).
//   - zstd: standard zstd frames (b.3). Level 0 means zstd's default, 3, as
//     in python-zstandard. Readers accept concatenated frames, because
//     PGHoard reads with read_across_frames and multi-threaded writers may
//     emit several.
//   - lzma: the .xz container with an LZMA2 filter and CRC64 check, which is
//     what Python's lzma.open(preset=level) writes (b.4); the level selects
//     the xz preset's dictionary size.
//   - lz4: the LZ4 frame format. This one is hoard's addition: PGHoard
//     cannot read it, so choose it only for archives hoard alone reads.
//
// Readers never buffer a whole stream: memory is bounded by the format's
// window: zstd windows and xz dictionaries over 128 MiB are refused before
// anything is allocated for them. Input that is not a valid
// stream, truncated streams included, makes Read return an error wrapping
// ErrCorrupt that names the algorithm; an error of the underlying reader
// (a network failure, crypto.ErrTampered) is passed through unchanged, so
// the caller sees the true cause.
package compress
