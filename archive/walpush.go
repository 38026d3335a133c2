package archive

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// wholeFileLimit is the largest WAL file PushWAL reads into memory:
// history and backup label files. Segments are read twice instead, once to
// hash and once to upload, which costs a second read from the page cache
// but keeps the daemon, which pushes segments all day, from holding a
// whole segment per upload. A variable so tests can move the boundary.
var wholeFileLimit int64 = 1 << 20

// ErrWALConflict is returned (wrapped) by PushWAL when a different file is
// already archived under the same name. hoard never overwrites archived
// WAL: the two copies must be compared by a person.
var ErrWALConflict = errors.New("a different file is already archived under this name")

// PushOptions configure PushWAL.
type PushOptions struct {
	// PGVersion is the server_version_num recorded as pg-version. Zero
	// derives the major from a segment's page magic (e.g. 150000), and
	// leaves pg-version out for other files or unknown magics.
	PGVersion int
	// HashAlgorithm names the digest stored as the hash metadata: sha1 (the
	// default, as PGHoard) or any other name of HashAlgorithms.
	HashAlgorithm string
	// SystemID is the system identifier of the cluster that wrote the
	// file. A history file records it as its metadata in every site, and
	// in a site with keys is signed with it (signHistory); 0 reads it
	// from global/pg_control of the data directory whose pg_wal holds the
	// file (WALSystemID), as for the %p of archive_command: when that
	// fails, a history file is stored without it in a site without keys,
	// and not stored in one with keys.
	SystemID uint64
	// StoredPartial is for PutPartialWAL only: when not zero, the size in
	// bytes of the file whose copy the caller itself stored last under
	// this .partial name, with nothing written to the name since (no
	// failed attempt either). PutPartialWAL then trusts it instead of
	// asking the store what the stored copy holds: one round trip less
	// per copy. Zero: unknown, the store is asked.
	StoredPartial int64
	// Partial is for PutPartialWAL only: when not nil, it keeps the
	// encoding of a growing .partial between its copies, so that a copy
	// costs in proportion to the WAL added since the previous one. A
	// StoredPartial of zero resets it.
	Partial *PartialCache
	// HoldsSpool is for PutPartialWAL only: the caller vouches that the
	// file holds all the WAL the same spool's file of this segment held
	// when an earlier process left it (the daemon's receiver after a
	// restart: walstream's copy of the segment an earlier run left in
	// progress, at least as long as that file's valid WAL). Every copy
	// an earlier run on that spool stored was a prefix of that file, so
	// a stored .partial that records no MetaPartialDataSize (stored by
	// hoard before 2026-12-02, which padded its copies with zeros to the
	// segment size) and that this process cannot read (only the public
	// key) is stored over instead of failing with ErrUnverifiedPartial.
	HoldsSpool bool
}

// PushResult describes a pushed WAL file.
type PushResult struct {
	Name string // the file's name: segment, .partial, .history or .backup
	Key  string // its storage key
	// Uploaded is false when an identical file was already archived and
	// nothing was written.
	Uploaded bool
	// Stale is set by PutPartialWAL, and PushWAL of a .partial, when the
	// stored .partial holds more WAL than the file, which was not stored. The stored copy was
	// read and starts with exactly the file's WAL (never decided from
	// its metadata alone): the file's WAL is stored.
	Stale bool
	// Replaced is set by PutPartialWAL when the stored .partial was not
	// the WAL the file holds (not decodable, another segment's, or other
	// bytes): why. The file was stored over it; the caller logs it.
	Replaced      error
	Hash          string // hex digest of the plain file
	HashAlgorithm string
	// SegmentSize is the segment size read from the page header of a
	// segment or .partial file, 0 for other files.
	SegmentSize uint64
	PGVersion   int    // pg-version recorded (0: none)
	Stored      Stored // sizes and metadata of the upload; zero when not Uploaded
}

// walKind classifies a WAL file name and reports whether hoard archives it.
// ErrNotWALName is returned by PushWAL for a file whose name is none that
// PostgreSQL archives: a mistake in how it was called, not a failed upload.
var ErrNotWALName = errors.New("is not a WAL segment, .partial, .history or .backup file name")

func walKind(name string) (segment, partial, ok bool) {
	switch {
	case wal.IsSegmentName(name):
		return true, false, true
	case wal.IsPartialName(name):
		return false, true, true
	case wal.IsHistoryFile(name), wal.IsBackupHistoryName(name):
		return false, false, true
	}
	return false, false, false
}

// PushWAL archives the WAL file at path, as PostgreSQL's archive_command
// does with %p: a segment (its page header must match its name), a
// .partial segment, a timeline .history file or a .backup history file.
// Other names are refused.
//
// PushWAL is idempotent, as archive_command must be (PostgreSQL retries a
// push whose success it did not see): when the key already holds the same
// bytes (by the hash its metadata records; a history file must also be
// the cluster's own, checkSameHistory) it returns with Uploaded false;
// when it holds different bytes it
// returns an error wrapping ErrWALConflict and leaves the object alone
// (for a history file, the error names the likely cause: historyConflict).
// The object is created with storage.Store.Create, so of pushers racing on
// one name exactly one stores its file; each other one compares its file
// with the stored one and succeeds (same bytes) or returns ErrWALConflict.
// A .partial file meeting other bytes follows pushPartial instead: the
// site's streaming daemon stores its own copies under that name.
func (a *Archive) PushWAL(ctx context.Context, path string, o PushOptions) (PushResult, error) {
	name := filepath.Base(path)
	segment, partial, ok := walKind(name)
	if !ok {
		return PushResult{}, fmt.Errorf("push %s: %q %w", path, name, ErrNotWALName)
	}
	src, res, err := a.openWALUpload(path, name, o, segment || partial)
	if err != nil {
		return res, fmt.Errorf("push %s: %w", path, err)
	}
	defer src.Close()
	alg := res.HashAlgorithm
	if o.SystemID == 0 && wal.IsHistoryFile(name) {
		// Without keys the system is a claim (signHistory): a file whose
		// pg_control cannot be read is stored without it, as before.
		if o.SystemID, err = WALSystemID(path); err != nil && a.Codec.signs() {
			return res, fmt.Errorf("push %s: the system identifier its signature binds: %w", path, err)
		}
	}

	same, err := a.sameAsArchived(ctx, res.Key, name, o.SystemID, src, res.Hash, alg)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case partial && errors.Is(err, ErrWALConflict):
		return a.pushPartial(ctx, path, name, o)
	case err != nil:
		return res, fmt.Errorf("push %s: %w", path, a.historyConflict(ctx, res.Key, name, o.SystemID, err))
	case same:
		// The push that stored it may have died before its own fsyncs
		// (PostgreSQL retries a push it did not see succeed): success
		// is reported only for an object that survives a crash.
		if err := storage.Sync(ctx, a.Store, res.Key); err != nil {
			return res, fmt.Errorf("push %s: %w", path, err)
		}
		return res, nil
	}

	err = a.storeWAL(ctx, src, &res, nil, true, o.SystemID)
	if err == nil {
		return res, nil
	}
	// Another pusher stored the name first (ErrExist), or the upload
	// failed in a way that may still have stored the object (a lost
	// response): what is there now decides.
	same, cerr := a.sameAsArchived(ctx, res.Key, name, o.SystemID, src, res.Hash, alg)
	switch {
	case cerr == nil && same:
		res.Uploaded, res.Stored = false, Stored{}
		if err := storage.Sync(ctx, a.Store, res.Key); err != nil {
			return res, fmt.Errorf("push %s: %w", path, err)
		}
		return res, nil
	case partial && errors.Is(cerr, ErrWALConflict):
		return a.pushPartial(ctx, path, name, o)
	case errors.Is(cerr, ErrWALConflict):
		return res, fmt.Errorf("push %s: %w", path, a.historyConflict(ctx, res.Key, name, o.SystemID, cerr))
	case errors.Is(cerr, ErrHistoryNotAuthentic), errors.Is(cerr, ErrOtherSystem):
		return res, fmt.Errorf("push %s: %w", path, cerr)
	case errors.Is(err, storage.ErrExist) && cerr != nil:
		return res, fmt.Errorf("push %s: %s exists but cannot be compared: %w", path, res.Key, cerr)
	}
	return res, fmt.Errorf("push %s: %w", path, err)
}

// pushPartial stores the .partial file at path, called name, over a
// stored copy of other bytes under its name, the rules of PutPartialWAL
// with one more: a stored copy is stored over only when it holds a
// shorter copy of the file's WAL (checkStored's keep). The site's
// streaming daemon stores copies of the segment it receives under that
// name, and a promoted server archives the same segment's .partial,
// holding more WAL than the daemon's last copy (the daemon was stopped or
// behind) or less (the old primary sent the daemon WAL its standby never
// received): a file holding more is stored over the copy, a copy that
// holds the file's WAL and more counts as the file archived (Uploaded
// false, Stale), and a copy of other WAL is a conflict, left alone.
// Before, every such push failed as a conflict, and PostgreSQL's
// archiver, which retries the oldest file first, archived nothing else.
func (a *Archive) pushPartial(ctx context.Context, path, name string, o PushOptions) (PushResult, error) {
	o.StoredPartial, o.Partial, o.HoldsSpool = 0, nil, false
	res, err := a.putPartial(ctx, path, name, o, nil, true)
	if err != nil {
		return res, fmt.Errorf("push %s: another copy is archived under its name: %w", path, err)
	}
	return res, nil
}

// checkSameHistory checks that history file name, found under key with
// the hash of the file pushed (sameAsArchived's), is the cluster of
// system's own as readers take it (checkHistory, as wal-fetch does): in a
// site with keys, stored by hoard for this name and this cluster. A
// history file's content is easy to foresee, so someone who can write the
// storage, holding no key, can plant an object whose metadata records
// the hash of the file to come before PostgreSQL archives it; taken for
// the file, the push would succeed and recovery later stop at an object
// wal-fetch refuses. Another cluster's file of the same bytes (a
// pg_upgrade into the same site) is refused as historyConflict refuses
// other bytes. Other names pass.
func (a *Archive) checkSameHistory(ctx context.Context, key, name string, system uint64) error {
	if !wal.IsHistoryFile(name) {
		return nil
	}
	obj, err := a.Store.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("stat %s: %w", key, err)
	}
	err = a.checkHistory(ctx, key, name, obj.Metadata, system)
	if o, ok := errors.AsType[*OtherSystemHistoryError](err); ok {
		return fmt.Errorf("%w: %s holds the hash of the file pushed, but %s, and the file pushed is one of %d, this cluster: "+
			"another cluster's history file holds the name of this cluster's own, and recovery would not take it for "+
			"this cluster's. hoard never replaces an archived object, so this push fails until the cause is fixed, and "+
			"PostgreSQL keeps the WAL it has not archived until its disk fills (%s)", ErrOtherSystem, key, o.ofSystem(), system, o.fix())
	}
	if err != nil {
		return fmt.Errorf("%s holds the hash of the file pushed, but is not this cluster's history file as hoard stores it, "+
			"and recovery would refuse it: %w. hoard never replaces an archived object, so this push fails until the "+
			"object is moved away: if no hoard of this site stored it (hoard object get shows it), someone who can write "+
			"the storage planted it", key, err)
	}
	return nil
}

// openWALUpload opens a WAL file for storing under name: it checks the
// hash algorithm, the page header when checkHeader (segments and .partial
// files) and hashes the content. The caller closes the file.
func (a *Archive) openWALUpload(path, name string, o PushOptions, checkHeader bool) (*walFile, PushResult, error) {
	alg := o.HashAlgorithm
	if alg == "" {
		alg = DefaultHashAlgorithm
	}
	res := PushResult{Name: name, Key: a.Layout.WALKey(name), HashAlgorithm: alg, PGVersion: o.PGVersion}
	if _, err := NewHash(alg); err != nil {
		return nil, res, err
	}
	src, err := openWALFile(path)
	if err != nil {
		return nil, res, err
	}
	if checkHeader {
		if err := checkWALHeader(src, name, src.size, &res); err != nil {
			src.Close()
			return nil, res, err
		}
	}
	if res.Hash, err = src.digest(alg); err != nil {
		src.Close()
		return nil, res, err
	}
	return src, res, nil
}

// storeWAL uploads src through the codec with its hash, PostgreSQL
// version and extra as metadata (and a history file's HMAC binding
// system, signHistory), re-hashing it on the way so that a file
// changed since it was hashed is not stored. With create it stores only if
// the key is free (storage.Store.Create), else it replaces.
func (a *Archive) storeWAL(ctx context.Context, src *walFile, res *PushResult, extra storage.Metadata, create bool, system uint64) error {
	md := walMetadata(res, extra)
	if wal.IsHistoryFile(res.Name) {
		if err := a.signHistory(ctx, res.Name, md, system); err != nil {
			return err
		}
	}
	r, err := src.verifiedReader(res.HashAlgorithm, res.Hash)
	if err != nil {
		return err
	}
	put := a.Codec.Put
	if create {
		put = a.Codec.Create
	}
	if res.Stored, err = put(ctx, a.Store, res.Key, r, src.size, md); err != nil {
		return fmt.Errorf("store as %s: %w", res.Key, err)
	}
	res.Uploaded = true
	return nil
}

// walMetadata is the metadata of a WAL object: its hash, PostgreSQL
// version and extra.
func walMetadata(res *PushResult, extra storage.Metadata) storage.Metadata {
	md := storage.Metadata{MetaHash: res.Hash, MetaHashAlgorithm: res.HashAlgorithm}
	for k, v := range extra {
		md[k] = v
	}
	if res.PGVersion != 0 {
		md[MetaPGVersion] = strconv.Itoa(res.PGVersion)
	}
	return md
}

// sameAsArchived reports whether key already holds src, WAL file name
// of the cluster of system. It returns an error wrapping
// storage.ErrNotFound when key is absent, and one wrapping ErrWALConflict
// when key holds different bytes. An archived object whose metadata
// records a hash other than src's holds other bytes. Otherwise the object
// is downloaded, decoded and compared byte by byte: the metadata is a
// claim, and an object whose bytes are not what it claims (left by a
// crash between data and metadata on a store that writes them apart,
// damaged under the store, or planted with a real object's metadata)
// would have PostgreSQL recycle a file the archive does not hold. A
// damaged one fails decoding (a DecodeError: an HMAC, a compression
// checksum, the size), one of other bytes is a conflict. That costs one
// download per push of a name already stored (a retry after a lost
// answer, a restarted daemon's spool). The exception is an encrypted
// object whose key id has no private key here (a host holding only the
// public key, as the daemon and wal-push may): it cannot be decrypted,
// and a recorded hash equal to src's is the answer (docs/security.md). A
// history file must also be the cluster's own as readers take it
// (checkSameHistory), checked before the download when the hashes match:
// its refusal says more than a comparison's.
func (a *Archive) sameAsArchived(ctx context.Context, key, name string, system uint64, src *walFile, sum, alg string) (bool, error) {
	obj, err := a.Store.Stat(ctx, key)
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", key, err)
	}
	hashed := false
	if theirAlg, theirs := MetadataHash(obj.Metadata); theirs != "" {
		if _, err := NewHash(theirAlg); err == nil {
			ours := sum
			if theirAlg != alg {
				if ours, err = src.digest(theirAlg); err != nil {
					return false, err
				}
			}
			if ours != theirs {
				return false, fmt.Errorf("%s holds %s %s, the local file has %s: %w", key, theirAlg, theirs, ours, ErrWALConflict)
			}
			if err := a.checkSameHistory(ctx, key, name, system); err != nil {
				return false, err
			}
			if kid := obj.Metadata[MetaEncryptionKeyID]; kid != "" && a.Codec.PrivateKeys[kid] == nil {
				return true, nil
			}
			hashed = true
		}
	}
	rc, _, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		return false, undecodable(key, fmt.Errorf("compare with the archived copy: %w", err))
	}
	defer rc.Close()
	// One byte past the local file's size tells that the two differ: no
	// more is decoded, whatever the object would decode to.
	same, err := sameContent(io.LimitReader(rc, src.size+1), src.reader())
	if err != nil {
		return false, undecodable(key, fmt.Errorf("compare %s with the local file: %w", key, err))
	}
	if !same {
		if hashed {
			return false, fmt.Errorf("%s records the hash of the local file (%s %s) but holds other bytes: %w", key, alg, sum, ErrWALConflict)
		}
		return false, fmt.Errorf("%s holds other bytes than the local file (%s %s): %w", key, alg, sum, ErrWALConflict)
	}
	if !hashed {
		if err := a.checkSameHistory(ctx, key, name, system); err != nil {
			return false, err
		}
	}
	return true, nil
}

// undecodable adds to err, when it is a DecodeError of the object under
// key that a push compared with its file, what the operator does next.
func undecodable(key string, err error) error {
	if _, ok := errors.AsType[*DecodeError](err); !ok || errors.Is(err, ErrNoPrivateKey) {
		return err
	}
	return fmt.Errorf("%w; %s is damaged or not what its metadata says, and hoard never replaces an archived object: "+
		"this push fails, and PostgreSQL keeps the file, until the object is moved away (look at it with hoard object get; "+
		"if no hoard of this site stored it, someone who can write the storage did)", err, key)
}

// sameContent reports whether a and b yield the same bytes. It reads a to
// its end even when they differ early, so a decoding reader reports a
// damaged object rather than a mismatch.
func sameContent(a, b io.Reader) (bool, error) {
	bufA := make([]byte, 256<<10)
	bufB := make([]byte, len(bufA))
	same := true
	for {
		n, errA := io.ReadFull(a, bufA)
		if errA != nil && errA != io.EOF && errA != io.ErrUnexpectedEOF {
			return false, errA
		}
		if same {
			m, errB := io.ReadFull(b, bufB[:n])
			if errB != nil && errB != io.EOF && errB != io.ErrUnexpectedEOF {
				return false, errB
			}
			same = m == n && bytes.Equal(bufA[:n], bufB[:n])
		}
		if errA != nil {
			break
		}
	}
	if same {
		// a ended: b must end too.
		var one [1]byte
		n, err := io.ReadFull(b, one[:])
		if err != nil && err != io.EOF {
			return false, err
		}
		same = n == 0
	}
	return same, nil
}

// walFile is a WAL file opened for pushing: held in memory when small,
// read from disk (twice) when large.
type walFile struct {
	f    *os.File
	data []byte // whole content when size <= wholeFileLimit
	size int64
}

func openWALFile(path string) (*walFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	w := &walFile{f: f, size: fi.Size()}
	if w.size <= wholeFileLimit {
		w.data = make([]byte, w.size)
		if _, err := io.ReadFull(f, w.data); err != nil {
			f.Close()
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return w, nil
}

func (w *walFile) Close() error { return w.f.Close() }

// ReadAt reads from the file's content at off.
func (w *walFile) ReadAt(p []byte, off int64) (int, error) {
	if w.data != nil {
		return bytes.NewReader(w.data).ReadAt(p, off)
	}
	return w.f.ReadAt(p, off)
}

// reader returns a fresh reader of the whole content.
func (w *walFile) reader() io.Reader { return io.NewSectionReader(w, 0, w.size) }

// digest returns the hex digest of the content.
func (w *walFile) digest(alg string) (string, error) {
	h, err := NewHash(alg)
	if err != nil {
		return "", err
	}
	if w.data != nil {
		h.Write(w.data)
	} else if _, err := io.CopyBuffer(h, w.reader(), make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("read %s: %w", w.f.Name(), err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verifiedReader returns the content for upload. A file read from disk a
// second time is hashed again on the way, and a change since the first
// read fails the read at EOF, so the upload is abandoned instead of
// storing bytes that differ from the recorded hash.
func (w *walFile) verifiedReader(alg, want string) (io.Reader, error) {
	if w.data != nil {
		return bytes.NewReader(w.data), nil
	}
	h, err := NewHash(alg)
	if err != nil {
		return nil, err
	}
	return &hashCheckReader{r: w.reader(), h: h, want: want, name: w.f.Name()}, nil
}

// hashCheckReader passes r through and, at EOF, returns an error instead
// of io.EOF when the bytes read do not hash to want.
type hashCheckReader struct {
	r    io.Reader
	h    hash.Hash
	want string
	name string
}

func (r *hashCheckReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want {
			return n, fmt.Errorf("%s changed while being archived (hash %s, then %s)", r.name, r.want, got)
		}
	}
	return n, err
}
