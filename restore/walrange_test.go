package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_RangeWAL: a backup of a real cluster in an encrypted site on a
// local store, its WAL stored as wal-push stores it. A segment of the
// backup's consistency range (its start segment) that is tampered with,
// truncated, replaced by a plaintext copy or missing was found by
// wal-fetch only when PostgreSQL asked for it, after the data directory
// was written: Run listed the archive and nothing more. Now Run downloads
// and checks each as wal-fetch does while it writes the directory, and
// refuses the restore naming the object, before pg_control and the
// recovery configuration are written. The sound restore keeps the checked
// segments in pg_wal/hoard-prefetch, where wal-fetch (FetchWAL with the
// spool, through a store that counts downloads) takes them without a
// download; PostgreSQL then recovers the directory and its rows compare.
func TestRun_RangeWAL(t *testing.T) {
	for _, major := range []int{15, 17} {
		t.Run("PG"+strconv.Itoa(major), func(t *testing.T) { testRunRangeWAL(t, major) })
	}
}

func testRunRangeWAL(t *testing.T, major int) {
	ctx := context.Background()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major})
	src.Exec(t, "create table t (id int primary key)")
	src.Exec(t, "insert into t select generate_series(1, 1000)")
	log := &storetest.OpenLog{Store: storage.NewLocal(filepath.Join(pgtest.TempDir(t), "store"))}
	c := &archive.Codec{Compression: "zstd"}
	archivetest.AddKeys(t, c)
	a := archivetest.New(t, log, c)
	b, err := basebackup.Run(ctx, basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	src.Exec(t, "insert into t select generate_series(1001, 1500)")
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	seg := b.StartWALSegment
	key := a.Layout.WALKey(seg)
	stored, obj := storetest.Read(t, log.Store, key)
	plain, err := os.ReadFile(filepath.Join(walDir, seg))
	if err != nil {
		t.Fatal(err)
	}
	put := func(t *testing.T, data []byte, md storage.Metadata) {
		t.Helper()
		if err := log.Store.Put(ctx, key, bytes.NewReader(data), md); err != nil {
			t.Fatal(err)
		}
	}
	options := func(t *testing.T, dir string) Options {
		f, err := NewWALFetch("", "site")
		if err != nil {
			t.Fatal(err)
		}
		f.Spool = true
		return Options{Archive: a, TargetDir: dir, WALFetch: f, Logger: zerolog.Nop()}
	}
	cases := []struct {
		name   string
		damage func(t *testing.T)
		want   error
	}{
		{"Tampered", func(t *testing.T) { storetest.Tamper(t, log.Store, key) }, ErrDamagedWAL},
		{"Truncated", func(t *testing.T) { put(t, stored[:len(stored)/2], obj.Metadata) }, ErrDamagedWAL},
		// What someone without the key can store: a segment's bytes,
		// unencrypted, under its name.
		{"Plaintext", func(t *testing.T) { put(t, plain, nil) }, ErrDamagedWAL},
		{"Missing", func(t *testing.T) {
			if err := log.Store.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}, ErrMissingWAL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage(t)
			t.Cleanup(func() { put(t, stored, obj.Metadata) })
			dir := filepath.Join(pgtest.TempDir(t), "data")
			_, err := Run(ctx, options(t, dir))
			if !errors.Is(err, tc.want) {
				t.Fatalf("restore with %s %s: %v, want %v", strings.ToLower(tc.name), key, err, tc.want)
			}
			if !strings.Contains(err.Error(), seg) {
				t.Errorf("error %q does not name %s", err, seg)
			}
			for _, f := range []string{"recovery.signal", "global/pg_control"} {
				if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
					t.Errorf("the refused restore wrote %s", f)
				}
			}
		})
	}

	t.Run("Sound", func(t *testing.T) {
		dir := filepath.Join(pgtest.TempDir(t), "data")
		res, err := Run(ctx, options(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if res.WALChecked == 0 || len(res.WALSpooled) != res.WALChecked {
			t.Fatalf("checked %d segments of the backup's range, kept %v in the spool: want all of them kept", res.WALChecked, res.WALSpooled)
		}
		// wal-fetch's call for each: taken from the spool, no download.
		spool := filepath.Join(dir, "pg_wal", archive.SpoolDirName)
		dest := filepath.Join(dir, "pg_wal", "RECOVERYXLOG")
		log.Reset()
		for _, name := range res.WALSpooled {
			if err := a.FetchWAL(ctx, name, dest, archive.FetchOptions{Spool: spool}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(walDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("wal-fetch delivered %s from the spool with other bytes than the server archived", name)
			}
		}
		if keys := log.Keys(); len(keys) > 0 {
			t.Errorf("wal-fetch downloaded %v, which the restore had checked and kept", keys)
		}
		if err := os.Remove(dest); err != nil {
			t.Fatal(err)
		}
		// The restore_command is this test's binary: PostgreSQL reads the
		// WAL from the cp archive instead (wal-fetch itself is the
		// end-to-end tests' business).
		conf, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conf.WriteString("restore_command = 'cp " + walDir + "/%f %p'\n")
		if cerr := conf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		pg := pgtest.StartDataDir(t, major, dir, nil)
		pg.WaitRecoveryDone(t, 3*time.Minute)
		if got := pg.QueryString(t, "select count(*)::text from t"); got != "1500" {
			t.Errorf("restored t has %s rows, want 1500", got)
		}
	})
}

// TestRun_RangeWALUnreadable: the storage fails to give a segment of the
// backup's consistency range (down, a connection cut). The restore stops,
// as it must, but its error offered only the advice for a damaged segment
// (store a good copy), which does not fit a storage that did not answer:
// it must say to run again once the storage answers, too.
func TestRun_RangeWALUnreadable(t *testing.T) {
	for _, midway := range []bool{false, true} {
		t.Run(strconv.FormatBool(midway), func(t *testing.T) {
			a := memArchive(t, true)
			hostile.Put(t, a, hostile.Backup{Name: olderBackup, Signed: true})
			a.Store = downStore{Store: a.Store, key: a.Layout.WALKey(hostile.StartSegment), err: errors.New("connection refused"), midway: midway}
			e := hostile.NewEnv(t)
			_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if err == nil {
				t.Fatal("restore succeeded with a range segment the storage does not give")
			}
			for _, w := range []string{hostile.StartSegment, "connection refused", "run again once it answers"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
