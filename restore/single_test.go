package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pghoardtest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// realPGHoard opens an archive a real PGHoard made (testdata/pghoard-real,
// see make-fixtures.sh there): its store as PGHoard's local storage wrote
// it, read in place, with the site's private key.
func realPGHoard(t testing.TB, mode string) (*archive.Archive, string) {
	t.Helper()
	dir := pghoardtest.RealDir(mode)
	return &archive.Archive{
		Store:  storage.NewLocal(filepath.Join(dir, "store")),
		Codec:  &archive.Codec{PrivateKeys: pghoardtest.Keys(t, dir)},
		Layout: archive.Layout{Prefix: "site"}, Site: "site",
	}, dir
}

// TestRun_PGHoardReal restores the basebackups a real PGHoard 2.7 took
// in its basic and pipe modes (one pg_basebackup tar) and its delta mode
// (pghoard-delta-v2: a bundle of small files, basebackup_delta/<hash>
// objects and files embedded in the manifest), zstd, encrypted, of a
// PostgreSQL 15 cluster, starts PostgreSQL on each and compares table t
// with the rows the source held at the end of the archived WAL. The WAL
// is decoded from the same archive.
func TestRun_PGHoardReal(t *testing.T) {
	for _, mode := range []string{"basic", "pipe", "delta"} {
		t.Run(mode, func(t *testing.T) {
			a, dir := realPGHoard(t, mode)
			want, err := os.ReadFile(filepath.Join(dir, "rows.txt"))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			bs, err := a.ListBackups(ctx)
			if err != nil {
				t.Fatal(err)
			}
			format := ""
			if mode == "delta" {
				format = archive.FormatDeltaV2
			}
			if len(bs) != 1 || bs[0].Format != format || bs[0].BasebackupMode != mode {
				t.Fatalf("listed %+v, want one %s backup of format %q", bs, mode, format)
			}
			walDir := decodeWAL(t, a)
			target := filepath.Join(pgtest.TempDir(t), "data")
			res, err := Run(ctx, Options{Archive: a, TargetDir: target, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			if res.PGMajor != 15 {
				t.Errorf("restored PG %d, want 15", res.PGMajor)
			}
			if mode == "delta" {
				// The fixture's one bundle and 58 files from delta
				// objects (29 distinct: identical files share one).
				if res.Chunks != 59 {
					t.Errorf("restored %d bundles and delta object files, want 59", res.Chunks)
				}
			} else {
				if res.Chunks != 1 {
					t.Errorf("restored %d chunks, want 1", res.Chunks)
				}
				if n, _ := originalSize(bs[0]); res.Bytes != n || bs[0].TotalSizePlain != n {
					t.Errorf("restored %d bytes, listed %d, original-file-size %d", res.Bytes, bs[0].TotalSizePlain, n)
				}
			}
			c := pgtest.StartDataDir(t, 15, target, nil)
			c.WaitRecoveryDone(t, 3*time.Minute)
			got := c.QueryString(t, "select count(*)::text || ': ' || string_agg(id::text, ',' order by id) from t")
			if got != strings.TrimSpace(string(want)) {
				t.Errorf("restored rows %q, want %q", got, want)
			}
		})
	}
}

// decodeWAL writes every archived WAL segment of a, decoded, into a
// directory the server's user can read, for a cp restore_command.
func decodeWAL(t testing.TB, a *archive.Archive) string {
	t.Helper()
	ctx := context.Background()
	dir := pgtest.TempDir(t)
	files, err := a.ListWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, _ := archivetest.Decode(t, a.Codec, a.Store, f.Key)
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pgtest.Chown(t, p)
	}
	return dir
}

// TestRun_PGHoardSingleTarErrTampered: one byte flipped in the middle of
// a real PGHoard basic backup's object fails the restore, naming the
// object, and leaves no pg_control: PostgreSQL will not start on what was
// written.
func TestRun_PGHoardSingleTarErrTampered(t *testing.T) {
	ctx := context.Background()
	a := realPGHoardIn(t, "basic", func(key string, data []byte, md storage.Metadata) ([]byte, storage.Metadata) {
		if strings.HasPrefix(key, "site/basebackup/") {
			data[len(data)/2] ^= 0x40
		}
		return data, md
	})
	target := filepath.Join(t.TempDir(), "data")
	_, err := Run(ctx, Options{Archive: a, TargetDir: target, RestoreCommand: "false", Logger: zerolog.Nop()})
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "site/basebackup/") {
		t.Fatalf("Run = %v, want ErrIncomplete naming the object", err)
	}
	if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pg_control after a failed restore: %v", err)
	}
}
