package basebackup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pglogrepl"
)

// pgManifestFile is one file of PostgreSQL's backup_manifest.
type pgManifestFile struct {
	path   string // relative to the data directory
	size   int64
	mtime  time.Time
	crc32c uint32
}

// walRange is one WAL-Ranges entry of backup_manifest: the WAL of a
// timeline a restore of the backup replays.
type walRange struct {
	tli        uint32
	start, end pglogrepl.LSN
}

// pgManifest writes PostgreSQL's backup_manifest for a backup hoard read
// itself, byte for byte in the layout the server writes
// (src/backend/backup/backup_manifest.c), so that pg_verifybackup checks a
// restored directory as it checks pg_basebackup's: version 1 before
// PostgreSQL 17, version 2 with the System-Identifier from 17 on, CRC32C
// file checksums, and the SHA-256 of everything before the
// Manifest-Checksum line.
func pgManifest(version int, systemID string, files []pgManifestFile, ranges []walRange) ([]byte, error) {
	var b bytes.Buffer
	if version >= 170000 {
		if _, err := strconv.ParseUint(systemID, 10, 64); err != nil {
			return nil, fmt.Errorf("backup_manifest: system identifier %q: %w", systemID, err)
		}
		fmt.Fprintf(&b, "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": %s,\n\"Files\": [", systemID)
	} else {
		b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [")
	}
	for i, f := range files {
		if i == 0 {
			b.WriteString("\n")
		} else {
			b.WriteString(",\n")
		}
		if utf8.ValidString(f.path) {
			var p bytes.Buffer
			enc := json.NewEncoder(&p)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(f.path); err != nil {
				return nil, fmt.Errorf("backup_manifest: %w", err)
			}
			fmt.Fprintf(&b, "{ \"Path\": %s, ", bytes.TrimSuffix(p.Bytes(), []byte("\n")))
		} else {
			fmt.Fprintf(&b, "{ \"Encoded-Path\": \"%s\", ", hex.EncodeToString([]byte(f.path)))
		}
		var sum [4]byte
		// pg_checksum_final copies the CRC's bytes in memory order.
		binary.NativeEndian.PutUint32(sum[:], f.crc32c)
		fmt.Fprintf(&b, "\"Size\": %d, \"Last-Modified\": \"%s\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"%s\" }",
			f.size, f.mtime.UTC().Format("2006-01-02 15:04:05")+" GMT", hex.EncodeToString(sum[:]))
	}
	b.WriteString("\n],\n\"WAL-Ranges\": [\n")
	for i, r := range ranges {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, "{ \"Timeline\": %d, \"Start-LSN\": \"%s\", \"End-LSN\": \"%s\" }", r.tli, r.start, r.end)
	}
	b.WriteString("\n],\n")
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:]))
	return b.Bytes(), nil
}
