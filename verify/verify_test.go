package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/swaptest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// segSize is the segment size of the synthetic archives: the smallest
// PostgreSQL allows, to keep the tests light.
const segSize = 1 << 20

// testArchive is a site in a mem store, with zstd compression.
func testArchive(t testing.TB) *archive.Archive {
	t.Helper()
	return archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
}

// soundArchive returns a testArchive holding backup b1 (segments 2 to 3
// of timeline 1, taken at t0) and those segments: an archive verify
// passes, for a test to damage.
func soundArchive(t testing.TB) *archive.Archive {
	t.Helper()
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 2, 3)
	return a
}

// segmentBytes builds a complete segment called name whose long page
// header fits its name, as PostgreSQL 15 writes it.
func segmentBytes(t testing.TB, name string) []byte {
	t.Helper()
	return waltest.Segment(t, name, segSize, 0)
}

// putSegment stores a segment with its sha1 hash metadata, as wal-push does.
func putSegment(t testing.TB, a *archive.Archive, name string, data []byte) {
	t.Helper()
	sum := sha1.Sum(data)
	md := storage.Metadata{archive.MetaHash: hex.EncodeToString(sum[:]), archive.MetaHashAlgorithm: "sha1"}
	if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(name), bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
}

// putSegments stores complete segments no from..to of timeline tli.
func putSegments(t testing.TB, a *archive.Archive, tli uint32, from, to uint64) {
	t.Helper()
	for no := from; no <= to; no++ {
		name := wal.Segment{Timeline: tli, No: no}.Name(segSize)
		putSegment(t, a, name, segmentBytes(t, name))
	}
}

// putHistory stores a timeline history file.
func putHistory(t testing.TB, a *archive.Archive, tli uint32, content string) {
	t.Helper()
	name := wal.HistoryFileName(tli)
	if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(name), strings.NewReader(content), int64(len(content)), nil); err != nil {
		t.Fatal(err)
	}
}

// tarOf builds a tar with the given members.
func tarOf(t testing.TB, members map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range members {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// putBackup stores a pghoard-bb-v2 backup with two chunks that starts in
// segment startNo and ends endBytes into segment endNo, on timeline tli.
func putBackup(t testing.TB, a *archive.Archive, name string, tli uint32, startNo, endNo uint64, at time.Time) *archive.BackupInfo {
	t.Helper()
	return putBackupOf(t, a, name, tli, startNo, endNo, at, "")
}

// putBackupOf is putBackup of a backup that records database system
// system ("": none).
func putBackupOf(t testing.TB, a *archive.Archive, name string, tli uint32, startNo, endNo uint64, at time.Time, system string) *archive.BackupInfo {
	t.Helper()
	return putBackupWith(t, a, name, tli, startNo, endNo, at, system, nil)
}

// putBackupWith is putBackupOf whose manifest edit changes before it is
// stored (nil: none).
func putBackupWith(t testing.TB, a *archive.Archive, name string, tli uint32, startNo, endNo uint64, at time.Time, system string, edit func(*archive.Manifest)) *archive.BackupInfo {
	t.Helper()
	ctx := context.Background()
	m := &archive.Manifest{Tablespaces: map[string]archive.ManifestTablespace{}}
	if system != "" {
		m.Hoard = &archive.HoardManifest{SystemID: system}
	}
	for i := 1; i <= 2; i++ {
		tr := tarOf(t, map[string][]byte{fmt.Sprintf("pgdata/base/%d", i): bytes.Repeat([]byte{byte(i)}, 5000)})
		fn := archive.ChunkFilename(name, i)
		st, err := a.Codec.Put(ctx, a.Store, a.Layout.ChunkKey(fn), bytes.NewReader(tr), int64(len(tr)), nil)
		if err != nil {
			t.Fatal(err)
		}
		m.Chunks = append(m.Chunks, archive.ManifestChunk{ChunkFilename: fn, InputSize: int64(len(tr)), ResultSize: st.StoredSize,
			HMAC: hex.EncodeToString(st.HMAC), Files: []string{fmt.Sprintf("pgdata/base/%d", i)}})
	}
	if edit != nil {
		edit(m)
	}
	js, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	start := wal.Segment{Timeline: tli, No: startNo}
	control := hostile.Tar(t,
		hostile.Member{Name: archive.ManifestName, Body: string(js)},
		hostile.Member{Name: archive.ControlPGControl, Body: strings.Repeat("c", hostile.PGControlSize)},
		hostile.Member{Name: archive.ControlBackupLabel, Body: fmt.Sprintf("START WAL LOCATION: %s (file %s)\n", start.StartLSN(segSize)+0x28, start.Name(segSize))})
	b := &archive.BackupInfo{
		Format:          archive.FormatBBv2,
		StartWALSegment: start.Name(segSize),
		EndWALSegment:   wal.Segment{Timeline: tli, No: endNo}.Name(segSize),
		StartTime:       at,
		EndTime:         at.Add(time.Minute),
		StartLSN:        start.StartLSN(segSize) + 0x28,
		EndLSN:          wal.Segment{No: endNo}.StartLSN(segSize) + 0x100,
		StartTimeline:   tli,
		EndTimeline:     tli,
		WALSegmentSize:  segSize,
		PGVersion:       150004,
		ChunkCount:      2,
		SystemID:        system,
	}
	md := b.ToMetadata()
	if err := a.Codec.SignBackup(name, md); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Codec.Put(ctx, a.Store, a.Layout.BackupKey(name), bytes.NewReader(control), int64(len(control)), md); err != nil {
		t.Fatal(err)
	}
	b.Name = name
	b.Key = a.Layout.BackupKey(name)
	return b
}

func seg(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }

var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

func run(t *testing.T, a *archive.Archive, full bool) *Report {
	t.Helper()
	rep, err := Run(context.Background(), Options{Archive: a, Full: full, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func problems(rep *Report) string {
	var all []string
	all = append(all, rep.Problems...)
	for _, b := range rep.Backups {
		all = append(all, b.Problems...)
	}
	return strings.Join(all, "\n")
}

func TestRun_OK(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putBackup(t, a, "b2", 1, 5, 5, t0.Add(time.Hour))
	putSegments(t, a, 1, 1, 7)
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if !rep.OK() {
			t.Fatalf("full=%v: not OK:\n%s", full, problems(rep))
		}
		if got, want := rep.Backups[0].ReachSegment, seg(1, 7); got != want {
			t.Errorf("reach %s, want %s", got, want)
		}
		if got, want := rep.Backups[0].ReachLSN, pglogrepl.LSN(8*segSize).String(); got != want {
			t.Errorf("reach LSN %s, want %s", got, want)
		}
		if rt := rep.Backups[0].ReachTimeAtLeast; rt == nil || !rt.Equal(t0.Add(time.Hour+time.Minute)) {
			t.Errorf("reach time at least %v, want the end of b2", rt)
		}
	}
}

func TestRun_ErrNoBackups(t *testing.T) {
	a := testArchive(t)
	putSegments(t, a, 1, 1, 2)
	if rep := run(t, a, false); rep.OK() || !strings.Contains(problems(rep), "no basebackups") {
		t.Fatalf("empty archive: OK=%v problems %q", rep.OK(), problems(rep))
	}
}

func TestRun_ErrGapAfterEnd(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 2, 4)
	putSegments(t, a, 1, 8, 9)
	rep := run(t, a, false)
	if rep.OK() {
		t.Fatal("a WAL gap passed")
	}
	b := rep.Backups[0]
	if b.Status != StatusLimited || !b.Restorable {
		t.Errorf("status %s restorable %v, want limited and restorable", b.Status, b.Restorable)
	}
	want := Gap{First: seg(1, 5), Last: seg(1, 7), Count: 3}
	if len(b.Gaps) != 1 || b.Gaps[0] != want {
		t.Fatalf("gaps %+v, want %+v", b.Gaps, want)
	}
	if !strings.Contains(problems(rep), seg(1, 5)+".."+seg(1, 7)) {
		t.Errorf("problems do not name the gap:\n%s", problems(rep))
	}
	if b.ReachSegment != seg(1, 4) {
		t.Errorf("reach %s, want %s", b.ReachSegment, seg(1, 4))
	}
}

func TestRun_ErrGapInBackup(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 4, t0)
	putSegments(t, a, 1, 2, 2)
	putSegments(t, a, 1, 4, 5)
	rep := run(t, a, false)
	b := rep.Backups[0]
	if b.Status != StatusBroken || b.Restorable {
		t.Fatalf("status %s restorable %v, want broken", b.Status, b.Restorable)
	}
	if !strings.Contains(problems(rep), seg(1, 3)+" missing between the backup's start and end") {
		t.Errorf("problems:\n%s", problems(rep))
	}
}

func TestRun_ErrMissingEnd(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 4, t0)
	putSegments(t, a, 1, 2, 3)
	rep := run(t, a, false)
	if b := rep.Backups[0]; b.Restorable || len(b.Gaps) != 1 || b.Gaps[0].First != seg(1, 4) {
		t.Fatalf("restorable %v gaps %+v, want not restorable with %s missing", b.Restorable, b.Gaps, seg(1, 4))
	}
}

func TestRun_Timelines(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	// Timeline 2 forks in segment 5, timeline 3 in segment 7. The
	// switch segments exist on both sides, as after a promotion.
	putSegments(t, a, 1, 2, 5)
	putHistory(t, a, 2, "1\t0/500100\tno recovery target specified\n")
	putSegments(t, a, 2, 5, 7)
	putHistory(t, a, 3, "1\t0/500100\tno recovery target specified\n2\t0/700200\tno recovery target specified\n")
	putSegments(t, a, 3, 7, 9)
	// A leftover of the old timeline past the fork is not on the path.
	putSegments(t, a, 1, 6, 6)

	rep := run(t, a, true)
	if !rep.OK() {
		t.Fatalf("not OK:\n%s", problems(rep))
	}
	if got := rep.Backups[0].ReachSegment; got != seg(3, 9) {
		t.Errorf("reach %s, want %s", got, seg(3, 9))
	}

	t.Run("ErrGapOnTimeline", func(t *testing.T) {
		if err := a.Store.Delete(context.Background(), a.Layout.WALKey(seg(2, 6))); err != nil {
			t.Fatal(err)
		}
		rep := run(t, a, false)
		b := rep.Backups[0]
		if len(b.Gaps) != 1 || b.Gaps[0].First != seg(2, 6) || b.Gaps[0].Count != 1 {
			t.Fatalf("gaps %+v, want %s", b.Gaps, seg(2, 6))
		}
		if b.ReachSegment != seg(2, 5) {
			t.Errorf("reach %s, want %s", b.ReachSegment, seg(2, 5))
		}
		putSegments(t, a, 2, 6, 6)
	})

	t.Run("ErrMissingHistory", func(t *testing.T) {
		if err := a.Store.Delete(context.Background(), a.Layout.WALKey(wal.HistoryFileName(3))); err != nil {
			t.Fatal(err)
		}
		rep := run(t, a, false)
		if rep.OK() || !strings.Contains(problems(rep), "timeline 3 has WAL segments but 00000003.history is not archived") {
			t.Fatalf("OK=%v problems:\n%s", rep.OK(), problems(rep))
		}
		// Without 3.history recovery stays on timeline 2, whose WAL ends
		// in segment 7.
		if got := rep.Backups[0].ReachSegment; got != seg(2, 7) {
			t.Errorf("reach %s, want %s", got, seg(2, 7))
		}
	})
}

func TestRun_ErrDamagedChunk(t *testing.T) {
	a := soundArchive(t)
	key := a.Layout.ChunkKey(archive.ChunkFilename("b1", 2))
	storetest.Tamper(t, a.Store, key)
	if rep := run(t, a, false); !rep.OK() {
		t.Fatalf("a same-size damaged chunk fails the quick check:\n%s", problems(rep))
	}
	rep := run(t, a, true)
	if rep.OK() || rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), key) {
		t.Fatalf("full: OK=%v problems:\n%s", rep.OK(), problems(rep))
	}
}

// A chunk stored again with its own content but another stored size
// (here: uncompressed) decodes as the manifest expects; both the quick
// check and --full name its stored size, which the control object records.
func TestRun_ErrChunkStoredSize(t *testing.T) {
	a := soundArchive(t)
	key := a.Layout.ChunkKey(archive.ChunkFilename("b1", 2))
	ctx := context.Background()
	data, md := archivetest.Decode(t, a.Codec, a.Store, key)
	plain := &archive.Codec{Compression: compress.None}
	if _, err := plain.Put(ctx, a.Store, key, bytes.NewReader(data), int64(len(data)), storage.Metadata{archive.MetaFormat: md[archive.MetaFormat]}); err != nil {
		t.Fatal(err)
	}
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if rep.OK() || !strings.Contains(problems(rep), "chunk "+key+": stored size") {
			t.Errorf("full=%v: OK=%v problems:\n%s", full, rep.OK(), problems(rep))
		}
	}
}

// encryptedArchive returns an archive in memory that encrypts, holding
// the private key.
func encryptedArchive(t *testing.T) *archive.Archive {
	t.Helper()
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	return archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd,
		KeyID: "k", PublicKey: &k.PublicKey, PrivateKeys: map[string]*rsa.PrivateKey{"k": k}})
}

// TestRun_ErrChunkSwapped: an authentic chunk of another backup of the
// site (of the same sizes) copied over a chunk passes the quick check,
// which compares sizes, and is named by --full: the control object
// records each chunk's HMAC.
func TestRun_ErrChunkSwapped(t *testing.T) {
	a := encryptedArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putBackup(t, a, "b2", 1, 3, 4, t0.Add(time.Hour))
	putSegments(t, a, 1, 2, 4)
	key := a.Layout.ChunkKey(archive.ChunkFilename("b2", 2))
	archivetest.CopyObject(t, a.Store, a.Layout.ChunkKey(archive.ChunkFilename("b1", 2)), key)
	if rep := run(t, a, false); !rep.OK() {
		t.Fatalf("quick check:\n%s", problems(rep))
	}
	rep := run(t, a, true)
	if rep.OK() || rep.Backups[1].Status != StatusBroken || !strings.Contains(problems(rep), "chunk "+key+": ") ||
		!strings.Contains(problems(rep), archive.ErrWrongObject.Error()) {
		t.Fatalf("full: OK=%v problems:\n%s", rep.OK(), problems(rep))
	}
	if rep.Backups[0].Status == StatusBroken {
		t.Errorf("the backup the chunk came from is broken:\n%s", problems(rep))
	}
}

// TestRun_ErrMetadataAltered: a backup whose metadata someone without
// the key altered (its end time moved back, which steers restore's
// choice for a time target) is reported, though its objects are sound;
// the other backup is not.
func TestRun_ErrMetadataAltered(t *testing.T) {
	a := encryptedArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	b2 := putBackup(t, a, "b2", 1, 3, 4, t0.Add(time.Hour))
	putSegments(t, a, 1, 2, 4)
	if rep := run(t, a, false); !rep.OK() {
		t.Fatalf("before:\n%s", problems(rep))
	}
	ctx := context.Background()
	rc, o, err := a.Store.Open(ctx, b2.Key)
	if err != nil {
		t.Fatal(err)
	}
	md := maps.Clone(o.Metadata)
	md[archive.MetaEndTime] = "2000-01-01 00:00:00+00:00"
	err = a.Store.Put(ctx, b2.Key, rc, md)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, a, false)
	if rep.OK() || rep.Backups[1].Status != StatusLimited || !strings.Contains(problems(rep), "metadata does not authenticate") {
		t.Fatalf("OK=%v status %s problems:\n%s", rep.OK(), rep.Backups[1].Status, problems(rep))
	}
	if rep.Backups[0].Status != StatusOK {
		t.Errorf("b1: %s\n%s", rep.Backups[0].Status, problems(rep))
	}
}

// TestRun_ErrChunkMovedListed: in a site without encryption (no HMAC
// recorded), a chunk copied over another of the same sizes is named by
// --full: its member is not in the other chunk's file list.
func TestRun_ErrChunkMovedListed(t *testing.T) {
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{}) // uncompressed: both chunks store the same size
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 2, 3)
	key := a.Layout.ChunkKey(archive.ChunkFilename("b1", 2))
	archivetest.CopyObject(t, a.Store, a.Layout.ChunkKey(archive.ChunkFilename("b1", 1)), key)
	rep := run(t, a, true)
	if rep.OK() || !strings.Contains(problems(rep), "chunk "+key+": ") || !strings.Contains(problems(rep), `"pgdata/base/1"`) {
		t.Fatalf("full: OK=%v problems:\n%s", rep.OK(), problems(rep))
	}
}

func TestRun_ErrMissingChunk(t *testing.T) {
	a := soundArchive(t)
	key := a.Layout.ChunkKey(archive.ChunkFilename("b1", 1))
	if err := a.Store.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	rep := run(t, a, false)
	if rep.OK() || !strings.Contains(problems(rep), "chunk "+key+": missing") {
		t.Fatalf("OK=%v problems:\n%s", rep.OK(), problems(rep))
	}
}

func TestRun_ErrDamagedSegment(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 2, 5)
	// A segment stored under the wrong name: its hash fits, its header
	// does not.
	putSegment(t, a, seg(1, 4), segmentBytes(t, seg(1, 9)))
	if rep := run(t, a, false); !rep.OK() {
		t.Fatalf("quick check read WAL contents:\n%s", problems(rep))
	}
	rep := run(t, a, true)
	b := rep.Backups[0]
	if rep.OK() || !strings.Contains(problems(rep), "page address") || b.ReachSegment != seg(1, 3) {
		t.Fatalf("OK=%v reach %s problems:\n%s", rep.OK(), b.ReachSegment, problems(rep))
	}
	if len(b.Gaps) != 1 || b.Gaps[0].First != seg(1, 4) {
		t.Errorf("gaps %+v: the damaged segment should end the chain", b.Gaps)
	}

	t.Run("ErrHash", func(t *testing.T) {
		storetest.Tamper(t, a.Store, a.Layout.WALKey(seg(1, 5)))
		rep := run(t, a, true)
		if !strings.Contains(problems(rep), seg(1, 5)) {
			t.Fatalf("problems do not name %s:\n%s", seg(1, 5), problems(rep))
		}
	})
}

func TestCheckContinuity(t *testing.T) {
	a := testArchive(t)
	b := putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 2, 3)
	putSegments(t, a, 1, 6, 6)
	bs, err := a.ListBackups(context.Background())
	if err != nil || len(bs) != 1 {
		t.Fatal(bs, err)
	}
	ch, err := CheckContinuity(context.Background(), a, bs[0])
	if err != nil {
		t.Fatal(err)
	}
	if ch.Continuous() || !ch.Restorable || ch.Newest != seg(1, 6) || ch.Start != b.StartWALSegment {
		t.Fatalf("chain %+v", ch)
	}
	if got := ch.Gaps[0].String(); got != seg(1, 4)+".."+seg(1, 5)+" (2 segments)" {
		t.Errorf("gap %q", got)
	}
}

// TestRun_DamagedBackup: a backup whose metadata cannot be parsed is named
// as damaged; the others are checked as usual and stay OK.
func TestRun_DamagedBackup(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	bad := putBackup(t, a, "b2", 1, 4, 4, t0.Add(time.Hour))
	putBackup(t, a, "b3", 1, 5, 5, t0.Add(2*time.Hour))
	putSegments(t, a, 1, 1, 7)
	md := bad.ToMetadata()
	md[archive.MetaStartTime] = "half past nine"
	body := []byte("control")
	if _, err := a.Codec.Put(context.Background(), a.Store, bad.Key, bytes.NewReader(body), int64(len(body)), md); err != nil {
		t.Fatal(err)
	}
	rep := run(t, a, false)
	if rep.OK() {
		t.Fatal("a damaged backup left the report OK")
	}
	if p := strings.Join(rep.Problems, "\n"); !strings.Contains(p, "backup b2 is damaged") || !strings.Contains(p, "half past nine") {
		t.Errorf("problems %q do not name the damaged backup", p)
	}
	if len(rep.Backups) != 2 || rep.Backups[0].Name != "b1" || rep.Backups[1].Name != "b3" {
		t.Fatalf("backups %+v, want b1 and b3", rep.Backups)
	}
	for _, b := range rep.Backups {
		if b.Status != StatusOK {
			t.Errorf("%s: %s %v", b.Name, b.Status, b.Problems)
		}
	}
}

// TestRun_ManyBackups checks a site with more backups than --parallel: the
// control object checks must not wait on chunk checks queued behind them.
func TestRun_ManyBackups(t *testing.T) {
	a := testArchive(t)
	for i := range 10 {
		putBackup(t, a, fmt.Sprintf("b%02d", i), 1, uint64(2+2*i), uint64(2+2*i), t0.Add(time.Duration(i)*time.Hour))
	}
	putSegments(t, a, 1, 1, 22)
	for _, parallel := range []int{1, 2, 4} {
		for _, full := range []bool{false, true} {
			done := make(chan *Report, 1)
			go func() {
				rep, err := Run(context.Background(), Options{Archive: a, Full: full, Parallel: parallel, Logger: zerolog.Nop()})
				if err != nil {
					t.Error(err)
				}
				done <- rep
			}()
			select {
			case rep := <-done:
				if rep == nil || !rep.OK() || len(rep.Backups) != 10 {
					t.Fatalf("parallel %d full %v: %+v", parallel, full, rep)
				}
			case <-time.After(time.Minute):
				t.Fatalf("parallel %d full %v: verify of 10 backups did not finish (deadlock)", parallel, full)
			}
		}
	}
}

// TestRun_ErrCanceled: a cancelled context stops Run with its error.
func TestRun_ErrCanceled(t *testing.T) {
	a := testArchive(t)
	for i := range 10 {
		putBackup(t, a, fmt.Sprintf("b%02d", i), 1, uint64(2+2*i), uint64(2+2*i), t0.Add(time.Duration(i)*time.Hour))
	}
	putSegments(t, a, 1, 1, 22)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Archive: a, Full: true, Parallel: 1, Logger: zerolog.Nop()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestRun_ControlBomb: a control object of a few KiB that decodes to
// 256 MiB (zstd) is checked with a bounded amount of memory: only its
// manifest is held.
func TestRun_ControlBomb(t *testing.T) {
	a := testArchive(t)
	b := putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 1, 3)
	ctx := context.Background()
	rc, _, err := a.Codec.Open(ctx, a.Store, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	js, err := io.ReadAll(tr)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	const size = 256 << 20
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		tw.WriteHeader(&tar.Header{Name: archive.ManifestName, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(js))})
		tw.Write(js)
		tw.WriteHeader(&tar.Header{Name: "pgdata/backup_manifest", Typeflag: tar.TypeReg, Mode: 0o600, Size: size})
		io.CopyN(tw, zeroReader{}, size)
		tw.WriteHeader(&tar.Header{Name: archive.ControlPGControl, Typeflag: tar.TypeReg, Mode: 0o600, Size: 512})
		io.CopyN(tw, zeroReader{}, 512)
		label := "START WAL LOCATION: " + b.StartLSN.String() + " (file " + b.StartWALSegment + ")\n"
		tw.WriteHeader(&tar.Header{Name: archive.ControlBackupLabel, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(label))})
		io.WriteString(tw, label)
		pw.CloseWithError(tw.Close())
	}()
	if _, err := a.Codec.Put(ctx, a.Store, b.Key, pr, -1, b.ToMetadata()); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rep := run(t, a, false)
	runtime.ReadMemStats(&after)
	if !rep.OK() {
		t.Errorf("not OK:\n%s", problems(rep))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("verify of a 256 MiB control object allocated %d MiB", alloc>>20)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// putPartial stores the first n bytes of segment name, zero-padded, as
// its .partial with the data size, as the daemon does: the last of the n
// bytes is made non-zero (a record ends there), so that its data size,
// read from the content, is n.
func putPartial(t testing.TB, a *archive.Archive, name string, n int) {
	t.Helper()
	data := segmentBytes(t, name)
	padded := append(append([]byte(nil), data[:n]...), make([]byte, len(data)-n)...)
	padded[n-1] |= 1
	sum := sha1.Sum(padded)
	md := storage.Metadata{archive.MetaHash: hex.EncodeToString(sum[:]), archive.MetaHashAlgorithm: "sha1",
		archive.MetaPartialDataSize: fmt.Sprint(n)}
	if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(name+wal.PartialSuffix), bytes.NewReader(padded), int64(len(padded)), md); err != nil {
		t.Fatal(err)
	}
}

// TestRun_PartialTail: a .partial after the newest segment extends each
// backup's reach to the end of its data, full checks decode it, and the
// report's WAL end is there; a .partial behind a newer segment is not.
func TestRun_PartialTail(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 1, 4)
	putPartial(t, a, seg(1, 5), 70000)
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if !rep.OK() {
			t.Fatalf("full=%v: not OK:\n%s", full, problems(rep))
		}
		b := rep.Backups[0]
		if want := seg(1, 5) + ".partial"; b.ReachSegment != want {
			t.Errorf("reach %s, want %s", b.ReachSegment, want)
		}
		if got, want := b.ReachLSN, pglogrepl.LSN(5*segSize+70000).String(); got != want {
			t.Errorf("reach LSN %s, want %s", got, want)
		}
		if e := rep.WALEnd; e == nil || !e.Partial || e.LSN != pglogrepl.LSN(5*segSize+70000).String() || e.StoredAt.IsZero() {
			t.Errorf("WAL end %+v", e)
		}
	}
	// Damage found by a full check ends the reach before it.
	storetest.Tamper(t, a.Store, a.Layout.WALKey(seg(1, 5)+".partial"))
	rep := run(t, a, true)
	if b := rep.Backups[0]; b.ReachSegment != seg(1, 4) || rep.OK() {
		t.Errorf("damaged .partial: reach %s OK=%v\n%s", b.ReachSegment, rep.OK(), problems(rep))
	}

	// The complete segment arrives: the .partial no longer counts.
	putSegments(t, a, 1, 5, 6)
	rep = run(t, a, false)
	if b := rep.Backups[0]; b.ReachSegment != seg(1, 6) || rep.WALEnd.Partial || rep.WALEnd.File != seg(1, 6) {
		t.Errorf("reach %s, WAL end %+v", b.ReachSegment, rep.WALEnd)
	}
}

// TestRun_ErrChunkSwappedReal: on real backups of PostgreSQL 15 whose
// chunks an older backup's were copied over (swaptest), --full names each
// swapped chunk; the backup they came from stays sound.
func TestRun_ErrChunkSwappedReal(t *testing.T) {
	s := swaptest.New(t)
	rep := run(t, s.Archive, true)
	for _, b := range rep.Backups {
		if b.Name == s.Old.Name && b.Status == StatusBroken {
			t.Errorf("the older backup is broken:\n%s", problems(rep))
		}
	}
	for _, key := range s.Swapped {
		if !strings.Contains(problems(rep), "chunk "+key+": ") {
			t.Errorf("%s not named:\n%s", key, problems(rep))
		}
	}
	if !strings.Contains(problems(rep), archive.ErrWrongObject.Error()) {
		t.Errorf("problems:\n%s", problems(rep))
	}
}

// TestRun_PartialTailReadOnce: verify reads the .partial tail's content
// once, for both the backups' reach and the report's WAL end.
func TestRun_PartialTailReadOnce(t *testing.T) {
	st := &storetest.OpenLog{Store: storage.NewMem()}
	a := archivetest.New(t, st, &archive.Codec{Compression: compress.Zstd})
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 1, 4)
	putPartial(t, a, seg(1, 5), 70000)
	rep := run(t, a, false)
	if e := rep.WALEnd; !rep.OK() || e == nil || !e.Partial {
		t.Fatalf("OK=%v, WAL end %+v\n%s", rep.OK(), e, problems(rep))
	}
	key := a.Layout.WALKey(seg(1, 5) + wal.PartialSuffix)
	if got := st.Count(key); got != 1 {
		t.Errorf("%s read %d times, want 1", key, got)
	}
}

// TestRun_MetadataKeyMissing: a backup signed with a key the
// configuration no longer holds (rotated out, or a configuration without
// the site's keys) is reported as that, with the key to add, not as
// altered metadata whose backup should be deleted.
//
// The site's older unsigned backup (PGHoard's) is then not blamed on
// stripped HMACs alone: the signed one does not verify either.
func TestRun_MetadataKeyMissing(t *testing.T) {
	a := encryptedArchive(t)
	stripHMAC(t, a, putBackup(t, a, "b0", 1, 1, 1, t0.Add(-time.Hour)))
	putBackup(t, a, "b1", 1, 2, 3, t0)
	if err := a.MarkSigned(context.Background()); err != nil {
		t.Fatal(err)
	}
	putSegments(t, a, 1, 1, 3)
	k2, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	rotated := *a
	rotated.Codec = &archive.Codec{Compression: compress.Zstd, KeyID: "k2", PublicKey: &k2.PublicKey,
		PrivateKeys: map[string]*rsa.PrivateKey{"k2": k2}}
	rep := run(t, &rotated, false)
	got := problems(rep)
	if rep.OK() || !strings.Contains(got, "signed with key k, whose public key is not in the configuration") ||
		!strings.Contains(got, "encryption_keys.k.public") {
		t.Errorf("OK=%v problems:\n%s", rep.OK(), got)
	}
	if b1 := strings.Join(rep.Backups[1].Problems, "\n"); strings.Contains(b1, "altered") || strings.Contains(b1, "delete it") {
		t.Errorf("a backup whose key is missing is called altered, to delete: %s", b1)
	}
	if b0 := strings.Join(rep.Backups[0].Problems, "\n"); !strings.Contains(b0, "lacks the public key") {
		t.Errorf("b0's problems do not say the signed backup's key may be missing: %s", b0)
	}
}

// TestRun_SystemEnd: after a pg_upgrade into the same site, the old
// cluster's WAL ends in the .partial of its last segment, which the
// upgraded cluster's WAL (another system identifier in its first page)
// follows on the same timeline. The old backup's WAL is then complete
// through the .partial: no gap, a note naming both systems and
// pg_upgrade, restorable, with and without --full. The same layout with
// the old system's own WAL after the .partial is a gap, as before.
func TestRun_SystemEnd(t *testing.T) {
	const old, upgraded = 7123456789012345678, 7000000000000000002 // waltest.Segment's system, another
	for _, tt := range []struct {
		name  string
		after []uint64 // the systems of segments 6, 7, ... after the .partial (0: none stored)
		gap   Gap      // the gap reported, none for the end of the old system's WAL
		// fullGap is the gap --full reports where it differs: it finds
		// another system's segment in the run and counts it missing.
		fullGap Gap
	}{
		{name: "OK", after: []uint64{0, upgraded, upgraded}},
		{name: "ErrSameSystem", after: []uint64{0, old, old}, gap: Gap{First: seg(1, 5), Last: seg(1, 6), Count: 2}},
		// Someone who can write to the bucket deleted segment 5 (its
		// .partial stays) and stored another system's segment as 6:
		// the old system's own 7 and 8 after it say the gap is a loss.
		{name: "ErrOwnWALAfter", after: []uint64{upgraded, old, old}, gap: Gap{First: seg(1, 5), Last: seg(1, 5), Count: 1},
			fullGap: Gap{First: seg(1, 5), Last: seg(1, 6), Count: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := testArchive(t)
			putBackupOf(t, a, "b1", 1, 2, 3, t0, fmt.Sprint(old))
			putSegments(t, a, 1, 1, 4)
			putPartial(t, a, seg(1, 5), 300000)
			for i, sys := range tt.after {
				if no := uint64(6 + i); sys != 0 {
					putSegment(t, a, seg(1, no), waltest.SegmentOf(t, seg(1, no), segSize, 0, sys))
				}
			}
			for _, full := range []bool{false, true} {
				rep := run(t, a, full)
				b := rep.Backups[0]
				if want := tt.gap; want != (Gap{}) {
					if full && tt.fullGap != (Gap{}) {
						want = tt.fullGap
					}
					if len(b.Gaps) != 1 || b.Gaps[0] != want {
						t.Errorf("full %v: gaps %+v, want %+v", full, b.Gaps, want)
					}
					if rep.OK() || strings.Contains(strings.Join(b.Notes, "\n"), "pg_upgrade") {
						t.Errorf("full %v: a gap of the backup's own system passed (OK %v) or was noted as an upgrade: %q", full, rep.OK(), b.Notes)
					}
					continue
				}
				if !rep.OK() || len(b.Gaps) != 0 || !b.Restorable {
					t.Fatalf("full %v: OK %v, gaps %+v, restorable %v; want the WAL complete through %s.partial\n%s",
						full, rep.OK(), b.Gaps, b.Restorable, seg(1, 5), problems(rep))
				}
				if b.ReachSegment != seg(1, 5)+wal.PartialSuffix || b.ReachLSN != "0/5493E0" {
					t.Errorf("full %v: reach %s at %s, want %s.partial at 0/5493E0 (300000 bytes in)", full, b.ReachSegment, b.ReachLSN, seg(1, 5))
				}
				notes := strings.Join(b.Notes, "\n")
				for _, w := range []string{seg(1, 5) + wal.PartialSuffix, seg(1, 7), fmt.Sprint(old), fmt.Sprint(upgraded), "pg_upgrade"} {
					if !strings.Contains(notes, w) {
						t.Errorf("full %v: notes do not say %s: %q", full, w, notes)
					}
				}
			}
			// hoard check's view: the chain says whose WAL follows.
			bs, err := a.ListBackups(context.Background())
			if err != nil || len(bs) != 1 {
				t.Fatalf("list backups: %v, %v", bs, err)
			}
			ch, err := CheckContinuity(context.Background(), a, bs[0])
			if err != nil {
				t.Fatal(err)
			}
			if (ch.SystemEnd != nil) != (tt.gap == (Gap{})) || ch.SystemEnd != nil && ch.SystemEnd.NextSystem != upgraded {
				t.Errorf("CheckContinuity: SystemEnd %v, want one naming %d only where no gap is reported", ch.SystemEnd, uint64(upgraded))
			}
		})
	}
}

// TestRun_UpgradedHistoryReplayStart: after a pg_upgrade into the same
// site (without keys, the files claiming their writer's system), the old
// system's 00000002.history and its WAL on timeline 2 (8 segments) stay,
// and the upgraded system's backup starts on timeline 1 beyond all of
// it. verify --full notes the old file on that backup (absent to its
// recovery), and reads none of the old segments on timeline 2 to decide
// it: the upgraded system's own WAL there could only lie at or after
// where its backups' recovery starts. Before, it read all 8 on every run.
func TestRun_UpgradedHistoryReplayStart(t *testing.T) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	log := &storetest.OpenLog{Store: storage.NewMem(), Match: func(key string) bool { return strings.Contains(key, "/xlog/00000002") }}
	a := archivetest.New(t, log, &archive.Codec{Compression: compress.Zstd})
	push := func(name string, data []byte, system uint64) {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := a.PushWAL(ctx, p, archive.PushOptions{SystemID: system}); err != nil {
			t.Fatal(err)
		}
	}
	push("00000002.history", []byte("1\t0/300000\tno recovery target specified\n"), sysOld)
	for no := uint64(3); no <= 10; no++ {
		push(seg(2, no), waltest.SegmentOf(t, seg(2, no), segSize, 0, sysOld), sysOld)
	}
	putBackupOf(t, a, "new", 1, 0x20, 0x21, t0, fmt.Sprint(sysNew))
	for no := uint64(0x20); no <= 0x22; no++ {
		push(seg(1, no), waltest.SegmentOf(t, seg(1, no), segSize, 0, sysNew), sysNew)
	}
	rep := run(t, a, true)
	if !rep.OK() {
		t.Errorf("verify --full: not OK:\n%s", problems(rep))
	}
	if notes := strings.Join(rep.Backups[0].Notes, "\n"); !strings.Contains(notes, "00000002.history") {
		t.Errorf("verify --full does not note the old system's 00000002.history: %q", notes)
	}
	if keys := log.Keys(); len(keys) != 0 {
		t.Errorf("verify --full read %d of the old system's segments on timeline 2, below the backup's start: %v", len(keys), keys)
	}
}

// TestRun_NewerBackupHistoryNoted: the newest backup's main object is
// deleted (by someone who can write the storage, or lost), so restore
// without --basebackup would restore the older one. The backup history
// file PostgreSQL archived for the deleted backup (<segment>.<offset>.backup)
// is still there, and names a start after every listed backup's: verify
// notes it, naming the file and the start, without failing (a backup that
// failed after the server ended it leaves one too). One at or before the
// newest listed backup's start is no news.
func TestRun_NewerBackupHistoryNoted(t *testing.T) {
	a := testArchive(t)
	b1 := putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 2, 7)
	ctx := context.Background()
	for _, name := range []string{
		seg(1, 2) + ".00000028.backup", // b1's own
		seg(1, 5) + ".00000028.backup", // the deleted newer backup's
	} {
		if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(name), strings.NewReader("START WAL LOCATION: ...\n"), -1, nil); err != nil {
			t.Fatal(err)
		}
	}
	rep := run(t, a, false)
	if !rep.OK() {
		t.Fatalf("not OK:\n%s", problems(rep))
	}
	notes := strings.Join(rep.Notes, "\n")
	newer := seg(1, 5) + ".00000028.backup"
	start := (wal.Segment{Timeline: 1, No: 5}.StartLSN(segSize) + 0x28).String()
	if len(rep.Notes) != 1 || !strings.Contains(notes, newer) || !strings.Contains(notes, start) || !strings.Contains(notes, b1.Name) {
		t.Errorf("notes:\n%s\nwant one naming %s, its start %s and the newest listed backup %s", notes, newer, start, b1.Name)
	}
}

// TestRun_ErrManifestFewerChunks: a control object whose manifest lists
// fewer chunks than the backup's authenticated metadata counts (here the
// second left out, both stored) restores a cluster without the files of
// the chunk left out; verify names the backup broken, in both modes.
// Both objects are authentic: only a writer holding the key (a bug in
// it) makes such a backup.
func TestRun_ErrManifestFewerChunks(t *testing.T) {
	a := encryptedArchive(t)
	b := putBackup(t, a, "b1", 1, 2, 3, t0)
	putSegments(t, a, 1, 2, 3)
	data, md := archivetest.Decode(t, a.Codec, a.Store, b.Key)
	var buf bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(data)), tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == archive.ManifestName {
			m, err := archive.ParseManifest(body)
			if err != nil {
				t.Fatal(err)
			}
			m.Chunks = m.Chunks[:1]
			if body, err = m.Marshal(); err != nil {
				t.Fatal(err)
			}
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Codec.Put(context.Background(), a.Store, b.Key, bytes.NewReader(buf.Bytes()), int64(buf.Len()), md); err != nil {
		t.Fatal(err)
	}
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if rep.OK() || rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), "lists 1 of the 2 chunks") {
			t.Errorf("full=%v: OK=%v status %s problems:\n%s", full, rep.OK(), rep.Backups[0].Status, problems(rep))
		}
	}
}

// TestRun_ChunkCountMetadata: a manifest that lists more chunks than the
// metadata counts (in a site without keys, where nothing authenticates
// the count) restores every chunk it lists: a problem, not broken. A
// count altered without the key makes the metadata fail to authenticate,
// which is the problem reported, and is not compared: the backup is not
// called broken on its word.
func TestRun_ChunkCountMetadata(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a      *archive.Archive
		count  string
		status string
		want   string
	}{
		{"More", testArchive(t), "1", StatusLimited, "its manifest lists 2 chunks, the backup's metadata counts 1"},
		{"ErrAltered", encryptedArchive(t), "3", StatusLimited, "metadata does not authenticate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.a
			b := putBackup(t, a, "b1", 1, 2, 3, t0)
			putSegments(t, a, 1, 2, 3)
			ctx := context.Background()
			rc, o, err := a.Store.Open(ctx, b.Key)
			if err != nil {
				t.Fatal(err)
			}
			md := maps.Clone(o.Metadata)
			md[archive.MetaChunkCount] = tc.count
			err = a.Store.Put(ctx, b.Key, rc, md)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			for _, full := range []bool{false, true} {
				rep := run(t, a, full)
				if rep.OK() || rep.Backups[0].Status != tc.status || !strings.Contains(problems(rep), tc.want) ||
					strings.Contains(problems(rep), "chunks the backup's metadata counts") {
					t.Errorf("full=%v: OK=%v status %s problems:\n%s", full, rep.OK(), rep.Backups[0].Status, problems(rep))
				}
			}
		})
	}
}

// TestRun_HistoryKeyRemoved: a timeline history file stored under a key
// whose private half was removed after a rotation (retention deletes the
// key's backups and WAL, never a history file) is named by verify --full
// with the key to put back, as docs/security.md (Rotation) says; verify
// without --full decodes no history file, as verifying.md says.
func TestRun_HistoryKeyRemoved(t *testing.T) {
	a := encryptedArchive(t) // key k, before the rotation
	putSegments(t, a, 1, 4, 5)
	putHistory(t, a, 2, "1\t0/500100\tno recovery target specified\n")
	k2, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	rotated := *a
	rotated.Codec = &archive.Codec{Compression: compress.Zstd, KeyID: "k2", PublicKey: &k2.PublicKey, RequireEncryption: true,
		PrivateKeys: map[string]*rsa.PrivateKey{"k2": k2},
		PublicKeys:  map[string]*rsa.PublicKey{"k": a.Codec.PublicKey, "k2": &k2.PublicKey}}
	// After the rotation: a backup and WAL on timeline 2 under k2, k's
	// WAL deleted by retention, its history file left.
	putBackup(t, &rotated, "b1", 2, 5, 6, t0)
	putSegments(t, &rotated, 2, 5, 7)
	for no := uint64(4); no <= 5; no++ {
		if err := a.Store.Delete(context.Background(), a.Layout.WALKey(seg(1, no))); err != nil {
			t.Fatal(err)
		}
	}
	if rep := run(t, &rotated, false); !rep.OK() {
		t.Errorf("without --full: not OK:\n%s", problems(rep))
	}
	rep := run(t, &rotated, true)
	got := problems(rep)
	if rep.OK() || !strings.Contains(got, "timeline history "+rotated.Layout.WALKey(wal.HistoryFileName(2))) || !strings.Contains(got, "encryption_keys.k.private") {
		t.Errorf("--full: OK=%v, want a problem naming %s and encryption_keys.k.private:\n%s", rep.OK(), wal.HistoryFileName(2), got)
	}
}
