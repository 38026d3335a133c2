package hostile

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"testing"
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
