package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rsa"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/benchdata"
	"github.com/hoardbackup/hoard/storage"
)

// benchChunks are the chunks of BenchmarkRestore's backup, shaped like the
// benchmark cluster's (scripts/bench-basebackup.sh): relation segments of
// 1 GB cut down to 64 MiB, each a chunk of its own, and chunks of many
// small files (catalogs, free space and visibility maps, 8 kB to 1 MiB).
// 256 MiB in all, 2 x 64 MiB + 2 x 64 MiB of 600 files each.
var benchChunks = [][]int64{
	{64 << 20},
	{64 << 20},
	benchSmallFiles(64 << 20),
	benchSmallFiles(64 << 20),
}

// benchSmallFiles returns the sizes of files totalling n bytes: 8 kB,
// 24 kB, 128 kB and 1 MiB in turn (the benchmark cluster's small files are
// mostly 8-24 kB).
func benchSmallFiles(n int64) []int64 {
	var out []int64
	sizes := []int64{8 << 10, 24 << 10, 8 << 10, 128 << 10, 8 << 10, 1 << 20}
	for i := 0; n > 0; i++ {
		s := min(sizes[i%len(sizes)], n)
		out = append(out, s)
		n -= s
	}
	return out
}

// benchBackup stores benchChunks with codec c in a local store under dir
// and returns the archive, its manifest and its files as backup_manifest
// lists them.
func benchBackup(b *testing.B, dir string, c *archive.Codec) (*archive.Archive, *archive.Manifest, *pgManifest) {
	b.Helper()
	a := archivetest.New(b, storage.NewLocal(filepath.Join(dir, "store")), c)
	data := benchdata.ClusterLike(64 << 20)
	m := &archive.Manifest{}
	pgm := &pgManifest{files: map[string]*pgManifestEntry{}}
	file := 16384
	for i, sizes := range benchChunks {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, size := range sizes {
			h := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("pgdata/base/5/%d", file), Size: size, Mode: 0o600}
			pgm.files[fmt.Sprintf("base/5/%d", file)] = &pgManifestEntry{size: size, crc: crc32.Checksum(data[:size], castagnoli), hasCRC: true}
			file++
			if err := tw.WriteHeader(h); err != nil {
				b.Fatal(err)
			}
			if _, err := tw.Write(data[:size]); err != nil {
				b.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			b.Fatal(err)
		}
		cf := archive.ChunkFilename(testBackup, i+1)
		s, err := c.Put(context.Background(), a.Store, a.Layout.ChunkKey(cf), bytes.NewReader(buf.Bytes()), int64(buf.Len()), nil)
		if err != nil {
			b.Fatal(err)
		}
		m.Chunks = append(m.Chunks, archive.ManifestChunk{ChunkFilename: cf, InputSize: int64(buf.Len()), ResultSize: s.StoredSize})
	}
	return a, m, pgm
}

// BenchmarkRestore restores a backup of 256 MiB (benchChunks, lz4 and
// encrypted as the benchmark's backups are) from a local store into a new
// directory under the test's temporary directory, two chunks at a time,
// with the restore's own code (downloadChunks), and for the stages:
//
//   - decode: the chunks read, decrypted, checked and decompressed into
//     nothing (the cost of the codec, with and without encryption);
//   - extract: decode, and the files written into the page cache;
//   - extract+syncfs: and the file system synced, as Run does before it
//     reports success: the restore's time;
//   - extract+pgmanifest: extract, each file's size and CRC-32C compared
//     with the backup's backup_manifest as it is written, as Run does
//     for a backup that carries one.
//
// cpu-s/GB is the process's CPU time per GB restored; the kernel's work of
// writing the pages back after the restore returns is not the process's.
// Set TMPDIR to restore onto another disk.
func BenchmarkRestore(b *testing.B) {
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		b.Fatal(err)
	}
	codecs := map[string]*archive.Codec{
		"lz4":     {Compression: compress.LZ4},
		"lz4+enc": {Compression: compress.LZ4, KeyID: "k", PublicKey: &k.PublicKey, PrivateKeys: map[string]*rsa.PrivateKey{"k": k}},
	}
	var total int64
	for _, sizes := range benchChunks {
		for _, s := range sizes {
			total += s
		}
	}
	for _, name := range []string{"lz4", "lz4+enc"} {
		dir := b.TempDir()
		a, m, pgm := benchBackup(b, dir, codecs[name])
		b.Run("decode/"+name, func(b *testing.B) {
			b.SetBytes(total)
			start := benchdata.CPUTime(b)
			for b.Loop() {
				for _, c := range m.Chunks {
					rc, _, err := a.Codec.Open(context.Background(), a.Store, a.Layout.ChunkKey(c.ChunkFilename))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.CopyBuffer(io.Discard, rc, make([]byte, copyBufferSize)); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
			}
			benchdata.ReportCPUPerGB(b, start, total)
		})
		if name != "lz4+enc" {
			continue
		}
		for _, tc := range []struct {
			sync bool
			pgm  *pgManifest
		}{{false, nil}, {true, nil}, {false, pgm}} {
			sync := tc.sync
			stage := "extract"
			if sync {
				stage += "+syncfs"
			}
			if tc.pgm != nil {
				stage += "+pgmanifest"
			}
			b.Run(stage+"/"+name, func(b *testing.B) {
				b.SetBytes(total)
				o := Options{Archive: a, TargetDir: dir, Parallel: 2, Logger: zerolog.Nop()}
				if err := o.validate(); err != nil {
					b.Fatal(err)
				}
				var cpu int64
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					target := filepath.Join(dir, "target")
					if err := os.RemoveAll(target); err != nil {
						b.Fatal(err)
					}
					if err := os.Mkdir(target, 0o700); err != nil {
						b.Fatal(err)
					}
					// Start from a clean page cache: the previous
					// target's pages written back.
					syncDir(b, dir)
					start := benchdata.CPUTime(b)
					b.StartTimer()
					benchRestoreOnce(b, o, target, m, sync, tc.pgm)
					b.StopTimer()
					cpu += int64(benchdata.CPUTime(b) - start)
					b.StartTimer()
				}
				b.ReportMetric(float64(cpu)/1e9/(float64(total)*float64(b.N)/1e9), "cpu-s/GB")
			})
		}
	}
}

// benchRestoreOnce restores m's chunks into target as Run does, syncing
// the file system at the end when sync is set, comparing each file with
// pgm when set.
func benchRestoreOnce(b *testing.B, o Options, target string, m *archive.Manifest, sync bool, pgm *pgManifest) {
	syncs, err := openDirs([]string{target})
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll(syncs)
	ex, err := newExtractor(target, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ex.close()
	ex.pgm = pgm
	if err := o.downloadChunks(context.Background(), o.Logger, o.Archive, ex, m, &Result{}); err != nil {
		b.Fatal(err)
	}
	if sync {
		if err := syncFS(syncs[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func syncDir(b *testing.B, dir string) {
	d, err := os.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if err := syncFS(d); err != nil {
		b.Fatal(err)
	}
}
