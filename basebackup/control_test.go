package basebackup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// controlInputs is a synthetic backup of n files in ten chunks, with
// names JSON escapes (HTML characters, a quote, a backslash, non-ASCII)
// and names that are not UTF-8 (backup_manifest's Encoded-Path).
func controlInputs(n int) (*archive.Manifest, *outcome, []pgManifestFile) {
	t0 := time.Date(2026, 12, 7, 18, 0, 0, 123456789, time.UTC)
	m := &archive.Manifest{
		BackupStartTime: archive.LabelTime{Time: t0.Truncate(time.Second)}, BackupStartWALSegment: "000000010000000000000002",
		BackupEndTime: archive.ManifestTime{Time: t0.Add(time.Minute)}, BackupEndWALSegment: "000000010000000000000003",
		PGData: "/var/lib/postgresql/data", PGHoardObject: "basebackup", PGHoardVersion: "hoard-test", Host: "h<&>\"chunks\":[]",
		Tablespaces: map[string]archive.ManifestTablespace{"ts\u2028": {Path: "/ts", OID: 16400}},
		Hoard: &archive.HoardManifest{StartLSN: "0/2000028", EndLSN: "0/3000100", StartTimeline: 1, EndTimeline: 1, SystemID: "7312345678901234567",
			WALSegmentSize: 16 << 20, PGVersion: 170002, PGManifest: true, Source: SourceBaseBackup},
	}
	var files []pgManifestFile
	per := (n + 9) / 10
	for c := 0; c*per < n; c++ {
		ch := archive.ManifestChunk{ChunkFilename: fmt.Sprintf("2026-12-07_18-00_0/2026-12-07_18-00_0.pghoard-%08d", c+1), InputSize: int64(c) * 1000, ResultSize: 77, HMAC: "abcdef"}
		for i := c * per; i < min(n, (c+1)*per); i++ {
			p := fmt.Sprintf("pgdata/base/16384/%d", 100000+i)
			if i%1000 == 7 {
				p = fmt.Sprintf("pgdata/base/16384/x<y>&\"z\\%d\u00e9", i)
			}
			if i%5000 == 9 {
				p = fmt.Sprintf("pgdata/base/bad\xff%d", i)
			}
			ch.Files = append(ch.Files, p)
			files = append(files, pgManifestFile{path: p[len("pgdata/"):], size: int64(i * 8192), mtime: t0.Add(time.Duration(i) * time.Second), crc32c: uint32(i * 2654435761)})
		}
		m.Chunks = append(m.Chunks, ch)
	}
	h := func(name string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Uid: 999, Gid: 999, ModTime: t0}
	}
	oc := &outcome{endTime: t0.Add(time.Minute),
		pgControl:     &member{h: h("global/pg_control"), data: make([]byte, 8192)},
		backupLabel:   &member{h: h("backup_label"), data: []byte("START WAL LOCATION: 0/2000028\n")},
		tablespaceMap: &member{h: h("tablespace_map"), data: []byte("16400 /ts\n")},
	}
	return m, oc, files
}

// buildControl writes backup_manifest and the control tar of inputs as
// storeControl does, and reads the control tar back into sink.
func buildControl(t testing.TB, dir string, m *archive.Manifest, oc *outcome, files []pgManifestFile, sink io.Writer) {
	t.Helper()
	pm, err := newSpool(dir, "backup_manifest")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	ranges := []walRange{{tli: 1, start: 0x2000028, end: 0x3000100}}
	if err := pgManifest(pm, 170002, "7312345678901234567", slices.Values(files), ranges); err != nil {
		t.Fatal(err)
	}
	oc.pgManifest = pm
	ctl, err := writeControl(dir, m, oc)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	r, err := ctl.reader()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(sink, r)
	if err != nil {
		t.Fatal(err)
	}
	if n != ctl.size() {
		t.Fatalf("control tar read back %d bytes, size %d", n, ctl.size())
	}
}

// TestWriteControl_SameBytes checks that the control tar is the one hoard
// wrote when it built it in memory: the digests are those of controlTar
// and the in-memory pgManifest before they were streamed (main at
// 5b59ccb, the same inputs).
func TestWriteControl_SameBytes(t *testing.T) {
	m, oc, files := controlInputs(200_000)
	sum := sha256.New()
	buildControl(t, t.TempDir(), m, oc, files, sum)
	const want = "75d2698f8a868b9ae82571f96976a039e47e6d9e8fae5f90ff9b0061a044be9f"
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		t.Errorf("control tar SHA-256 %s, want %s (what hoard wrote before)", got, want)
	}
	var pm bytes.Buffer
	if err := pgManifest(&pm, 170002, "7312345678901234567", slices.Values(files), []walRange{{tli: 1, start: 0x2000028, end: 0x3000100}}); err != nil {
		t.Fatal(err)
	}
	const wantPM = "c4f1bf187af5caec1769262b3c958debfb89bacaa591381b94f8faf3a28b2b1c"
	if got := fmt.Sprintf("%x", sha256.Sum256(pm.Bytes())); got != wantPM {
		t.Errorf("backup_manifest SHA-256 %s, want %s (what hoard wrote before)", got, wantPM)
	}
}

// TestWriteManifest_AsMarshal checks that the streamed manifest JSON is
// json.Marshal's, in the cases the splitting must get right.
func TestWriteManifest_AsMarshal(t *testing.T) {
	m, _, _ := controlInputs(50)
	nilFiles := *m
	nilFiles.Chunks = slices.Clone(m.Chunks)
	nilFiles.Chunks[1].Files = nil
	nilFiles.Chunks[2].Files = []string{}
	delta := *m
	delta.DeltaManifest = json.RawMessage(`{"chunks":[],"files":[]}`)
	delta.DeltaStats = json.RawMessage(`{"a":1}`)
	for name, m := range map[string]*archive.Manifest{
		"files": m, "no chunks": {Host: "x"}, "empty chunks": {Chunks: []archive.ManifestChunk{}},
		"nil or empty files": &nilFiles, "delta": &delta,
	} {
		want, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := writeManifest(&got, m, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: writeManifest\n%s\nwant json.Marshal's\n%s", name, got.Bytes(), want)
		}
		// The names from a fileLister (chunks without Files), as a
		// backup writes them: a chunk of no names has a nil list.
		if m.Chunks == nil {
			continue
		}
		bare := *m
		bare.Chunks = slices.Clone(m.Chunks)
		for i := range bare.Chunks {
			bare.Chunks[i].Files = nil
			if len(m.Chunks[i].Files) == 0 {
				m.Chunks[i].Files = nil
			}
		}
		if want, err = m.Marshal(); err != nil {
			t.Fatal(err)
		}
		got.Reset()
		next := 0
		lister := func(i int, fn func(string) error) error {
			if i != next {
				t.Fatalf("%s: lister asked for chunk %d, want %d", name, i, next)
			}
			next++
			for _, f := range m.Chunks[i].Files {
				if err := fn(f); err != nil {
					return err
				}
			}
			return nil
		}
		if err := writeManifest(&got, &bare, lister); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: writeManifest with a fileLister\n%s\nwant json.Marshal's\n%s", name, got.Bytes(), want)
		}
	}
}

// TestWriteControl_MemoryBounded checks that the end of a backup of
// 200 000 files holds none of its control object's parts whole in
// memory: backup_manifest and the control tar written and read back
// allocate less than 1 MiB in all (runtime.MemStats.TotalAlloc, which
// counts every allocation, freed or not), for a control tar of 36 MB.
// Built in memory they allocated 296 MB.
func TestWriteControl_MemoryBounded(t *testing.T) {
	m, oc, files := controlInputs(200_000)
	dir := t.TempDir()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buildControl(t, dir, m, oc, files, io.Discard)
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d bytes", got)
	if got > 1<<20 {
		t.Errorf("writing the control object of 200 000 files allocated %d bytes, want at most 1 MiB", got)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("spool files left in %s: %v", dir, left)
	}
}

// TestSpool_ChangedOnDisk checks that a spool the disk changed between
// writing and reading it back fails the read, as a permanent error naming
// the directory, instead of being stored.
func TestSpool_ChangedOnDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := newSpool(dir, "backup_manifest")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write(bytes.Repeat([]byte("x"), 100_000)); err != nil {
		t.Fatal(err)
	}
	r, err := s.reader()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.f.WriteAt([]byte("y"), 50_000); err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, r)
	var ce *stagedChangedError
	if !errors.As(err, &ce) || !errors.Is(err, storage.ErrPermanent) {
		t.Fatalf("read of a changed spool: %v, want a stagedChangedError", err)
	}
	t.Log(err)
	// Truncated.
	if err := s.f.Truncate(10); err != nil {
		t.Fatal(err)
	}
	r, _ = s.reader()
	if _, err := io.Copy(io.Discard, r); !errors.As(err, &ce) {
		t.Fatalf("read of a truncated spool: %v, want a stagedChangedError", err)
	}
}
