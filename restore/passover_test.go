package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// The two backups of the pass-over tests: a sound older one and a newer
// one refused before anything is written. Both start in the same WAL
// segment (hostile.Put), so the older reaches every target the newer does.
const (
	olderBackup = "2026-01-02_03-00_0"
	newerBackup = "2026-01-02_04-00_0"
)

// rewriteControl decodes the control object key of a, lets edit change
// its members (each header with its data), and stores the result in its
// place with the same metadata, as a writer of the bucket without the key
// can in a site without keys.
func rewriteControl(t testing.TB, a *archive.Archive, key string, edit func(hs []*tar.Header, data [][]byte) ([]*tar.Header, [][]byte)) {
	t.Helper()
	ctx := context.Background()
	rc, md, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		t.Fatal(err)
	}
	var hs []*tar.Header
	var data [][]byte
	testio.EachTarMember(t, key, rc, func(h *tar.Header, r io.Reader) {
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		hs, data = append(hs, h), append(data, b)
	})
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	hs, data = edit(hs, data)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, h := range hs {
		h.Size = int64(len(data[i]))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Codec.Put(ctx, a.Store, key, &buf, int64(buf.Len()), md); err != nil {
		t.Fatal(err)
	}
}

// dropMember returns an edit for rewriteControl that leaves member name out.
func dropMember(name string) func([]*tar.Header, [][]byte) ([]*tar.Header, [][]byte) {
	return func(hs []*tar.Header, data [][]byte) ([]*tar.Header, [][]byte) {
		var oh []*tar.Header
		var od [][]byte
		for i, h := range hs {
			if path.Clean(h.Name) != name {
				oh, od = append(oh, h), append(od, data[i])
			}
		}
		return oh, od
	}
}

// flipStored changes one byte in the middle of the stored object key,
// bypassing the codec: what a failing disk or a writer without the key
// leaves.
func flipStored(t testing.TB, a *archive.Archive, key string) {
	t.Helper()
	rewriteStored(t, a, key, func(b []byte, _ storage.Metadata) { b[len(b)/2] ^= 0x55 })
}

// rewriteStored stores the object key of a again, its bytes and a copy
// of its metadata as edit changes them, bypassing the codec, as a writer
// of the bucket without the key can.
func rewriteStored(t testing.TB, a *archive.Archive, key string, edit func(b []byte, md storage.Metadata)) {
	t.Helper()
	ctx := context.Background()
	rc, o, err := a.Store.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	md := storage.Metadata{}
	for k, v := range o.Metadata {
		md[k] = v
	}
	edit(b, md)
	if err := a.Store.Put(ctx, key, bytes.NewReader(b), md); err != nil {
		t.Fatal(err)
	}
}

// passOverCase is a newer backup refused before anything is written.
type passOverCase struct {
	name   string
	keys   bool
	backup hostile.Backup                                            // the newer backup (its Name is set)
	damage func(t testing.TB, a *archive.Archive, st hostile.Stored) // after it is stored; nil: none
	want   error
}

func passOverCases() []passOverCase {
	extra := [][]hostile.Member{{{Name: "pgdata/base/1/2222", Body: strings.Repeat("x", 8192)}}}
	label := func(hs []*tar.Header, data [][]byte) ([]*tar.Header, [][]byte) {
		for i, h := range hs {
			if path.Clean(h.Name) == archive.ControlBackupLabel {
				data[i] = []byte("START WAL LOCATION: 0/500028 (file 000000010000000000000005)\n")
			}
		}
		return hs, data
	}
	embed := func(rel, body string) []archive.DeltaFile {
		b64 := base64.StdEncoding.EncodeToString([]byte(body))
		return []archive.DeltaFile{{RelativePath: rel, FileSize: int64(len(body)), ContentB64: &b64}}
	}
	return []passOverCase{
		{name: "DeltaPathDotDot", backup: hostile.Backup{Delta: embed("../victim", "owned\n")}, want: ErrUnsafeMember},
		{name: "DeltaDigestNotHex", backup: hostile.Backup{Delta: []archive.DeltaFile{{RelativePath: "base/1/2601", FileSize: 8192, Hexdigest: "../x"}}},
			want: archive.ErrBadDeltaManifest},
		{name: "ErrMissingChunks", backup: hostile.Backup{Chunks: extra, Manifest: dropLastChunk}, want: ErrMissingChunks},
		{name: "ErrPGManifest", backup: hostile.Backup{PGManifest: true}, want: ErrPGManifest},
		{name: "ErrNoBackupLabel", backup: hostile.Backup{NoLabel: true}, want: ErrNoBackupLabel},
		{name: "ErrUnsafeMember", backup: hostile.Backup{Control: []hostile.Member{{Name: "../escape", Body: "x"}}}, want: ErrUnsafeMember},
		{name: "ErrBadManifest", backup: hostile.Backup{Chunks: extra, Manifest: func(m *archive.Manifest) { m.Chunks[1] = m.Chunks[0] }},
			want: archive.ErrBadManifest},
		{name: "NoPGControl", damage: func(t testing.TB, a *archive.Archive, st hostile.Stored) {
			rewriteControl(t, a, st.ControlKey, dropMember(archive.ControlPGControl))
		}, want: archive.ErrBadControl},
		{name: "ManifestNotFirst", damage: func(t testing.TB, a *archive.Archive, st hostile.Stored) {
			rewriteControl(t, a, st.ControlKey, func(hs []*tar.Header, data [][]byte) ([]*tar.Header, [][]byte) {
				hs[0], hs[1], data[0], data[1] = hs[1], hs[0], data[1], data[0]
				return hs, data
			})
		}, want: archive.ErrBadControl},
		{name: "ManifestNotJSON", damage: func(t testing.TB, a *archive.Archive, st hostile.Stored) {
			rewriteControl(t, a, st.ControlKey, func(hs []*tar.Header, data [][]byte) ([]*tar.Header, [][]byte) {
				data[0] = []byte(`{"chunks": [`)
				return hs, data
			})
		}, want: archive.ErrBadManifest},
		{name: "PGManifestNotJSON", backup: hostile.Backup{PGManifest: true,
			Control: []hostile.Member{{Name: archive.ControlPGManifest, Body: `{"Files": [{"Path": `}}}, want: ErrPGManifest},
		{name: "ErrForeignControl", damage: func(t testing.TB, a *archive.Archive, st hostile.Stored) {
			rewriteControl(t, a, st.ControlKey, label)
		}, want: archive.ErrForeignControl},
		{name: "ErrCorrupt", damage: func(t testing.TB, a *archive.Archive, st hostile.Stored) {
			flipStored(t, a, st.ControlKey)
		}, want: compress.ErrCorrupt},
		{name: "ErrTampered", keys: true, backup: hostile.Backup{Signed: true}, damage: func(t testing.TB, a *archive.Archive, st hostile.Stored) {
			flipStored(t, a, st.ControlKey)
		}, want: crypto.ErrTampered},
	}
}

// passOverArchive stores the older, sound backup and tc's newer one.
func passOverArchive(t *testing.T, tc passOverCase) (*archive.Archive, hostile.Stored) {
	t.Helper()
	c := &archive.Codec{Compression: compress.Zstd}
	if tc.keys {
		archivetest.AddKeys(t, c)
	}
	a := archivetest.New(t, storage.NewMem(), c)
	hostile.Put(t, a, hostile.Backup{Name: olderBackup, Signed: tc.keys})
	b := tc.backup
	b.Name = newerBackup
	st := hostile.Put(t, a, b)
	if tc.damage != nil {
		tc.damage(t, a, st)
	}
	return a, st
}

// TestRun_PassOverDamaged: the newest backup is refused before anything
// is written because it is damaged (its manifest lists fewer chunks than
// its metadata counts, its backup_manifest is missing, its control object
// fails one of its checks or does not decode). Chosen automatically, the
// restore passes it over with a warning naming it and why, restores the
// older backup (whose WAL reaches the same end) and says in its Result
// which one it passed over and why; named, the newest is refused with its
// error, as before.
func TestRun_PassOverDamaged(t *testing.T) {
	for _, tc := range passOverCases() {
		t.Run(tc.name, func(t *testing.T) {
			a, st := passOverArchive(t, tc)
			ctx := context.Background()

			var logs bytes.Buffer
			e := hostile.NewEnv(t)
			res, err := Run(ctx, Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "hoard wal-fetch %f %p",
				Logger: zerolog.New(&logs).Level(zerolog.WarnLevel)})
			if err != nil {
				t.Fatalf("automatic restore with the newest backup damaged: %v", err)
			}
			if res.Backup.Name != olderBackup {
				t.Errorf("restored %s, want the older %s", res.Backup.Name, olderBackup)
			}
			if len(res.PassedOver) != 1 || res.PassedOver[0].Backup.Name != st.Name || !errors.Is(res.PassedOver[0].Err, tc.want) {
				t.Errorf("Result.PassedOver = %v, want %s with %v", res.PassedOver, st.Name, tc.want)
			}
			if _, err := os.Stat(filepath.Join(e.Target(), "global", "pg_control")); err != nil {
				t.Errorf("the older backup is not restored: %v", err)
			}
			for _, want := range []string{"passing over a damaged backup", st.Name} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, logs.String())
				}
			}

			checkImmediateRefused(t, a, st.Name, tc.want)

			e = hostile.NewEnv(t)
			_, err = Run(ctx, Options{Archive: a, TargetDir: e.Target(), Backup: st.Name,
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if !errors.Is(err, tc.want) {
				t.Errorf("restore of %s by name: %v, want %v", st.Name, err, tc.want)
			}
			if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
				t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
			}
		})
	}
}

// checkImmediateRefused checks that an automatic restore with
// --target-immediate does not pass over the newest backup, refused with
// want: the target is the end of the backup chosen, so an older backup
// would restore an older state (the newest backup's commits missing)
// without failing. It fails with want, naming the backup and saying what
// to do, and writes nothing.
func checkImmediateRefused(t *testing.T, a *archive.Archive, newest string, want error) {
	t.Helper()
	e := hostile.NewEnv(t)
	res, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Target: Target{Immediate: true},
		RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
	if err == nil {
		t.Fatalf("automatic restore --target-immediate with %s refused: restored %s, want %v", newest, res.Backup.Name, want)
	}
	if !errors.Is(err, want) {
		t.Errorf("automatic restore --target-immediate: %v, want %v", err, want)
	}
	for _, w := range []string{newest, "--target-immediate", "--basebackup", "--target-lsn"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
		t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
	}
}

// TestRun_PassOverNothingLeft: when every backup is damaged, the
// automatic restore fails naming each one passed over and why, with the
// damage's error (exit 1), not only "no applicable basebackup".
func TestRun_PassOverNothingLeft(t *testing.T) {
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	extra := [][]hostile.Member{{{Name: "pgdata/base/1/2222", Body: strings.Repeat("x", 8192)}}}
	older := hostile.Put(t, a, hostile.Backup{Name: olderBackup, NoLabel: true})
	newer := hostile.Put(t, a, hostile.Backup{Name: newerBackup, Chunks: extra, Manifest: dropLastChunk})
	e := hostile.NewEnv(t)
	_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
	if !errors.Is(err, ErrMissingChunks) || !errors.Is(err, ErrNoBackupLabel) {
		t.Fatalf("restore with every backup damaged: %v, want ErrMissingChunks and ErrNoBackupLabel", err)
	}
	if errors.Is(err, archive.ErrNoBackup) {
		t.Errorf("error %v wraps ErrNoBackup: a usage error, but the backups are damaged", err)
	}
	for _, want := range []string{"passed over", older.Name, newer.Name, "lists 1 of the 2 chunks", "backup_label"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
		t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
	}
}

// downStore fails every Open of key with err, or, with midway, every
// Read of it after its first bytes: a store that is down, a connection
// reset, a permission denied.
type downStore struct {
	storage.Store
	key    string
	err    error
	midway bool
}

func (s downStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if key != s.key {
		return s.Store.Open(ctx, key)
	}
	if !s.midway {
		return nil, storage.Object{}, s.err
	}
	rc, o, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, o, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, 16), iotest.ErrReader(s.err)), rc}, o, nil
}

// TestRun_PassOverNotTransient: an error reading the newest backup's
// control object that says nothing about the backup (the store down, a
// connection reset midway, permission denied, a cancelled context) fails
// the restore as before: it never makes the restore take an older backup,
// whose recovery replays more WAL.
func TestRun_PassOverNotTransient(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		midway bool
	}{
		{"Down", errors.New("dial tcp 127.0.0.1:9000: connect: connection refused"), false},
		{"Reset", errors.New("read tcp 127.0.0.1:9000: connection reset by peer"), true},
		{"Permission", fmt.Errorf("access denied: %w", storage.ErrPermanent), false},
		{"Canceled", fmt.Errorf("get object: %w", context.Canceled), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
			hostile.Put(t, a, hostile.Backup{Name: olderBackup})
			st := hostile.Put(t, a, hostile.Backup{Name: newerBackup})
			a.Store = downStore{Store: a.Store, key: st.ControlKey, err: tc.err, midway: tc.midway}
			e := hostile.NewEnv(t)
			res, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if err == nil {
				t.Fatalf("restore with the newest backup's control object unreadable (%v) restored %s, want the error", tc.err, res.Backup.Name)
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), st.Name) {
				t.Errorf("error %v, want %v naming %s", err, tc.err, st.Name)
			}
			if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
				t.Errorf("the failed restore wrote %d entries into %s", len(ents), e.Target())
			}
		})
	}
}

// TestRun_PassOverMissingChunksPG takes two backups of a real PostgreSQL
// 15 in a site without keys, with rows written before, between and after
// them, then strips the newest backup's manifest of its last chunk (as a
// writer of the bucket can). Chosen automatically, the restore passes the
// newest over (ErrMissingChunks) and restores the older one, whose
// recovery replays the archived WAL to the end: the source's rows. Named,
// the newest is refused with ErrMissingChunks.
func TestRun_PassOverMissingChunksPG(t *testing.T) {
	const major = pgtest.DebianMajor
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major})
	pgtest.Pgbench(t, src, "-i", "-s", "1")
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	ctx := incrContext(t)
	src.Exec(t, "create table t (id int primary key, v text)")
	src.Exec(t, "insert into t select i, 'first' from generate_series(1, 5000) i")
	older := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	src.Exec(t, "insert into t select i, 'second' from generate_series(5001, 6000) i")
	newer := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	src.Exec(t, "update t set v = 'after' where id <= 500")
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
	want := digest(t, src)
	archivetest.StoreArchivedWAL(t, src, walDir, a)
	if newer.ChunkCount < 2 {
		t.Fatalf("backup %s has %d chunks, want at least 2", newer.Name, newer.ChunkCount)
	}
	rewriteControl(t, a, newer.Key, func(hs []*tar.Header, data [][]byte) ([]*tar.Header, [][]byte) {
		m, err := archive.ParseManifest(data[0])
		if err != nil {
			t.Fatal(err)
		}
		m.Chunks = m.Chunks[:len(m.Chunks)-1]
		if data[0], err = m.Marshal(); err != nil {
			t.Fatal(err)
		}
		return hs, data
	})

	var logs bytes.Buffer
	dir := filepath.Join(pgtest.TempDir(t), "data")
	res, err := Run(ctx, Options{Archive: a, TargetDir: dir, RestoreCommand: "cp " + walDir + "/%f %p",
		Logger: zerolog.New(&logs).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatalf("automatic restore with the newest backup's manifest short of a chunk: %v", err)
	}
	if res.Backup.Name != older.Name || len(res.PassedOver) != 1 || res.PassedOver[0].Backup.Name != newer.Name ||
		!errors.Is(res.PassedOver[0].Err, ErrMissingChunks) {
		t.Errorf("restored %s, passed over %v: want %s restored, %s passed over with ErrMissingChunks", res.Backup.Name, res.PassedOver, older.Name, newer.Name)
	}
	if !strings.Contains(logs.String(), "passing over a damaged backup") || !strings.Contains(logs.String(), newer.Name) {
		t.Errorf("warnings lack %s:\n%s", newer.Name, logs.String())
	}
	c := pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	checkRestored(t, c, want)
	c.Stop(t)

	_, err = Run(ctx, Options{Archive: a, TargetDir: filepath.Join(pgtest.TempDir(t), "data"), Backup: newer.Name,
		RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
	if !errors.Is(err, ErrMissingChunks) {
		t.Errorf("restore of %s by name: %v, want ErrMissingChunks", newer.Name, err)
	}
}

// onceStore fails the first Open of key with err, as a store does that
// is down or refuses a request for a moment; later Opens succeed.
type onceStore struct {
	storage.Store
	key    string
	err    error
	failed *bool
}

func (s onceStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if key == s.key && !*s.failed {
		*s.failed = true
		return nil, storage.Object{}, s.err
	}
	return s.Store.Open(ctx, key)
}

// TestRun_PassOverNotTransientParent: an error reading the control object
// of an incremental backup's parent that says nothing about the parent
// (the store down for a moment, permission denied, a cancelled context)
// fails the restore, naming the parent: it does not break the chain, so
// the automatic choice does not pass the incremental backup over and
// restore its parent instead, whose recovery replays more WAL, once the
// store answers again.
func TestRun_PassOverNotTransientParent(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"Down", errors.New("dial tcp 127.0.0.1:9000: connect: connection refused")},
		{"Permission", fmt.Errorf("access denied: %w", storage.ErrPermanent)},
		{"Canceled", fmt.Errorf("get object: %w", context.Canceled)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newChainFiles()
			for _, files := range []map[string]string{f.parent, f.child} {
				for p := range files {
					if strings.HasPrefix(p, "pg_tblspc/") {
						delete(files, p)
					}
				}
			}
			a := hostileArchive(t)
			pst := hostile.Put(t, a, chainBackup(t, parent, "", f.parent, f.parent, nil))
			hostile.Put(t, a, chainBackup(t, child, parent, f.child, f.child, nil))
			a.Store = onceStore{Store: a.Store, key: pst.ControlKey, err: tc.err, failed: new(bool)}
			e := hostile.NewEnv(t)
			res, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if err == nil {
				t.Fatalf("restore with the parent's control object unreadable once (%v) restored %s, want the error", tc.err, res.Backup.Name)
			}
			if !errors.Is(err, tc.err) || errors.Is(err, ErrBrokenChain) || !strings.Contains(err.Error(), pst.ControlKey) {
				t.Errorf("error %v, want %v naming %s, not ErrBrokenChain", err, tc.err, pst.ControlKey)
			}
			if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
				t.Errorf("the failed restore wrote %d entries into %s", len(ents), e.Target())
			}
		})
	}
}

// TestRun_PassOverIncrementalNoPGManifest: an incremental backup whose
// control tar lacks the backup_manifest every backup of a chain holds,
// or holds one that does not parse, is damaged as a full backup without
// it is: chosen automatically, it is passed over for its parent (which
// reaches the same target) with ErrPGManifest; named, it is refused with
// ErrPGManifest. The middle backup of a chain of three lacking it breaks
// the newest one's chain (ErrBrokenChain), as a full parent lacking it
// does.
func TestRun_PassOverIncrementalNoPGManifest(t *testing.T) {
	const full, middle, newest = "2026-01-02_03-00_0", "2026-01-02_03-00_1", "2026-01-02_03-00_2"
	for _, tc := range []struct {
		name   string
		damage string // the backup whose backup_manifest is damaged
		body   string // its backup_manifest; "": none
		want   error
	}{
		{"NewestMissing", newest, "", ErrPGManifest},
		{"NewestNotJSON", newest, `{"Files": [{"Path": `, ErrPGManifest},
		{"MiddleMissing", middle, "", ErrBrokenChain},
		{"MiddleNotJSON", middle, `{"Files": [{"Path": `, ErrBrokenChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newChainFiles()
			for _, files := range []map[string]string{f.parent, f.child} {
				for p := range files {
					if strings.HasPrefix(p, "pg_tblspc/") {
						delete(files, p)
					}
				}
			}
			// The newest is taken against the middle one's start.
			third := func(b hostile.Backup) hostile.Backup {
				edit := b.Manifest
				b.Manifest = func(m *archive.Manifest) {
					edit(m)
					m.Hoard.StartLSN, m.Hoard.Incremental.StartLSN = "0/400028", "0/300028"
				}
				return b
			}
			a := hostileArchive(t)
			var damaged hostile.Stored
			for _, b := range []hostile.Backup{
				chainBackup(t, full, "", f.parent, f.parent, nil),
				chainBackup(t, middle, full, f.child, f.child, nil),
				third(chainBackup(t, newest, middle, f.child, f.child, nil)),
			} {
				if b.Name == tc.damage {
					b.Control = b.Control[:1] // backup_label only
					if tc.body != "" {
						b.Control = append(b.Control, hostile.Member{Name: archive.ControlPGManifest, Body: tc.body})
					}
				}
				if st := hostile.Put(t, a, b); b.Name == tc.damage {
					damaged = st
				}
			}
			checkImmediateRefused(t, a, newest, tc.want)
			e := hostile.NewEnv(t)
			res, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if err != nil {
				t.Fatalf("automatic restore with %s's backup_manifest damaged: %v", tc.damage, err)
			}
			want := middle
			if tc.damage == middle {
				want = full
			}
			if res.Backup.Name != want {
				t.Errorf("restored %s, want %s", res.Backup.Name, want)
			}
			if len(res.PassedOver) == 0 || res.PassedOver[0].Backup.Name != newest || !errors.Is(res.PassedOver[0].Err, tc.want) ||
				!strings.Contains(res.PassedOver[0].Err.Error(), damaged.ControlKey) {
				t.Errorf("Result.PassedOver = %v, want %s first with %v naming %s", res.PassedOver, newest, tc.want, damaged.ControlKey)
			}

			e = hostile.NewEnv(t)
			_, err = Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Backup: newest,
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if !errors.Is(err, tc.want) {
				t.Errorf("restore of %s by name: %v, want %v", newest, err, tc.want)
			}
			if ents, err := os.ReadDir(e.Target()); err == nil && len(ents) > 0 {
				t.Errorf("the refused restore wrote %d entries into %s", len(ents), e.Target())
			}
		})
	}
}
