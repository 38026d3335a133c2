package hostile

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
)

// PGManifestJSON is a backup_manifest as PostgreSQL writes it
// (backup_manifest.c) listing files, path → bytes: CRC32C checksums, the
// CRC's bytes in the server's byte order as hex (pg_checksum_final).
func PGManifestJSON(t testing.TB, files map[string]string) string {
	t.Helper()
	type entry struct {
		Path      string `json:"Path"`
		Size      int    `json:"Size"`
		Modified  string `json:"Last-Modified"`
		Algorithm string `json:"Checksum-Algorithm"`
		Checksum  string `json:"Checksum"`
	}
	var m struct {
		Version int     `json:"PostgreSQL-Backup-Manifest-Version"`
		Files   []entry `json:"Files"`
		Ranges  []any   `json:"WAL-Ranges"`
		Sum     string  `json:"Manifest-Checksum"`
	}
	m.Version, m.Ranges, m.Sum = 1, []any{}, "0000000000000000000000000000000000000000000000000000000000000000"
	for p, body := range files {
		var sum [4]byte
		binary.NativeEndian.PutUint32(sum[:], crc32.Checksum([]byte(body), crc32.MakeTable(crc32.Castagnoli)))
		m.Files = append(m.Files, entry{Path: p, Size: len(body), Modified: "2026-01-02 03:00:00 GMT", Algorithm: "CRC32C", Checksum: hex.EncodeToString(sum[:])})
	}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

// The files of DeltaPGManifest's backup, by path.
const (
	DeltaRelFile   = "base/1/2222"                            // a delta object
	DeltaOtherFile = "base/1/3333"                            // another delta object of the same size
	DeltaSpcFile   = "pg_tblspc/16400/PG_15_202209061/5/6666" // a delta object of tablespace ts (OID 16400)
	DeltaEmbedFile = "pg_xact/0000"                           // embedded in the delta manifest
	DeltaBundled   = "base/1/5555"                            // in a second bundle
)

// DeltaPGManifest is one of hoard's delta backups holding a
// backup_manifest (hoard-pg-manifest), as maps a test edits before Backup
// builds it: restore's and verify's tests alter one of them and expect
// the file named.
type DeltaPGManifest struct {
	// Read is what the backup read, path → bytes: the benign bundle's
	// files (benignBundle), three delta objects, an embedded file, a
	// second bundle's file, and the control tar's pg_control and
	// backup_label (Put). Tests do not change it.
	Read map[string]string
	// Listed is what its backup_manifest lists, path → bytes: Read.
	Listed map[string]string
	// Delta is the delta manifest's files by path.
	Delta map[string]*archive.DeltaFile
	// Objects are the delta objects, digest → bytes.
	Objects map[string]string
	// Bundle is the second bundle's files, path → bytes.
	Bundle map[string]string
}

// NewDeltaPGManifest returns the sound backup.
func NewDeltaPGManifest() *DeltaPGManifest {
	read := map[string]string{
		"PG_VERSION":        "15\n",
		"base/1/1259":       strings.Repeat("r", 8192),
		DeltaRelFile:        strings.Repeat("x", 8192),
		DeltaOtherFile:      strings.Repeat("y", 8192),
		DeltaSpcFile:        strings.Repeat("t", 8192),
		DeltaEmbedFile:      strings.Repeat("e", 100),
		DeltaBundled:        strings.Repeat("b", 200),
		"global/pg_control": strings.Repeat("c", PGControlSize),
		"backup_label":      "START WAL LOCATION: 0/200028 (file " + StartSegment + ")\n",
	}
	d := &DeltaPGManifest{Read: read, Listed: maps.Clone(read), Delta: map[string]*archive.DeltaFile{},
		Objects: map[string]string{}, Bundle: map[string]string{DeltaBundled: read[DeltaBundled]}}
	for _, p := range []string{DeltaRelFile, DeltaOtherFile, DeltaSpcFile} {
		d.Delta[p] = &archive.DeltaFile{RelativePath: p, FileSize: int64(len(read[p])), Hexdigest: Digest(read[p])}
		d.Objects[Digest(read[p])] = read[p]
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(read[DeltaEmbedFile]))
	d.Delta[DeltaEmbedFile] = &archive.DeltaFile{RelativePath: DeltaEmbedFile, FileSize: int64(len(read[DeltaEmbedFile])), ContentB64: &b64}
	d.Delta[DeltaBundled] = &archive.DeltaFile{RelativePath: DeltaBundled, FileSize: int64(len(read[DeltaBundled])), ShouldBeBundled: true}
	return d
}

// Backup is the backup as d's maps say now, its tablespace ts at a
// location that does not exist. The delta manifest lists its files in a
// fixed order, then any other file added to Delta in path order.
func (d *DeltaPGManifest) Backup(t testing.TB) Backup {
	t.Helper()
	b := Backup{Name: "2026-01-02_03-00_0", PGManifest: true,
		Tablespaces:  map[string]archive.ManifestTablespace{"ts": {Path: "/nonexistent/ts", OID: 16400}},
		DeltaObjects: d.Objects,
		Control:      []Member{{Name: archive.ControlPGManifest, Body: PGManifestJSON(t, d.Listed)}}}
	order := []string{DeltaRelFile, DeltaOtherFile, DeltaSpcFile, DeltaEmbedFile, DeltaBundled}
	for _, p := range slices.Sorted(maps.Keys(d.Delta)) {
		if !slices.Contains(order, p) {
			order = append(order, p)
		}
	}
	for _, p := range order {
		if f := d.Delta[p]; f != nil {
			b.Delta = append(b.Delta, *f)
		}
	}
	var members []Member
	for _, p := range slices.Sorted(maps.Keys(d.Bundle)) {
		members = append(members, Member{Name: p, Body: d.Bundle[p]})
	}
	b.Chunks = [][]Member{members}
	return b
}
