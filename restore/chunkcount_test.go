package restore

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/storage"
)

// dropLastChunk leaves the last chunk out of a manifest (it stays
// stored): the files it holds are not restored.
func dropLastChunk(m *archive.Manifest) { m.Chunks = m.Chunks[:len(m.Chunks)-1] }

// TestRun_ErrManifestFewerChunks: a control object whose manifest lists
// fewer chunks than the backup's metadata counts (hoard-chunk-count)
// would restore a cluster without the files of the chunks left out,
// which PostgreSQL may start on all the same. Restore refuses it before
// it writes anything, naming the backup and both numbers: a signed backup
// in a site with keys (only a writer holding the key makes one) and a
// backup in a site without keys, where verify compares them too.
func TestRun_ErrManifestFewerChunks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keys   bool
		signed bool
	}{
		{"Signed", true, true},
		{"NoKeys", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &archive.Codec{Compression: compress.Zstd}
			if tc.keys {
				archivetest.AddKeys(t, c)
			}
			a := archivetest.New(t, storage.NewMem(), c)
			st := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_03-00_0", Signed: tc.signed,
				Chunks: [][]hostile.Member{{{Name: "pgdata/base/1/2222", Body: strings.Repeat("x", 8192)}}}, Manifest: dropLastChunk})
			e := hostile.NewEnv(t)
			_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(),
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if !errors.Is(err, ErrMissingChunks) {
				t.Fatalf("restore of %s, its manifest without the chunk %s: %v, want ErrMissingChunks", st.Name, st.ChunkKeys[1], err)
			}
			for _, want := range []string{st.Name, st.ControlKey, "lists 1 of the 2 chunks", "--basebackup", "hoard verify"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if errors.Is(err, ErrIncomplete) {
				t.Errorf("error %v: refused after writing", err)
			}
			if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
				t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
			}
		})
	}
}

// TestRun_ChunkCountNotCompared: a manifest that lists more chunks than
// the metadata counts restores every chunk it lists (verify calls it a
// problem, not broken); a count altered without the key (the metadata no
// longer authenticates) is not compared, so that it cannot make restore
// refuse a sound backup. Both restore the files of every listed chunk.
func TestRun_ChunkCountNotCompared(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keys  bool
		count string
	}{
		{"More", false, "1"},
		{"Altered", true, "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &archive.Codec{Compression: compress.Zstd}
			if tc.keys {
				archivetest.AddKeys(t, c)
			}
			a := archivetest.New(t, storage.NewMem(), c)
			st := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_03-00_0", Signed: tc.keys,
				Chunks: [][]hostile.Member{{{Name: "pgdata/base/1/2222", Body: strings.Repeat("x", 8192)}}}})
			ctx := context.Background()
			rc, o, err := a.Store.Open(ctx, st.ControlKey)
			if err != nil {
				t.Fatal(err)
			}
			md := maps.Clone(o.Metadata)
			md[archive.MetaChunkCount] = tc.count
			err = a.Store.Put(ctx, st.ControlKey, rc, md)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			e := hostile.NewEnv(t)
			if _, err := Run(ctx, Options{Archive: a, TargetDir: e.Target(), Backup: st.Name,
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()}); err != nil {
				t.Fatalf("restore of %s with count %s: %v", st.Name, tc.count, err)
			}
			for _, name := range []string{"base/1/1259", "base/1/2222", "global/pg_control"} {
				if _, err := os.Stat(filepath.Join(e.Target(), name)); err != nil {
					t.Errorf("%s not restored: %v", name, err)
				}
			}
		})
	}
}
