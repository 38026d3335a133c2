package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// ManifestName is the first member of a pghoard-bb-v2 control tar.
const ManifestName = ".pghoard_tar_metadata.json"

// Members of the control tar besides the manifest (pghoard-format.md c.4).
const (
	ControlPGControl   = "pgdata/global/pg_control"
	ControlBackupLabel = "pgdata/backup_label"
	// ControlPGManifest is PostgreSQL's own backup_manifest (PG 13+), a hoard
	// addition so that a restored directory can be checked with
	// pg_verifybackup. PGHoard extracts it as an ordinary file.
	ControlPGManifest    = "pgdata/backup_manifest"
	ControlTablespaceMap = "pgdata/tablespace_map"
)

// ControlEmptyDirs are the directories the control tar creates (mode 0700)
// because chunks leave their contents out.
var ControlEmptyDirs = []string{
	"pgdata/pg_dynshmem", "pgdata/pg_log", "pgdata/pg_replslot", "pgdata/pg_snapshot",
	"pgdata/pg_stat_tmp", "pgdata/pg_tblspc", "pgdata/pg_wal", "pgdata/pg_wal/archive_status",
	"pgdata/pg_xlog", "pgdata/pg_xlog/archive_status",
}

// Manifest is the JSON document .pghoard_tar_metadata.json at the head of a
// pghoard-bb-v2 control tar. Field names are PGHoard's; the hoard_* fields
// are hoard's additions.
type Manifest struct {
	BackupStartTime       LabelTime                     `json:"backup_start_time"`
	BackupStartWALSegment string                        `json:"backup_start_wal_segment"`
	BackupEndTime         ManifestTime                  `json:"backup_end_time"`
	BackupEndWALSegment   string                        `json:"backup_end_wal_segment"`
	PGData                string                        `json:"pgdata"`
	PGHoardObject         string                        `json:"pghoard_object"`
	PGHoardVersion        string                        `json:"pghoard_version"`
	Host                  string                        `json:"host"`
	Tablespaces           map[string]ManifestTablespace `json:"tablespaces"`
	Chunks                []ManifestChunk               `json:"chunks"`
	DeltaStats            json.RawMessage               `json:"delta_stats,omitempty"`
	DeltaManifest         json.RawMessage               `json:"manifest,omitempty"`
	Hoard                 *HoardManifest                `json:"hoard,omitempty"`
}

// ManifestTablespace locates one tablespace of the backed-up cluster.
type ManifestTablespace struct {
	Path string `json:"path"`
	OID  uint32 `json:"oid"`
}

// ManifestChunk describes one chunk object. ChunkFilename is relative to the
// site's basebackup_chunk/ folder.
type ManifestChunk struct {
	ChunkFilename string   `json:"chunk_filename"`
	InputSize     int64    `json:"input_size"`
	ResultSize    int64    `json:"result_size"`
	Files         []string `json:"files"`
	// HMAC is hoard's addition (PGHoard ignores it): the hex HMAC-SHA256
	// trailer of the encrypted chunk object as stored (Stored.HMAC), which
	// identifies it, so that restore and verify refuse an authentic chunk
	// of another backup copied under this one's name (DecodeExpected).
	// "" for an unencrypted chunk, and in backups of PGHoard and of hoard
	// versions that did not record it.
	HMAC string `json:"hoard_hmac,omitempty"`
	// Names is Files as ParseManifest keeps it: a set of hashes, nil when
	// the list is empty or absent, or the manifest lists more than
	// MaxManifestNames names in all.
	Names *NameSet `json:"-"`
}

// HoardManifest holds what hoard records beyond PGHoard's fields.
type HoardManifest struct {
	StartLSN       string `json:"start_lsn"`
	EndLSN         string `json:"end_lsn"`
	StartTimeline  uint32 `json:"start_timeline"`
	EndTimeline    uint32 `json:"end_timeline"`
	SystemID       string `json:"system_identifier"`
	WALSegmentSize uint64 `json:"wal_segment_size"`
	PGVersion      int    `json:"pg_version"`
	PGManifest     bool   `json:"pg_manifest"` // backup_manifest is in the control tar
	// Source is how the cluster was read: "data-directory" (local-tar,
	// hoard reading the files) or "base-backup" (the replication
	// protocol); "" in backups of hoard versions that did not record it.
	Source string `json:"source,omitempty"`
	// ChecksumFailures lists the data pages whose checksums failed when
	// hoard read the files itself, or that the server named in a
	// BASE_BACKUP it failed for them after sending all of it; nil when
	// hoard did not verify them, or the server found none.
	ChecksumFailures *ChecksumFailures `json:"checksum_failures,omitempty"`
	// Incremental names the backup this one is a PostgreSQL 17+
	// incremental of, with its start: restore rebuilds the files from
	// the chain. nil for a full backup.
	Incremental *IncrementalParent `json:"incremental,omitempty"`
	// TablespaceSizes is the part of the backup's decoded size (as
	// total-size-plain counts it: tar headers and padding included)
	// that is each tablespace's, by name, every tablespace listed; the
	// rest is the data directory's. Restore checks each file system's
	// free space against the parts restored there. nil in backups
	// without tablespaces and in those of hoard versions that did not
	// record it (PGHoard's backups have no hoard block at all).
	TablespaceSizes map[string]int64 `json:"tablespace_sizes,omitempty"`
}

// IncrementalParent is the backup an incremental backup was taken
// against (the manifest sent with UPLOAD_MANIFEST).
type IncrementalParent struct {
	Parent   string `json:"parent"`    // the parent backup's name
	StartLSN string `json:"start_lsn"` // the parent's start, as its backup_label says
	Timeline uint32 `json:"timeline"`  // the parent's start timeline
}

// ChecksumFailures reports the data page checksum failures found while a
// backup read the data directory, or that the server reported while it
// sent a BASE_BACKUP: pages damaged in the cluster itself, kept in the
// backup as they were read.
type ChecksumFailures struct {
	Blocks int64             `json:"blocks"` // failing blocks in all
	Files  []ChecksumFailure `json:"files"`  // the files holding them, the first ones
	// FilesUnknown is set when the server's warnings named the files in
	// another language than English, so Files is empty; Blocks is the
	// server's count all the same. The server's log names them.
	FilesUnknown bool `json:"files_unknown,omitempty"`
}

// ChecksumFailure is one file with failing pages.
type ChecksumFailure struct {
	File   string   `json:"file"`   // member name: pgdata/... or tablespaces/<name>/...
	Count  int64    `json:"count"`  // failing blocks in the file
	Blocks []uint32 `json:"blocks"` // their block numbers (within the relation), the first ones
}

// ManifestTime is backup_end_time: written as PGHoard writes a datetime in
// the manifest (Python's isoformat in UTC with "+00:00" replaced by "Z",
// microseconds only when not zero: 2024-01-02T03:04:05.123456Z), read in
// any form ParseTime accepts. The zero time is written as null.
type ManifestTime struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t ManifestTime) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(strings.TrimSuffix(ISOTime(t.Time), "+00:00") + "Z")
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *ManifestTime) UnmarshalJSON(b []byte) error {
	return unmarshalTime(b, &t.Time)
}

// LabelTime is backup_start_time: PGHoard writes backup_label's START TIME
// re-rendered by Python's isoformat, a string with "+00:00" rather than
// "Z" (2024-01-02T03:04:05+00:00). Read in any form ParseTime accepts; the
// zero time is written as null.
type LabelTime struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t LabelTime) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(ISOTime(t.Time))
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *LabelTime) UnmarshalJSON(b []byte) error {
	return unmarshalTime(b, &t.Time)
}

func unmarshalTime(b []byte, dst *time.Time) error {
	if string(b) == "null" {
		*dst = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("manifest time: %w", err)
	}
	v, err := ParseTime(s)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// Bounds of a parsed manifest. With them, and with each chunk's "files"
// kept as 4-byte hashes, what ParseManifest holds is a small multiple of
// the JSON's size whatever the JSON says: a chunk decodes to 88 bytes from
// as few as 3 of JSON ("{},"), a file name to 4 from 3 ("\"\","), a
// tablespace to more.
// PGHoard's chunks are up to basebackup_chunk_size (2 GiB by default) and
// a cluster has few tablespaces, so real manifests stay far below.
const (
	MaxManifestChunks      = 1 << 20
	MaxManifestTablespaces = 1 << 16
	// MaxManifestNames bounds the names of the chunks' file lists kept
	// (4 bytes each): a manifest that lists more keeps none, and its
	// chunks' members are not checked against the lists.
	MaxManifestNames = 1 << 24
)

// The limits, lowered by tests.
var (
	maxManifestChunks      = MaxManifestChunks
	maxManifestTablespaces = MaxManifestTablespaces
	maxManifestNames       = MaxManifestNames
)

// ParseManifest decodes a control tar's JSON manifest: at most
// MaxManifestChunks chunks and MaxManifestTablespaces tablespaces (more is
// an error wrapping ErrControlLimit).
// Each chunk's Files is left nil, as it may hold millions of names: its
// Names keeps the list as hashes, to check the chunk's members against.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	in := struct {
		*Manifest
		Chunks      boundedChunks      `json:"chunks"`
		Tablespaces boundedTablespaces `json:"tablespaces"`
	}{Manifest: &m}
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("parse backup manifest: %w: %w", err, ErrBadManifest)
	}
	m.Chunks, m.Tablespaces = in.Chunks, in.Tablespaces
	return &m, nil
}

// openJSON returns a decoder of data past its opening delim: an array's
// '[' or an object's '{'. For null it returns nil and no error: the field
// is absent. name names the field in the error for any other value.
func openJSON(data []byte, delim json.Delim, name string) (*json.Decoder, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	switch {
	case err != nil || tok == nil:
		return nil, err
	case tok != delim && delim == '[':
		return nil, fmt.Errorf("%s is not an array", name)
	case tok != delim:
		return nil, fmt.Errorf("%s is not an object", name)
	}
	return dec, nil
}

// boundedChunks decodes "chunks" one element at a time, without the files
// lists, refusing more than maxManifestChunks.
type boundedChunks []ManifestChunk

func (c *boundedChunks) UnmarshalJSON(data []byte) error {
	*c = nil
	dec, err := openJSON(data, '[', "chunks")
	if dec == nil {
		return err
	}
	*c = boundedChunks{}
	names := 0 // kept in all; -1 once past maxManifestNames
	for dec.More() {
		if len(*c) >= maxManifestChunks {
			return fmt.Errorf("more than %d chunks: %w", maxManifestChunks, ErrControlLimit)
		}
		var in struct {
			ChunkFilename string   `json:"chunk_filename"`
			InputSize     int64    `json:"input_size"`
			ResultSize    int64    `json:"result_size"`
			Files         nameList `json:"files"`
			HMAC          string   `json:"hoard_hmac"`
		}
		if err := dec.Decode(&in); err != nil {
			return fmt.Errorf("chunk %d: %w", len(*c), err)
		}
		ch := ManifestChunk{ChunkFilename: in.ChunkFilename, InputSize: in.InputSize, ResultSize: in.ResultSize, HMAC: in.HMAC}
		if names >= 0 {
			ch.Names = in.Files.set
			names += ch.Names.Len()
		}
		if names > maxManifestNames {
			names = -1
			for i := range *c {
				(*c)[i].Names = nil
			}
			ch.Names = nil
		}
		*c = append(*c, ch)
	}
	return nil
}

// boundedTablespaces decodes "tablespaces" one entry at a time, refusing
// more than maxManifestTablespaces.
type boundedTablespaces map[string]ManifestTablespace

func (t *boundedTablespaces) UnmarshalJSON(data []byte) error {
	*t = nil
	dec, err := openJSON(data, '{', "tablespaces")
	if dec == nil {
		return err
	}
	*t = boundedTablespaces{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if _, dup := (*t)[name]; !dup && len(*t) >= maxManifestTablespaces {
			return fmt.Errorf("more than %d tablespaces: %w", maxManifestTablespaces, ErrControlLimit)
		}
		var ts ManifestTablespace
		if err := dec.Decode(&ts); err != nil {
			return fmt.Errorf("tablespace %s: %w", Quoted(name), err)
		}
		(*t)[name] = ts
	}
	return nil
}

// ErrBadManifest is returned (wrapped) by ParseManifest and
// Manifest.Validate.
var ErrBadManifest = errors.New("invalid backup manifest")

// Validate checks what restore and verify build on, since the manifest
// comes from storage: every chunk name is a relative path that stays under
// basebackup_chunk/ (no "..", no absolute or empty part) and appears once,
// with a positive input_size, a result_size that is not negative and a
// hoard_hmac that is absent or 64 hex digits; every
// tablespace name is one path element, every OID positive and distinct,
// every path absolute and clean ("" is allowed here: restore then needs a
// directory for it), and every size in the hoard block's tablespace_sizes
// is one of those tablespaces' and not negative.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, args...))
	}
	seen := map[string]bool{}
	for i, c := range m.Chunks {
		if err := checkChunkFilename(c.ChunkFilename); err != nil {
			return bad("chunk %d: chunk_filename %s: %v", i, Quoted(c.ChunkFilename), err)
		}
		if seen[c.ChunkFilename] {
			return bad("chunk %s is listed twice", Quoted(c.ChunkFilename))
		}
		seen[c.ChunkFilename] = true
		if c.InputSize <= 0 {
			return bad("chunk %s: input_size %d is not positive", Quoted(c.ChunkFilename), c.InputSize)
		}
		if c.ResultSize < 0 {
			return bad("chunk %s: result_size %d is negative", Quoted(c.ChunkFilename), c.ResultSize)
		}
		if _, err := parseHMAC(c.HMAC); err != nil {
			return bad("chunk %s: %v", Quoted(c.ChunkFilename), err)
		}
	}
	oids := map[uint32]string{}
	for name, ts := range m.Tablespaces {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
			return bad("tablespace name %s is not a single path element", Quoted(name))
		}
		if ts.OID == 0 {
			return bad("tablespace %s has no OID", Quoted(name))
		}
		if other, ok := oids[ts.OID]; ok {
			return bad("tablespaces %s and %s share OID %d", Quoted(other), Quoted(name), ts.OID)
		}
		oids[ts.OID] = name
		if ts.Path == "" {
			continue
		}
		if !filepath.IsAbs(ts.Path) || filepath.Clean(ts.Path) != ts.Path || ts.Path == "/" || strings.ContainsRune(ts.Path, 0) {
			return bad("tablespace %s: path %s is not a clean absolute directory", Quoted(name), Quoted(ts.Path))
		}
	}
	if m.Hoard != nil {
		for name, n := range m.Hoard.TablespaceSizes {
			if _, ok := m.Tablespaces[name]; !ok {
				return bad("tablespace_sizes names %s, which is not one of the backup's tablespaces", Quoted(name))
			}
			if n < 0 {
				return bad("tablespace %s: size %d is negative", Quoted(name), n)
			}
		}
	}
	return nil
}

// checkChunkFilename refuses a chunk name that could leave the chunk folder.
func checkChunkFilename(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > 1024:
		return errors.New("over 1024 bytes")
	case strings.ContainsAny(name, "\\\x00"):
		return errors.New("holds a backslash or NUL")
	case strings.HasPrefix(name, "/"):
		return errors.New("absolute")
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("has a %s part", Quoted(part))
		}
	}
	return nil
}

// Marshal encodes the manifest with compact separators, as PGHoard does.
func (m *Manifest) Marshal() ([]byte, error) {
	return json.Marshal(m)
}
