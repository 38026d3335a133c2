package basebackup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"iter"
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
// itself into w, byte for byte in the layout the server writes
// (src/backend/backup/backup_manifest.c), so that pg_verifybackup checks a
// restored directory as it checks pg_basebackup's: version 1 before
// PostgreSQL 17, version 2 with the System-Identifier from 17 on, CRC32C
// file checksums, and the SHA-256 of everything before the
// Manifest-Checksum line. It is written a file at a time, with no
// allocation per file: it grows with the number of files.
func pgManifest(w io.Writer, version int, systemID string, files iter.Seq[pgManifestFile], ranges []walRange) error {
	sha := sha256.New()
	// b keeps its first write error and returns it from Flush.
	b := bufio.NewWriterSize(io.MultiWriter(w, sha), 64<<10)
	if version >= 170000 {
		if _, err := strconv.ParseUint(systemID, 10, 64); err != nil {
			return fmt.Errorf("backup_manifest: system identifier %q: %w", systemID, err)
		}
		fmt.Fprintf(b, "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": %s,\n\"Files\": [", systemID)
	} else {
		_, _ = b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [")
	}
	var (
		path  string // the file's, for enc (a pointer to it allocates once)
		p     bytes.Buffer
		line  = make([]byte, 0, 512)
		first = true
	)
	enc := json.NewEncoder(&p)
	enc.SetEscapeHTML(false)
	for f := range files {
		line = line[:0]
		if first {
			line = append(line, '\n')
			first = false
		} else {
			line = append(line, ",\n"...)
		}
		if utf8.ValidString(f.path) {
			p.Reset()
			path = f.path
			if err := enc.Encode(&path); err != nil {
				return fmt.Errorf("backup_manifest: %w", err)
			}
			line = append(line, "{ \"Path\": "...)
			line = append(line, bytes.TrimSuffix(p.Bytes(), []byte("\n"))...)
			line = append(line, ", "...)
		} else {
			line = append(line, "{ \"Encoded-Path\": \""...)
			line = hex.AppendEncode(line, []byte(f.path))
			line = append(line, "\", "...)
		}
		var sum [4]byte
		// pg_checksum_final copies the CRC's bytes in memory order.
		binary.NativeEndian.PutUint32(sum[:], f.crc32c)
		line = append(line, "\"Size\": "...)
		line = strconv.AppendInt(line, f.size, 10)
		line = append(line, ", \"Last-Modified\": \""...)
		line = f.mtime.UTC().AppendFormat(line, "2006-01-02 15:04:05")
		line = append(line, " GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \""...)
		line = hex.AppendEncode(line, sum[:])
		line = append(line, "\" }"...)
		_, _ = b.Write(line)
	}
	_, _ = b.WriteString("\n],\n\"WAL-Ranges\": [\n")
	for i, r := range ranges {
		if i > 0 {
			_, _ = b.WriteString(",\n")
		}
		fmt.Fprintf(b, "{ \"Timeline\": %d, \"Start-LSN\": \"%s\", \"End-LSN\": \"%s\" }", r.tli, r.start, r.end)
	}
	_, _ = b.WriteString("\n],\n")
	if err := b.Flush(); err != nil {
		return fmt.Errorf("backup_manifest: %w", err)
	}
	if _, err := fmt.Fprintf(w, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sha.Sum(nil))); err != nil {
		return fmt.Errorf("backup_manifest: %w", err)
	}
	return nil
}
