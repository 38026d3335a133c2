package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pghoardtest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// realPGHoard opens an archive a real PGHoard made (testdata/pghoard-real,
// see make-fixtures.sh there): its store as PGHoard's local storage wrote
// it, read in place, with the site's private key.
func realPGHoard(t testing.TB, mode string) (*archive.Archive, string) {
	t.Helper()
	dir := pghoardtest.RealDir(mode)
	return archivetest.New(t, storage.NewLocal(filepath.Join(dir, "store")), &archive.Codec{PrivateKeys: pghoardtest.Keys(t, dir)}), dir
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
			checkGuarded(t, target)
			controldataGuarded(t, target)
			if mode == "delta" {
				// The fixture's one bundle and 58 files from delta
				// objects (29 distinct: identical files share one).
				if res.Chunks != 59 {
					t.Errorf("restored %d bundles and delta object files, want 59", res.Chunks)
				}
				// PGHoard's delta backups carry no backup_manifest.
				if res.PGManifestFiles != 0 {
					t.Errorf("restore compared %d files with backup_manifest, want none", res.PGManifestFiles)
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

// TestRun_PGHoardRealTimeTarget: a real PGHoard basic backup, which
// records no end, named with --basebackup, restores to a time target:
// PostgreSQL stops before the archive's one commit after the backup
// (2026-12-02 03:56:37.707939 UTC, the last 50 rows of t in rows.txt)
// and is promoted with the 100 rows the backup held. The automatic choice
// refuses the same target, naming --basebackup.
func TestRun_PGHoardRealTimeTarget(t *testing.T) {
	a, _ := realPGHoard(t, "basic")
	ctx := context.Background()
	bs, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || !bs[0].EndTime.IsZero() {
		t.Fatalf("listed %+v, want one backup with no end time", bs)
	}
	target := Target{Time: time.Date(2026, 12, 2, 3, 56, 35, 0, time.UTC)}
	dir := filepath.Join(pgtest.TempDir(t), "data")
	if _, err := Run(ctx, Options{Archive: a, TargetDir: dir, Target: target, Logger: zerolog.Nop()}); !errors.Is(err, archive.ErrNoBackup) ||
		!strings.Contains(err.Error(), "--basebackup NAME") {
		t.Fatalf("automatic choice: %v, want ErrNoBackup naming --basebackup NAME", err)
	}
	walDir := decodeWAL(t, a)
	if _, err := Run(ctx, Options{Archive: a, TargetDir: dir, Backup: bs[0].Name, Target: target,
		RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()}); err != nil {
		t.Fatal(err)
	}
	c := pgtest.StartDataDir(t, 15, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got, want := c.QueryString(t, "select count(*)::text || ' ' || max(id)::text from t"), "100 100"; got != want {
		t.Errorf("restored rows (count, max id) %q, want %q", got, want)
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

// TestRun_SingleTarTablespaceMap takes a backup of a real PostgreSQL 15
// cluster with a tablespace as PGHoard's basic mode does (pg_basebackup
// --format tar --wal-method none) and stores its base.tar alone, as
// PGHoard does: the server sent the tablespace_map, naming the
// tablespace's directory, instead of a pg_tblspc link, and the
// tablespace's files went to a tar of their own. Restore must refuse it,
// naming the map, and leave no directory PostgreSQL could start on:
// restored, the map would make PostgreSQL link the tablespace to the
// source's own directory and replay WAL into it.
func TestRun_SingleTarTablespaceMap(t *testing.T) {
	if testing.Short() {
		t.Skip("real cluster")
	}
	const major = pgtest.DebianMajor
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major})
	spcDir := pgtest.TempDir(t)
	src.Exec(t, "create tablespace other location '"+spcDir+"'")
	src.Exec(t, "create table in_spc (id int) tablespace other")
	src.Exec(t, "insert into in_spc select generate_series(1, 1000)")
	out := pgtest.TempDir(t)
	cmd := exec.Command(pgtest.Tool(t, "pg_basebackup"), "-h", src.Host, "-p", strconv.Itoa(src.Port), "-U", "postgres",
		"-D", out, "--format", "tar", "--wal-method", "none", "-c", "fast")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, b)
	}
	data, err := os.ReadFile(filepath.Join(out, "base.tar"))
	if err != nil {
		t.Fatal(err)
	}
	var label, spcMap string
	testio.EachTarMember(t, "base.tar", bytes.NewReader(data), func(h *tar.Header, r io.Reader) {
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.Name == "backup_label":
			label = string(b)
		case h.Name == "tablespace_map":
			spcMap = string(b)
		case strings.HasPrefix(h.Name, "pg_tblspc/") && h.Name != "pg_tblspc/":
			t.Errorf("base.tar holds %s (%c)", h.Name, h.Typeflag)
		}
	})
	if !strings.Contains(spcMap, spcDir) {
		t.Fatalf("base.tar's tablespace_map %q does not name %s", spcMap, spcDir)
	}
	m := regexp.MustCompile(`START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)`).FindStringSubmatch(label)
	if m == nil {
		t.Fatalf("backup_label %q", label)
	}
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{Compression: "zstd"}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	name := "2026-12-02_03-56_0"
	md := storage.Metadata{archive.MetaStartTime: "2026-12-02T03:56:30+00:00", archive.MetaStartWALSegment: m[1],
		"basebackup-mode": "basic", "pg-version": strconv.Itoa(major * 10000)}
	if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.BackupKey(name), bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, err = Run(context.Background(), Options{Archive: a, TargetDir: dir, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
	if !errors.Is(err, ErrUnsupportedFormat) || !strings.Contains(err.Error(), "tablespace_map") || !errors.Is(err, ErrIncomplete) {
		t.Fatalf("restore of a basic backup with a tablespace: %v, want ErrUnsupportedFormat naming tablespace_map, ErrIncomplete", err)
	}
	for _, f := range []string{"global/pg_control", "tablespace_map"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s restored", f)
		}
	}
}
