package archive

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/crypto/blake2s"
)

// ErrBadDeltaManifest is returned (wrapped) for a delta backup's manifest
// that restore cannot follow: a file entry with no content or more than
// one, a digest that is not 64 hex digits, embedded content that does not
// decode to the file's size, a path twice.
var ErrBadDeltaManifest = errors.New("bad delta manifest")

// DeltaEmbedMax is the size up to which a delta backup embeds a file in
// its manifest (base64, content_b64) rather than bundling it or storing it
// as a delta object: rohmu's EMBEDDED_FILE_SIZE.
const DeltaEmbedMax = 150

// DeltaManifest is the "manifest" member of a delta backup's control
// JSON (pghoard-delta-v1 and v2), in PGHoard's field names and shape:
// every file of the data directory with how it is stored.
type DeltaManifest struct {
	Start          LabelTime           `json:"start"`
	End            LabelTime           `json:"end"`
	SnapshotResult DeltaSnapshotResult `json:"snapshot_result"`
	UploadResult   DeltaUploadResult   `json:"upload_result"`
}

// DeltaSnapshotResult is the snapshot a delta backup took: its files and
// directories, and the digests of its delta objects.
type DeltaSnapshotResult struct {
	Start     LabelTime   `json:"start"`
	End       LabelTime   `json:"end"`
	State     DeltaState  `json:"state"`
	Files     int         `json:"files"`
	TotalSize int64       `json:"total_size"`
	Hashes    []DeltaHash `json:"hashes"`
}

// DeltaState lists the snapshot's files and every directory (relative to
// the data directory, "." for itself).
type DeltaState struct {
	RootGlobs []string    `json:"root_globs"`
	Files     []DeltaFile `json:"files"`
	EmptyDirs []string    `json:"empty_dirs"`
}

// DeltaFile is one file of a delta backup. Exactly one of Hexdigest (the
// delta object basebackup_delta/<Hexdigest>), ContentB64 (embedded, maybe
// "") and ShouldBeBundled (in one of the backup's bundles) says where its
// content is.
type DeltaFile struct {
	RelativePath    string  `json:"relative_path"`
	FileSize        int64   `json:"file_size"`
	StoredFileSize  int64   `json:"stored_file_size"`
	MtimeNS         int64   `json:"mtime_ns"`
	Hexdigest       string  `json:"hexdigest"`
	ContentB64      *string `json:"content_b64"`
	ShouldBeBundled bool    `json:"should_be_bundled"`
	MissingOK       bool    `json:"missing_ok"`
}

// MaxDeltaEntries bounds each list of a delta manifest (files, hashes,
// root_globs, empty_dirs): more is an error wrapping ErrControlLimit. A
// file's entry takes over 140 bytes of JSON (every field of DeltaFile, as
// PGHoard and hoard write them; about 170 with a real path and mtime), so
// a manifest within MaxManifestSize lists fewer than 1.9 million and this
// bound never binds before that one. An entry of a few bytes ("{}") still
// decodes to a 72-byte DeltaFile: without it, a 256 MiB manifest of them
// would take tens of GiB; with it, well under 1 GiB.
const MaxDeltaEntries = 1 << 21

// maxDeltaEntries is MaxDeltaEntries, lowered by tests.
var maxDeltaEntries = MaxDeltaEntries

// UnmarshalJSON implements json.Unmarshaler, decoding hashes one element
// at a time, at most MaxDeltaEntries (decodeList).
func (r *DeltaSnapshotResult) UnmarshalJSON(data []byte) error {
	type plain DeltaSnapshotResult
	in := struct {
		*plain
		Hashes json.RawMessage `json:"hashes"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	var err error
	r.Hashes, err = decodeList[DeltaHash](in.Hashes, "hashes")
	return err
}

// UnmarshalJSON implements json.Unmarshaler, decoding each list one
// element at a time, at most MaxDeltaEntries each (decodeList).
func (s *DeltaState) UnmarshalJSON(data []byte) error {
	var in struct {
		RootGlobs json.RawMessage `json:"root_globs"`
		Files     json.RawMessage `json:"files"`
		EmptyDirs json.RawMessage `json:"empty_dirs"`
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	var err error
	if s.RootGlobs, err = decodeList[string](in.RootGlobs, "root_globs"); err != nil {
		return err
	}
	if s.Files, err = decodeList[DeltaFile](in.Files, "files"); err != nil {
		return err
	}
	s.EmptyDirs, err = decodeList[string](in.EmptyDirs, "empty_dirs")
	return err
}

// decodeList decodes data, the JSON array name (absent or null: nil), one
// element at a time, refusing more than MaxDeltaEntries before decoding
// the one past it.
func decodeList[T any](data json.RawMessage, name string) ([]T, error) {
	if len(data) == 0 {
		return nil, nil
	}
	dec, err := openJSON(data, '[', name)
	if dec == nil {
		return nil, err
	}
	out := []T{}
	var v, zero T // one v for all: Decode's argument escapes
	for dec.More() {
		if len(out) >= maxDeltaEntries {
			return nil, fmt.Errorf("%s: more than %d entries: %w", name, maxDeltaEntries, ErrControlLimit)
		}
		v = zero // no field of the last element carries over
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", name, len(out), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// DeltaHash is one delta object of the snapshot: its digest and the size
// of the file.
type DeltaHash struct {
	Hexdigest string `json:"hexdigest"`
	Size      int64  `json:"size"`
}

// DeltaUploadResult sums the backup's sizes, before and after encoding.
type DeltaUploadResult struct {
	TotalSize       int64 `json:"total_size"`
	TotalStoredSize int64 `json:"total_stored_size"`
}

// NewDeltaHash returns the hash that names delta objects: BLAKE2s-256
// without a key (Python's hashlib.blake2s()), over the file's bytes.
func NewDeltaHash() hash.Hash {
	h, err := blake2s.New256(nil)
	if err != nil {
		panic(err) // only for a key over 32 bytes
	}
	return h
}

// DeltaChunkKey returns the key of a delta backup's bundle given its
// chunk_filename (relative to basebackup_delta_chunk/).
func (l Layout) DeltaChunkKey(chunkFilename string) string {
	return l.join(basebackupDeltaChunkDir, chunkFilename)
}

// ParseDelta decodes and checks the delta manifest of m, the control JSON
// of a delta backup: every file has exactly one place for its content, a
// digest of 64 lowercase hex digits, embedded content that decodes to its
// file_size, sizes that are not negative, and no path appears twice.
// Whether the paths stay inside the data directory is for the caller,
// which knows where they go.
func ParseDelta(m *Manifest) (*DeltaManifest, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadDeltaManifest, fmt.Sprintf(format, args...))
	}
	if len(m.DeltaManifest) == 0 {
		return nil, bad("the control object's JSON has no %q", "manifest")
	}
	var dm DeltaManifest
	if err := json.Unmarshal(m.DeltaManifest, &dm); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDeltaManifest, err)
	}
	seen := make(map[string]bool, len(dm.SnapshotResult.State.Files))
	for i, f := range dm.SnapshotResult.State.Files {
		if f.RelativePath == "" {
			return nil, bad("file %d has no relative_path", i)
		}
		if seen[f.RelativePath] {
			return nil, bad("file %s is listed twice", Quoted(f.RelativePath))
		}
		seen[f.RelativePath] = true
		if f.FileSize < 0 || f.StoredFileSize < 0 {
			return nil, bad("file %s: negative size", Quoted(f.RelativePath))
		}
		kinds := 0
		if f.Hexdigest != "" {
			kinds++
			if !deltaDigest.MatchString(f.Hexdigest) {
				return nil, bad("file %s: hexdigest %s is not 64 lowercase hex digits", Quoted(f.RelativePath), Quoted(f.Hexdigest))
			}
		}
		if f.ContentB64 != nil {
			kinds++
			data, err := base64.StdEncoding.DecodeString(*f.ContentB64)
			if err != nil {
				return nil, bad("file %s: content_b64: %v", Quoted(f.RelativePath), err)
			}
			if int64(len(data)) != f.FileSize {
				return nil, bad("file %s: content_b64 holds %d bytes, file_size says %d", Quoted(f.RelativePath), len(data), f.FileSize)
			}
		}
		if f.ShouldBeBundled {
			kinds++
		}
		if kinds != 1 {
			return nil, bad("file %s: %d of hexdigest, content_b64 and should_be_bundled set, not one", Quoted(f.RelativePath), kinds)
		}
	}
	for _, d := range dm.SnapshotResult.State.EmptyDirs {
		if d == "" || strings.ContainsRune(d, 0) {
			return nil, bad("directory %s in empty_dirs", Quoted(d))
		}
	}
	return &dm, nil
}
