package basebackup

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

// plantBlob writes the large file hoard_test_blob of c, 300 KiB of b, and
// returns its bytes.
func plantBlob(t *testing.T, c *pgtest.Cluster, b string) []byte {
	t.Helper()
	data := []byte(strings.Repeat(b, 300<<10))
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	if err := os.WriteFile(blob, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, blob)
	return data
}

// TestRunDelta_PlantedObject: someone who can write to the bucket, without
// the keys, stores an object under the digest of a large file (its name is
// the BLAKE2s-256 of the file's bytes, which they know) before the next
// delta backup runs: garbage claiming the site's key, a truncated copy of
// the right object, or a validly encrypted object of other bytes (one of
// the site's own objects, copied under that name). No backup refers to it,
// so the backup reads it back, finds it does not hold the file, and
// stores the file's object over it: the backup restores, pg_verifybackup
// passes and the file has its bytes; the first also starts PostgreSQL on
// it and compares rows. The same with the public key only, which cannot
// read an object back: it stores over any it cannot trust. A planted
// object that does hold the file's bytes is reused as it is.
func TestRunDelta_PlantedObject(t *testing.T) {
	major := pgtest.Versions()[0]
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table t as select g as i, md5(g::text) as h from generate_series(1, 20000) g")
	c.Exec(t, "checkpoint")
	encode := func(t *testing.T, a *archive.Archive, key string, data []byte) {
		t.Helper()
		if _, err := a.Codec.Put(context.Background(), a.Store, key, bytes.NewReader(data), int64(len(data)), storage.Metadata{archive.MetaFormat: archive.FormatDeltaV2}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		pubOnly bool
		rows    bool
		valid   bool // the planted object holds the file's bytes
		plant   func(t *testing.T, a *archive.Archive, key string, data []byte)
	}{
		{name: "Garbage", rows: true, plant: func(t *testing.T, a *archive.Archive, key string, data []byte) {
			md := storage.Metadata{archive.MetaEncryptionKeyID: a.Codec.KeyID, archive.MetaCompressionAlgorithm: a.Codec.Compression, archive.MetaFormat: archive.FormatDeltaV2}
			if err := a.Store.Put(context.Background(), key, strings.NewReader(strings.Repeat("garbage ", 1000)), md); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "Truncated", plant: func(t *testing.T, a *archive.Archive, key string, data []byte) {
			encode(t, a, key, data)
			storetest.Rewrite(t, a.Store, key, func(b []byte, _ storage.Metadata) []byte { return b[:len(b)/2] })
		}},
		{name: "OtherContent", plant: func(t *testing.T, a *archive.Archive, key string, data []byte) {
			encode(t, a, key, []byte(strings.Repeat("x", len(data))))
		}},
		{name: "PublicKeyOnlyOtherContent", pubOnly: true, plant: func(t *testing.T, a *archive.Archive, key string, data []byte) {
			encode(t, a, key, []byte(strings.Repeat("x", len(data))))
		}},
		{name: "Valid", valid: true, plant: encode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			a := encryptedArchive(t, compress.Zstd)
			full := a.Codec
			data := plantBlob(t, c, tc.name)
			key := a.Layout.DeltaKey(deltaDigestOf(data))
			tc.plant(t, a, key, data)
			planted := deltaObjectsOf(t, a)[key]
			if tc.pubOnly {
				a.Codec = &archive.Codec{Compression: full.Compression, KeyID: full.KeyID, PublicKey: full.PublicKey, Host: full.Host}
			}
			opts := deltaOptions(t, c, a)
			opts.BasebackupMode = "delta"
			b, err := Run(ctx, opts)
			if err != nil {
				t.Fatalf("backup: %v", err)
			}
			a.Codec = full
			if f := deltaFiles(t, a, b)["hoard_test_blob"]; f.Hexdigest != deltaDigestOf(data) {
				t.Fatalf("manifest entry of the file: %+v", f)
			}
			if rewritten := deltaObjectsOf(t, a)[key] != planted; rewritten == tc.valid {
				t.Errorf("planted object holding the file's bytes %v, stored over %v", tc.valid, rewritten)
			}
			checkDeltaObjects(t, a)
			wantRows := tableDigests(t, c, "t")
			archivetest.StoreArchivedWAL(t, c, walDir, a)
			if tc.rows {
				r := restoreAndStart(t, a, b.Name, major, walDir, nil)
				checkTables(t, "restored", r, wantRows)
				if got, err := os.ReadFile(filepath.Join(r.DataDir, "hoard_test_blob")); err != nil || !bytes.Equal(got, data) {
					t.Errorf("restored hoard_test_blob: %d bytes (%v), want %d", len(got), err, len(data))
				}
				r.Stop(t)
				return
			}
			dir := filepath.Join(pgtest.TempDir(t), "data")
			if _, err := restore.Run(ctx, restore.Options{Archive: a, TargetDir: dir, Backup: b.Name, ArchiveOff: true, Logger: zerolog.Nop()}); err != nil {
				t.Fatalf("restore: %v", err)
			}
			verifyBackup(t, dir, major, false)
			if got, err := os.ReadFile(filepath.Join(dir, "hoard_test_blob")); err != nil || !bytes.Equal(got, data) {
				t.Errorf("restored hoard_test_blob: %d bytes (%v), want %d", len(got), err, len(data))
			}
		})
	}
}

// deltaOpenLog returns a store over st that records the keys of delta
// objects read.
func deltaOpenLog(st storage.Store) *storetest.OpenLog {
	return &storetest.OpenLog{Store: st, Match: func(key string) bool { return strings.Contains(key, "/"+archive.DeltaDir+"/") }}
}

// TestRunDelta_TrustedNotRead: an existing delta object that a backup of
// the site refers to is reused without being read: the unchanged files of
// the previous backup, and a file whose bytes came back to those of a
// backup before it (ABA), with the private key (the manifests) and with
// the public key only (the reference lists). An object no backup refers
// to is read back before it is reused.
func TestRunDelta_TrustedNotRead(t *testing.T) {
	major := pgtest.Versions()[0]
	c := pgtest.Start(t, pgtest.Options{Major: major})
	c.Exec(t, "create table t as select g as i, md5(g::text) as h from generate_series(1, 20000) g")
	c.Exec(t, "checkpoint")
	for _, pubOnly := range []bool{false, true} {
		name := "PrivateKey"
		if pubOnly {
			name = "PublicKeyOnly"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			a := encryptedArchive(t, compress.Snappy)
			store := deltaOpenLog(a.Store)
			a.Store = store
			opts := deltaOptions(t, c, a)
			opts.NoWait = true
			_, aKey := backupsABA(ctx, t, c, opts)
			if pubOnly {
				pub := *a.Codec
				pub.PrivateKeys = nil
				a.Codec = &pub
			}
			before := deltaObjectsOf(t, a)
			store.Reset()
			if _, err := Run(ctx, opts); err != nil {
				t.Fatal(err)
			}
			if keys := store.Keys(); len(keys) != 0 {
				t.Errorf("delta objects read though backups refer to them: %v", keys)
			}
			if after := deltaObjectsOf(t, a); after[aKey] != before[aKey] || after[aKey].IsZero() {
				t.Errorf("%s, which an older backup refers to, written again: %s, then %s", aKey, before[aKey], after[aKey])
			}
		})
	}
	t.Run("Unreferenced", func(t *testing.T) {
		ctx := testContext(t)
		a := encryptedArchive(t, compress.Snappy)
		store := deltaOpenLog(a.Store)
		a.Store = store
		data := plantBlob(t, c, "u")
		key := a.Layout.DeltaKey(deltaDigestOf(data))
		if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(data), int64(len(data)), storage.Metadata{archive.MetaFormat: archive.FormatDeltaV2}); err != nil {
			t.Fatal(err)
		}
		opts := deltaOptions(t, c, a)
		opts.NoWait = true
		_, err := Run(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if store.Count(key) == 0 {
			t.Errorf("%s, which no backup refers to, reused without being read back (read %v)", key, store.Keys())
		}
	})
}

// plantOnCreate is a store that, when asked to create key, first stores
// garbage there itself: a bucket writer that wins the race between the
// backup's look and its conditional create.
type plantOnCreate struct {
	storage.Store
	key     string
	planted bool
}

func (s *plantOnCreate) Create(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if key == s.key && !s.planted {
		s.planted = true
		if err := s.Store.Put(ctx, key, strings.NewReader("garbage"), md); err != nil {
			return err
		}
	}
	return s.Store.Create(ctx, key, r, md)
}

// TestRunDelta_PlantedDuringCreate: the object is planted after the
// backup looked for it and before its conditional create, which then
// finds it there: the backup reads it back and stores its own object
// over it (from the start of the staged file, which a create refused by
// S3 has read to its end), and the object then holds the file's bytes.
// On the local store and on MinIO.
func TestRunDelta_PlantedDuringCreate(t *testing.T) {
	major := pgtest.Versions()[0]
	c := pgtest.Start(t, pgtest.Options{Major: major})
	for _, kind := range []string{"Local", "S3"} {
		t.Run(kind, func(t *testing.T) {
			ctx := testContext(t)
			a := encryptedArchive(t, compress.Zstd)
			if kind == "S3" {
				st, err := storage.Open(ctx, storetest.MinIO(t))
				if err != nil {
					t.Fatal(err)
				}
				a = archivetest.New(t, st, a.Codec)
			}
			data := plantBlob(t, c, "during create "+kind)
			key := a.Layout.DeltaKey(deltaDigestOf(data))
			store := &plantOnCreate{Store: a.Store, key: key}
			a.Store = store
			opts := deltaOptions(t, c, a)
			opts.NoWait = true
			b, err := Run(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !store.planted {
				t.Fatalf("%s was never created", key)
			}
			if f := deltaFiles(t, a, b)["hoard_test_blob"]; f.Hexdigest != deltaDigestOf(data) {
				t.Fatalf("manifest entry of the file: %+v", f)
			}
			got, _ := archivetest.Decode(t, a.Codec, a.Store, key)
			if !bytes.Equal(got, data) {
				t.Errorf("%s decodes to %d bytes, not the file's %d", key, len(got), len(data))
			}
		})
	}
}

// TestRunDelta_UnlistedObjectStoredAgain: an older delta backup with no
// reference list (PGHoard's, an older hoard's) refers to an object that a
// delta backup with the public key only cannot trust, so it stores the
// file's bytes again, encoded otherwise (here with another compression,
// as PGHoard's encoding differs from hoard's): the older manifest's
// stored_file_size no longer matches. The object still holds the file's
// bytes, so the older backup is sound: CheckBackup, quick and full, and
// retention with the private key do not call it damaged. An object of
// that stored size that does not hold the file's bytes still fails.
func TestRunDelta_UnlistedObjectStoredAgain(t *testing.T) {
	major := pgtest.Versions()[0]
	c := pgtest.Start(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table t as select g as i, md5(g::text) as h from generate_series(1, 20000) g")
	c.Exec(t, "checkpoint")
	ctx := testContext(t)
	data := plantBlob(t, c, "o")
	a := encryptedArchive(t, compress.LZ4)
	full := a.Codec
	opts := deltaOptions(t, c, a)
	opts.BasebackupMode = "delta"
	older, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("first backup: %v", err)
	}
	if err := a.Store.Delete(ctx, a.Layout.DeltaRefsKey(older.Name)); err != nil {
		t.Fatal(err)
	}
	key := a.Layout.DeltaKey(deltaDigestOf(data))
	before, err := a.Store.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	a.Codec = &archive.Codec{Compression: compress.Zstd, KeyID: full.KeyID, PublicKey: full.PublicKey, Host: full.Host}
	if _, err := Run(ctx, opts); err != nil {
		t.Fatalf("second backup, public key only: %v", err)
	}
	a.Codec = &archive.Codec{Compression: compress.Zstd, KeyID: full.KeyID, PublicKey: full.PublicKey,
		PrivateKeys: full.PrivateKeys, Host: full.Host}
	after, err := a.Store.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size == before.Size {
		t.Fatalf("%s stored again with the same size %d: the test proves nothing", key, after.Size)
	}
	for _, full := range []bool{false, true} {
		if err := a.CheckBackup(ctx, older, full); err != nil {
			t.Errorf("CheckBackup(full=%v) of %s: %v", full, older.Name, err)
		}
	}
	plan, err := a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 2}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Damaged) != 0 {
		t.Errorf("retention calls backups damaged: %v", plan.Damaged)
	}

	// Other bytes under that name: not sound, whatever the size.
	other := []byte(strings.Repeat("x", len(data)))
	if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(other), int64(len(other)), storage.Metadata{archive.MetaFormat: archive.FormatDeltaV2}); err != nil {
		t.Fatal(err)
	}
	for _, full := range []bool{false, true} {
		if err := a.CheckBackup(ctx, older, full); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("CheckBackup(full=%v) with other bytes under %s: %v", full, key, err)
		}
	}
}
