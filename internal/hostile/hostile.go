// Package hostile builds malicious basebackups for tests, from Go code
// (no binary blobs): backups whose chunks or control object hold links,
// hard links, devices, FIFOs, sparse files, names that climb out of the
// target, a member twice or over its chunk's size, and manifests with chunk
// names or tablespace paths that leave their place. It is what someone who
// can write to the storage but holds no key could store.
//
// Cases lists them with what restore must refuse and name; Env is a fresh
// parent directory holding the restore target and the files a hostile
// backup aims at, and Snapshot records a tree so that a test can assert
// that a refused restore changed nothing outside its target.
package hostile

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// Member is one member of a hostile tar.
type Member struct {
	Name string
	Type byte // tar.TypeReg when 0
	Body string
	Link string
	Mode int64 // 0: 0600 for files, 0700 for directories
	// PAX are the member's PAX records; a tar.TypeXGlobalHeader member is
	// these records alone.
	PAX map[string]string
	// Raw, when set, is the member's header and data blocks as they go into
	// the tar: for what archive/tar will not write (sparse files, a size
	// the data does not have).
	Raw []byte
}

// Backup is a hostile backup: its name, the members of each chunk, and
// what its control object holds.
type Backup struct {
	Name string
	// Chunks are the members of each data chunk, after a first chunk Put
	// adds with what makes a benign backup restorable (PG_VERSION, a
	// relation file, the directories).
	Chunks [][]Member
	// Control are members of the control tar after the manifest,
	// pg_control, backup_label and the excluded directories.
	Control     []Member
	Tablespaces map[string]archive.ManifestTablespace
	// Manifest, when set, changes the manifest before it is stored.
	Manifest func(*archive.Manifest)
	// ControlTar, when set, is the whole control tar, as is.
	ControlTar []byte
	// NoLabel leaves backup_label out of the control tar.
	NoLabel bool
	// ChunkTars, when set, replace the tars built from Chunks (after the
	// first, benign one); the manifest records their sizes.
	ChunkTars [][]byte

	// Delta, DeltaDirs and DeltaObjects make the backup a delta one
	// (pghoard-delta-v2) when any is set: the chunks are its bundles
	// (under basebackup_delta_chunk/, members named relative to the data
	// directory, the first one benign), its manifest lists the benign
	// bundle's files, then Delta, its directories DeltaDirs, and
	// DeltaObjects are stored as basebackup_delta/<name>.
	Delta        []archive.DeltaFile
	DeltaDirs    []string
	DeltaObjects map[string]string

	// PGControl, when set, is the control tar's pg_control instead of
	// PGControlSize bytes of "c".
	PGControl string
	// PGManifest records in the control object's metadata that the
	// control tar holds PostgreSQL's backup_manifest
	// (hoard-pg-manifest), as hoard's backups do; the test puts it in
	// Control.
	PGManifest bool

	// Parent names the backup this one is an incremental of in the
	// control object's metadata (hoard-incremental-parent); the test
	// records it in the manifest's hoard block too, through Manifest.
	Parent string

	// Signed signs the control object's metadata with a's codec
	// (Codec.SignBackup), as hoard signs the backups it takes in a site
	// with keys; without it the backup is unsigned, as PGHoard's are.
	Signed bool
}

// IsDelta reports whether b is a delta backup.
func (b Backup) IsDelta() bool { return b.Delta != nil || b.DeltaDirs != nil || b.DeltaObjects != nil }

// Stored names what Put stored.
type Stored struct {
	Name       string
	ControlKey string
	ChunkKeys  []string // ChunkKeys[0] is the benign first chunk
}

// SegmentSize is the WAL segment size of every hostile backup: 1 MiB
// keeps the archived WAL small.
const SegmentSize = 1 << 20

// The WAL segments from a hostile backup's start to its end, which Put
// stores so that restore's WAL check passes.
const (
	StartSegment = "000000010000000000000002"
	EndSegment   = "000000010000000000000003"
)

// PGControlSize is PostgreSQL's PG_CONTROL_FILE_SIZE.
const PGControlSize = 8192

// Put stores b in a through a's codec: its chunks, its control object and
// WAL segments StartSegment and EndSegment (timeline 1, SegmentSize).
func Put(t testing.TB, a *archive.Archive, b Backup) Stored {
	t.Helper()
	ctx := context.Background()
	s := Stored{Name: b.Name, ControlKey: a.Layout.BackupKey(b.Name)}
	m := &archive.Manifest{
		BackupStartWALSegment: StartSegment, BackupEndWALSegment: EndSegment,
		PGHoardObject: "basebackup", PGHoardVersion: "hostile", Host: "attacker",
		Tablespaces: b.Tablespaces,
	}
	if m.Tablespaces == nil {
		m.Tablespaces = map[string]archive.ManifestTablespace{}
	}
	first := benign()
	chunkKey := a.Layout.ChunkKey
	if b.IsDelta() {
		first = benignBundle()
		chunkKey = a.Layout.DeltaChunkKey
	}
	tars := [][]byte{Tar(t, first...)}
	if b.ChunkTars != nil {
		tars = append(tars, b.ChunkTars...)
	} else {
		for _, members := range b.Chunks {
			tars = append(tars, Tar(t, members...))
		}
	}
	var plain, stored int64
	for i, data := range tars {
		cf := archive.ChunkFilename(b.Name, i+1)
		key := chunkKey(cf)
		st, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(data), int64(len(data)), storage.Metadata{archive.MetaFormat: archive.FormatBBv2})
		if err != nil {
			t.Fatalf("store chunk %s: %v", key, err)
		}
		s.ChunkKeys = append(s.ChunkKeys, key)
		m.Chunks = append(m.Chunks, archive.ManifestChunk{ChunkFilename: cf, InputSize: int64(len(data)), ResultSize: st.StoredSize,
			Files: memberNames(data)})
		plain += int64(len(data))
		stored += st.StoredSize
	}
	format := archive.FormatBBv2
	if b.IsDelta() {
		format = archive.FormatDeltaV2
		m.DeltaManifest = deltaManifest(t, first, b)
		for name, body := range b.DeltaObjects {
			key := a.Layout.DeltaKey(name)
			md := storage.Metadata{archive.MetaFormat: format, archive.MetaOriginalFileSize: fmt.Sprint(len(body))}
			if _, err := a.Codec.Put(ctx, a.Store, key, strings.NewReader(body), int64(len(body)), md); err != nil {
				t.Fatalf("store delta object %s: %v", key, err)
			}
		}
	}
	if b.Manifest != nil {
		b.Manifest(m)
	}
	control := b.ControlTar
	if control == nil {
		js, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		members := []Member{
			{Name: archive.ManifestName, Body: string(js)},
			{Name: archive.ControlPGControl, Body: cmp.Or(b.PGControl, strings.Repeat("c", PGControlSize))},
		}
		if !b.NoLabel {
			members = append(members, Member{Name: archive.ControlBackupLabel, Body: "START WAL LOCATION: 0/200028 (file " + StartSegment + ")\n"})
		}
		for _, d := range archive.ControlEmptyDirs {
			members = append(members, Member{Name: d, Type: tar.TypeDir})
		}
		control = Tar(t, append(members, b.Control...)...)
	}
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	info := &archive.BackupInfo{
		Format: format, StartWALSegment: StartSegment, EndWALSegment: EndSegment,
		StartTime: start, EndTime: start.Add(time.Minute), StartLSN: 0x200028, EndLSN: 0x300100,
		StartTimeline: 1, EndTimeline: 1, WALSegmentSize: SegmentSize, PGVersion: 150004,
		TotalSizePlain: plain, TotalSizeEnc: stored, ChunkCount: len(tars), Site: a.Site, PGManifest: b.PGManifest,
		Parent: b.Parent,
	}
	md := info.ToMetadata()
	if b.Signed {
		if err := a.Codec.SignBackup(b.Name, md); err != nil {
			t.Fatalf("sign control object %s: %v", s.ControlKey, err)
		}
	}
	if _, err := a.Codec.Put(ctx, a.Store, s.ControlKey, bytes.NewReader(control), int64(len(control)), md); err != nil {
		t.Fatalf("store control object %s: %v", s.ControlKey, err)
	}
	for _, seg := range []string{StartSegment, EndSegment} {
		if _, err := a.Store.Stat(ctx, a.Layout.WALKey(seg)); err == nil {
			continue // stored for another backup of the site
		}
		data := waltest.Segment(t, seg, SegmentSize, 1)
		if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(seg), bytes.NewReader(data), int64(len(data)), nil); err != nil {
			t.Fatalf("store WAL %s: %v", seg, err)
		}
	}
	return s
}

// memberNames lists the members of tar data as PGHoard and hoard list a
// chunk's "files" (directories without their trailing "/"); nil when
// Go's tar reader cannot read it to its end (a hostile tar whose refusal
// is the test's business).
func memberNames(data []byte) []string {
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			return nil
		}
		out = append(out, strings.TrimSuffix(h.Name, "/"))
	}
}

// benign is the first chunk of every hostile backup: what a restore needs
// to get to its recovery configuration.
func benign() []Member {
	return []Member{
		{Name: "pgdata", Type: tar.TypeDir},
		{Name: "pgdata/PG_VERSION", Body: "15\n"},
		{Name: "pgdata/global", Type: tar.TypeDir},
		{Name: "pgdata/base", Type: tar.TypeDir},
		{Name: "pgdata/base/1", Type: tar.TypeDir},
		{Name: "pgdata/base/1/1259", Body: strings.Repeat("r", 8192)},
	}
}

// benignBundle is the first bundle of every hostile delta backup: the
// files of benign, named relative to the data directory, as PGHoard's
// bundles hold them (regular files only).
func benignBundle() []Member {
	var out []Member
	for _, m := range benign() {
		if m.Type == 0 {
			out = append(out, Member{Name: strings.TrimPrefix(m.Name, "pgdata/"), Body: m.Body})
		}
	}
	return out
}

// deltaManifest is the "manifest" of a hostile delta backup: the files of
// its benign bundle, then b.Delta; the directories of benign, then
// b.DeltaDirs.
func deltaManifest(t testing.TB, bundle []Member, b Backup) []byte {
	t.Helper()
	var dm archive.DeltaManifest
	st := &dm.SnapshotResult.State
	st.RootGlobs = []string{"**/*"}
	st.EmptyDirs = []string{"."}
	for _, m := range benign() {
		if m.Type == tar.TypeDir && m.Name != "pgdata" {
			st.EmptyDirs = append(st.EmptyDirs, strings.TrimPrefix(m.Name, "pgdata/"))
		}
	}
	st.EmptyDirs = append(st.EmptyDirs, b.DeltaDirs...)
	for _, m := range bundle {
		st.Files = append(st.Files, archive.DeltaFile{RelativePath: m.Name, FileSize: int64(len(m.Body)), ShouldBeBundled: true})
	}
	st.Files = append(st.Files, b.Delta...)
	js, err := json.Marshal(dm)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Digest is the name of a delta object holding body: its BLAKE2s-256, hex.
func Digest(body string) string {
	h := archive.NewDeltaHash()
	h.Write([]byte(body))
	return hex.EncodeToString(h.Sum(nil))
}

// Tar builds a tar of members; Raw members go in as they are.
func Tar(t testing.TB, members ...Member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range members {
		if e.Raw != nil {
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			buf.Write(e.Raw)
			continue
		}
		if e.Type == tar.TypeXGlobalHeader {
			if err := tw.WriteHeader(&tar.Header{Typeflag: e.Type, PAXRecords: e.PAX}); err != nil {
				t.Fatalf("tar global header: %v", err)
			}
			continue
		}
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Link, ModTime: time.Unix(1767236400, 0), PAXRecords: e.PAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if h.Mode == 0 {
			h.Mode = 0o600
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o700
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar member %q: %v", e.Name, err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// RawHeader builds a 512-byte tar header by hand, for what archive/tar
// will not write. ustar selects the POSIX magic, else GNU's; patch may set
// more fields before the checksum is computed.
func RawHeader(name string, typ byte, size int64, ustar bool, patch func(h []byte)) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	octal(h[100:108], 0o600)
	octal(h[108:116], 0)
	octal(h[116:124], 0)
	octal(h[124:136], size)
	octal(h[136:148], 1767236400)
	h[156] = typ
	if ustar {
		copy(h[257:265], "ustar\x0000")
	} else {
		copy(h[257:265], "ustar  \x00")
	}
	if patch != nil {
		patch(h)
	}
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	octal(h[148:155], sum)
	h[155] = ' '
	return h
}

// octal writes v as a NUL-terminated octal field filling dst, or in GNU's
// base-256 form (high bit set, big-endian) when it does not fit.
func octal(dst []byte, v int64) {
	if v >= 1<<(3*(len(dst)-1)) {
		for i := len(dst) - 1; i > 0; i-- {
			dst[i] = byte(v)
			v >>= 8
		}
		dst[0] = 0x80
		return
	}
	s := []byte(strings.Repeat("0", len(dst)-1))
	for i := len(s) - 1; i >= 0 && v > 0; i-- {
		s[i] = byte('0' + v%8)
		v /= 8
	}
	copy(dst, append(s, 0))
}

// pad fills data up to whole 512-byte blocks.
func pad(data []byte) []byte {
	return append(data, make([]byte, (512-len(data)%512)%512)...)
}

// GNUSparse is a member in GNU's old sparse format ('S') of realsize
// bytes, stored as the single byte at its end: extracted naively, a few
// hundred stored bytes become a realsize file.
func GNUSparse(name string, realsize int64) Member {
	h := RawHeader(name, 'S', 1, false, func(h []byte) {
		// One sparse entry at 386 (offset, length), the real size at 483.
		octal(h[386:398], realsize-1)
		octal(h[398:410], 1)
		octal(h[483:495], realsize)
	})
	return Member{Name: name, Raw: append(h, pad([]byte("x"))...)}
}

// PAXSparse is a member in GNU's PAX sparse format 0.1 (GNU.sparse.*
// records, which archive/tar expands into holes) of realsize bytes, stored
// as the single byte at its end.
func PAXSparse(name string, realsize int64) Member {
	recs := PAXRecords("GNU.sparse.numblocks", "1", "GNU.sparse.map", fmt.Sprintf("%d,1", realsize-1),
		"GNU.sparse.name", name, "GNU.sparse.size", fmt.Sprint(realsize))
	data := RawHeader("PaxHeaders/sparse", 'x', int64(len(recs)), true, nil)
	data = append(data, pad([]byte(recs))...)
	data = append(data, RawHeader("GNUSparseFile.0/sparse", '0', 1, true, nil)...)
	return Member{Name: name, Raw: append(data, pad([]byte("x"))...)}
}

// PAXRecords encodes key, value pairs as the records of a PAX header:
// "<length> <key>=<value>\n", the length counting itself.
func PAXRecords(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		rec := " " + kv[i] + "=" + kv[i+1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		b.WriteString(fmt.Sprint(n) + rec)
	}
	return b.String()
}

// Declared is a regular file member whose header declares size bytes but
// whose data is only the first block: a huge declared size.
func Declared(name string, size int64) Member {
	return Member{Name: name, Raw: append(RawHeader(name, '0', size, true, nil), make([]byte, 512)...)}
}
