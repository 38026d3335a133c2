package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

var (
	walKeyOnce sync.Once
	walKey     *rsa.PrivateKey
)

// walTestArchive returns an archive of site "site" in a fresh in-memory
// store, snappy-compressed and, when encrypted, encrypted.
func walTestArchive(tb testing.TB, encrypted bool) *Archive {
	tb.Helper()
	a := &Archive{
		Store:  storage.NewMem(),
		Codec:  &Codec{Compression: compress.Snappy, Host: "test"},
		Layout: Layout{Prefix: "site"},
		Site:   "site",
	}
	if encrypted {
		walKeyOnce.Do(func() {
			var err error
			if walKey, err = crypto.GenerateKey(2048); err != nil {
				panic(err)
			}
		})
		a.Codec.KeyID = "k1"
		a.Codec.PublicKey = &walKey.PublicKey
		a.Codec.PrivateKeys = map[string]*rsa.PrivateKey{"k1": walKey}
	}
	tb.Cleanup(func() { a.Store.Close() })
	return a
}

// writeWALFile writes data as dir/name and returns its path.
func writeWALFile(tb testing.TB, dir, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// storedPlain returns the decoded content and metadata of key.
func storedPlain(tb testing.TB, a *Archive, key string) ([]byte, storage.Metadata) {
	tb.Helper()
	rc, md, err := a.Codec.Open(context.Background(), a.Store, key)
	if err != nil {
		tb.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		tb.Fatal(err)
	}
	return b, md
}

func sha1Hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

func TestArchive_PushWAL(t *testing.T) {
	ctx := context.Background()
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		dir := t.TempDir()
		name := "000000010000000000000003"
		data := waltest.Segment(t, name, 16<<20, 3)
		res, err := a.PushWAL(ctx, writeWALFile(t, dir, name, data), PushOptions{SystemID: testSystemID})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Uploaded || res.Key != "site/xlog/"+name || res.SegmentSize != 16<<20 || res.PGVersion != 150000 {
			t.Fatalf("result %+v", res)
		}
		got, md := storedPlain(t, a, res.Key)
		if !bytes.Equal(got, data) {
			t.Fatal("stored segment differs")
		}
		want := map[string]string{
			MetaHash: sha1Hex(data), MetaHashAlgorithm: "sha1", MetaPGVersion: "150000",
			MetaOriginalFileSize: "16777216", MetaCompressionAlgorithm: "snappy", MetaHost: "test",
		}
		if encrypted {
			want[MetaEncryptionKeyID] = "k1"
		}
		for k, v := range want {
			if md[k] != v {
				t.Errorf("encrypted=%v: metadata %s = %q, want %q", encrypted, k, md[k], v)
			}
		}
	}
}

func TestArchive_PushWAL_Kinds(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	dir := t.TempDir()
	files := map[string][]byte{
		"00000002.history":                         []byte("1\t0/3000000\tno recovery target specified\n"),
		"000000010000000000000002.00000028.backup": []byte("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"),
		"000000010000000000000004.partial":         waltest.Segment(t, "000000010000000000000004", 1<<20, 4)[:100000],
	}
	keys := map[string]string{
		"00000002.history":                         "site/timeline/00000002.history",
		"000000010000000000000002.00000028.backup": "site/xlog/000000010000000000000002.00000028.backup",
		"000000010000000000000004.partial":         "site/xlog/000000010000000000000004.partial",
	}
	for name, data := range files {
		res, err := a.PushWAL(ctx, writeWALFile(t, dir, name, data), PushOptions{PGVersion: 160002, HashAlgorithm: "sha256"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Key != keys[name] {
			t.Errorf("%s stored as %s, want %s", name, res.Key, keys[name])
		}
		got, md := storedPlain(t, a, res.Key)
		if !bytes.Equal(got, data) {
			t.Errorf("%s: stored content differs", name)
		}
		if md[MetaHashAlgorithm] != "sha256" || md[MetaPGVersion] != "160002" || len(md[MetaHash]) != 64 {
			t.Errorf("%s: metadata %v", name, md)
		}
	}
}

func TestArchive_PushWAL_AlreadyArchived(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	name := "000000010000000000000003"
	p := writeWALFile(t, t.TempDir(), name, waltest.Segment(t, name, 1<<20, 3))
	if _, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID}); err != nil {
		t.Fatal(err)
	}
	before, err := a.Store.Stat(ctx, "site/xlog/"+name)
	if err != nil {
		t.Fatal(err)
	}
	// A second push, even with another hash algorithm, finds the same bytes.
	res, err := a.PushWAL(ctx, p, PushOptions{HashAlgorithm: "sha512"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded {
		t.Fatal("identical segment uploaded again")
	}
	after, err := a.Store.Stat(ctx, "site/xlog/"+name)
	if err != nil {
		t.Fatal(err)
	}
	if after.Metadata[MetaHashAlgorithm] != "sha1" || after.Size != before.Size {
		t.Fatalf("object changed: %v", after)
	}
}

// syncStore records the keys Sync was asked for.
type syncStore struct {
	storage.Store
	mu   sync.Mutex
	keys []string
}

func (s *syncStore) Sync(ctx context.Context, key string) error {
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return storage.Sync(ctx, s.Store, key)
}

// A push that finds its file already archived makes the stored object
// durable before reporting success: the push that stored it may have died
// after its renames and before its fsyncs. The same for a .partial copy
// that did not change.
func TestArchive_PushWAL_AlreadyArchivedSyncs(t *testing.T) {
	ctx := context.Background()
	st := &syncStore{Store: storage.NewLocal(t.TempDir())}
	a := &Archive{Store: st, Codec: &Codec{Compression: compress.Snappy}, Layout: Layout{Prefix: "site"}, Site: "site"}
	name := "000000010000000000000003"
	dir := t.TempDir()
	seg := waltest.Segment(t, name, 1<<20, 3)
	for _, p := range []string{writeWALFile(t, dir, name, seg), writeWALFile(t, dir, name+".partial", seg)} {
		put := a.PushWAL
		if strings.HasSuffix(p, ".partial") {
			put = a.PutPartialWAL
		}
		if _, err := put(ctx, p, PushOptions{SystemID: testSystemID}); err != nil {
			t.Fatal(err)
		}
		st.keys = nil
		res, err := put(ctx, p, PushOptions{SystemID: testSystemID})
		if err != nil {
			t.Fatal(err)
		}
		if res.Uploaded {
			t.Fatalf("%s stored again", p)
		}
		if want := []string{res.Key}; !slices.Equal(st.keys, want) {
			t.Errorf("%s already archived: synced %v, want %v", filepath.Base(p), st.keys, want)
		}
	}
}

func TestArchive_PushWAL_ErrConflict(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	name := "000000010000000000000003"
	first := waltest.Segment(t, name, 1<<20, 3)
	if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, first), PushOptions{SystemID: testSystemID}); err != nil {
		t.Fatal(err)
	}
	other := waltest.Segment(t, name, 1<<20, 4)
	_, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, other), PushOptions{SystemID: testSystemID})
	if !errors.Is(err, ErrWALConflict) {
		t.Fatalf("err = %v, want ErrWALConflict", err)
	}
	for _, h := range []string{sha1Hex(first), sha1Hex(other)} {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("error %q does not name hash %s", err, h)
		}
	}
	if got, _ := storedPlain(t, a, "site/xlog/"+name); !bytes.Equal(got, first) {
		t.Fatal("archived segment was overwritten")
	}
}

// PGHoard stores timeline files without a hash: they are compared by
// content.
func TestArchive_PushWAL_NoStoredHash(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	name := "00000002.history"
	content := []byte("1\t0/3000000\tno recovery target specified\n")
	if _, err := a.Codec.Put(ctx, a.Store, "site/timeline/"+name, bytes.NewReader(content), int64(len(content)), nil); err != nil {
		t.Fatal(err)
	}
	res, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, content), PushOptions{SystemID: testSystemID})
	if err != nil || res.Uploaded {
		t.Fatalf("same content: uploaded=%v err=%v", res.Uploaded, err)
	}
	longer := append(append([]byte{}, content...), "2\t0/5000000\tno recovery target specified\n"...)
	if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, longer), PushOptions{SystemID: testSystemID}); !errors.Is(err, ErrWALConflict) {
		t.Fatalf("longer content: err = %v, want ErrWALConflict", err)
	}
	if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, content[:10]), PushOptions{SystemID: testSystemID}); !errors.Is(err, ErrWALConflict) {
		t.Fatalf("shorter content: err = %v, want ErrWALConflict", err)
	}
	if got, _ := storedPlain(t, a, "site/timeline/"+name); !bytes.Equal(got, content) {
		t.Fatal("timeline file was overwritten")
	}
}

func TestArchive_PushWAL_ErrRefused(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	dir := t.TempDir()
	seg := waltest.Segment(t, "000000010000000000000003", 1<<20, 3)
	tests := []struct {
		name    string
		file    string
		data    []byte
		wantErr string
	}{
		{"ErrRecycled", "000000010000000000000004", seg, "segment name 000000010000000000000004 but page address 0/300000"},
		{"ErrTruncated", "000000010000000000000003", seg[:1<<19], "truncated or padded"},
		{"ErrUnknownName", "RECOVERYXLOG", seg, `"RECOVERYXLOG" is not a WAL segment`},
		{"ErrLowercase", "00000001000000000000000a", seg, "is not a WAL segment"},
		{"ErrEmptySegment", "000000010000000000000005", nil, "bad WAL page header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeWALFile(t, dir, tt.file, tt.data)
			_, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
			if _, err := a.Store.Stat(ctx, a.Layout.WALKey(tt.file)); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("refused file was stored (stat: %v)", err)
			}
		})
	}
	if _, err := a.PushWAL(ctx, filepath.Join(dir, "000000010000000000000009"), PushOptions{SystemID: testSystemID}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
	if _, err := a.PushWAL(ctx, writeWALFile(t, dir, "000000010000000000000003", seg), PushOptions{HashAlgorithm: "crc32"}); err == nil {
		t.Fatal("unknown hash algorithm accepted")
	}
}

// Segments above wholeFileLimit are streamed from disk twice; a file that
// changes between the reads is not stored.
func TestArchive_PushWAL_Large(t *testing.T) {
	ctx := context.Background()
	old := wholeFileLimit
	wholeFileLimit = 64 << 10
	t.Cleanup(func() { wholeFileLimit = old })

	a := walTestArchive(t, true)
	name := "000000010000000000000003"
	data := waltest.Segment(t, name, 1<<20, 3)
	p := writeWALFile(t, t.TempDir(), name, data)
	res, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID})
	if err != nil {
		t.Fatal(err)
	}
	if got, md := storedPlain(t, a, res.Key); !bytes.Equal(got, data) || md[MetaHash] != sha1Hex(data) {
		t.Fatal("large segment stored wrongly")
	}
	if _, err := a.PushWAL(ctx, p, PushOptions{SystemID: testSystemID}); err != nil {
		t.Fatalf("second push: %v", err)
	}

	src, err := openWALFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r, err := src.verifiedReader("sha1", sha1Hex(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, waltest.Segment(t, name, 1<<20, 4), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); err == nil || !strings.Contains(err.Error(), "changed while being archived") {
		t.Fatalf("changed file: err = %v", err)
	}
}

// archivedByPostgres runs a cluster whose archive_command copies WAL into a
// directory, switches WAL a few times, and returns that directory once it
// holds the segment the last switch closed, with the cluster stopped. The
// count of archived segments is no such wait: the inserts fill segments
// of their own (1 MiB ones), so the count reached switches while the
// archiver had yet to copy the last segments; and cp writes in place, so
// the archiver must be stopped before the test reads the directory.
func archivedByPostgres(t *testing.T, opts pgtest.Options, switches int) string {
	t.Helper()
	dir := pgtest.TempDir(t)
	opts.Conf = map[string]string{"archive_mode": "on", "archive_command": "cp %p " + dir + "/%f"}
	c := pgtest.Start(t, opts)
	c.Exec(t, "create table t as select i, md5(i::text) as s from generate_series(1, 20000) as i")
	var last string
	for i := 0; i < switches; i++ {
		c.Exec(t, "insert into t select i, md5(i::text) from generate_series(1, 5000) as i")
		last = c.SwitchWAL(t)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for c.QueryString(t, "select coalesce(last_archived_wal, '') from pg_stat_archiver") < last {
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL did not archive %s in 2 minutes", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Stop(t)
	return dir
}

// Real segments written by every PostgreSQL major under test go through
// PushWAL and FetchWAL unchanged; pg_waldump reads a fetched PostgreSQL 15
// segment.
func TestArchive_PushWAL_RealSegments(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("PG%d", major), func(t *testing.T) {
			dir := archivedByPostgres(t, pgtest.Options{Major: major}, 3)
			pushFetchDir(t, dir, major, 16<<20)
		})
	}
}

// A cluster with 1 MiB segments needs no configuration: the segment size
// comes from the page header.
func TestArchive_PushWAL_RealSegments1MiB(t *testing.T) {
	dir := archivedByPostgres(t, pgtest.Options{Major: 15, WALSegmentSizeMB: 1}, 3)
	pushFetchDir(t, dir, 15, 1<<20)
}

func pushFetchDir(t *testing.T, dir string, major int, segSize uint64) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	segments := 0
	for _, e := range entries {
		name := e.Name()
		res, err := a.PushWAL(ctx, filepath.Join(dir, name), PushOptions{SystemID: testSystemID})
		if err != nil {
			t.Fatal(err)
		}
		if wal.IsSegmentName(name) {
			segments++
			if res.SegmentSize != segSize || res.PGVersion != major*10000 {
				t.Errorf("%s: segment size %d, pg-version %d; want %d, %d", name, res.SegmentSize, res.PGVersion, segSize, major*10000)
			}
		}
		dest := filepath.Join(out, name)
		if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, dest, want)
	}
	if segments < 3 {
		t.Fatalf("PostgreSQL archived %d segments, want at least 3", segments)
	}
	if major != pgtest.DebianMajor {
		return
	}
	// pg_waldump as an oracle: it decodes every record of the fetched
	// segment (the one before the last holds the test's inserts).
	var names []string
	for _, e := range entries {
		if wal.IsSegmentName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	seg := names[len(names)-2]
	cmd := exec.Command(pgtest.Tool(t, "pg_waldump"), "--stats", filepath.Join(out, seg))
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_waldump %s: %v\n%s", seg, err, outb)
	}
	if !strings.Contains(string(outb), "Heap") {
		t.Fatalf("pg_waldump found no heap records in %s:\n%s", seg, outb)
	}
}

// BenchmarkPushWAL pushes 16 MiB segments (half random, half zero pages)
// to a local store, snappy-compressed, with and without encryption.
func BenchmarkPushWAL(b *testing.B) {
	const segSize = 16 << 20
	for _, encrypted := range []bool{false, true} {
		b.Run(fmt.Sprintf("snappy/encrypted=%v", encrypted), func(b *testing.B) {
			ctx := context.Background()
			a := localArchive(b, b.TempDir(), "site", walTestArchive(b, encrypted).Codec)
			dir := b.TempDir()
			first := wal.Segment{Timeline: 1, No: 1}
			data := waltest.Segment(b, first.Name(segSize), segSize, 1)
			path := writeWALFile(b, dir, first.Name(segSize), data)
			b.SetBytes(segSize)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Each push needs a new segment: rename the file and
				// rewrite its page address.
				b.StopTimer()
				seg := wal.Segment{Timeline: 1, No: uint64(i) + 1}
				next := filepath.Join(dir, seg.Name(segSize))
				if err := os.Rename(path, next); err != nil {
					b.Fatal(err)
				}
				path = next
				binary.LittleEndian.PutUint64(data[8:], uint64(seg.StartLSN(segSize)))
				if err := os.WriteFile(path, data, 0o600); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := a.PushWAL(ctx, path, PushOptions{SystemID: testSystemID})
				if err != nil {
					b.Fatal(err)
				}
				if !res.Uploaded {
					b.Fatal("not uploaded")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "segments/s")
		})
	}
}
