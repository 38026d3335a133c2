package basebackup

import (
	"slices"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRunLocal_ZstdLevelPerChunk: a local-tar backup at zstd's default
// level of a cluster with a table of random bytes (1 kB values, as
// encrypted or already compressed columns hold them) and a table of text
// rows stores the random table's chunk at level 1 (its compression-level
// metadata says so) and the text table's at the backup's level; the
// restored cluster holds the same rows.
func TestRunLocal_ZstdLevelPerChunk(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	ctx := testContext(t)
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, `create table rnd as select g as id,
		decode(string_agg(md5(g::text || ':' || i), '' order by i), 'hex') as b
		from generate_series(1, 8192) g, generate_series(1, 64) i group by g`)
	// Rows of text as scripts/bench-zstd.sh's "text" shape makes them.
	c.Exec(t, `create table txt as select g as id, 'customer ' || (g % 50000) || ' ' || md5((g % 50000)::text) as customer,
		'order ' || g || ' shipped to ' || (array['Berlin','Paris','Lisbon','Oslo','Rome'])[1 + g % 5] || ': ' ||
		repeat(substr(md5((g % 997)::text), 1, 12) || ' ', 1 + g % 6) || md5(g::text) as body
		from generate_series(1, 60000) g`)
	c.Exec(t, "checkpoint")
	a := encryptedArchive(t, compress.Zstd)
	info, err := Run(ctx, Options{
		ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeLocal, PGData: c.DataDir,
		Fast: true, ChunkSize: 6 << 20, Parallel: 2,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	_, files := readControl(t, a, info.Key)
	m, err := archive.ParseManifest(files[archive.ManifestName])
	if err != nil {
		t.Fatal(err)
	}
	members := chunkFiles(t, files[archive.ManifestName])
	level := func(table string) string {
		name := "pgdata/" + c.QueryString(t, "select pg_relation_filepath('"+table+"')")
		for i, fs := range members {
			if slices.Contains(fs, name) {
				obj, err := a.Store.Stat(ctx, a.Layout.ChunkKey(m.Chunks[i].ChunkFilename))
				if err != nil {
					t.Fatal(err)
				}
				return obj.Metadata[archive.MetaCompressionLevel]
			}
		}
		t.Fatalf("no chunk holds %s", name)
		return ""
	}
	if got := level("rnd"); got != "1" {
		t.Errorf("random bytes' chunk: compression-level %q, want 1", got)
	}
	if got := level("txt"); got != "0" {
		t.Errorf("text rows' chunk: compression-level %q, want 0", got)
	}
	archivetest.StoreArchivedWAL(t, c, walDir, a)
	want := tableDigests(t, c, "rnd", "txt")
	r := restoreAndStart(t, a, "", major, walDir, nil)
	checkTables(t, "restored", r, want)
}
