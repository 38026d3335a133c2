package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) by Open, OpenRange and Stat when the
// backend answered that no complete object exists under the key, and only
// then: a backend that could not answer (an unreachable server, a missing
// bucket, a local object whose metadata exists without its file) returns
// another error, and so do Open and OpenRange of a local store whose
// directory, or an SFTP store whose directory on the server, is missing or
// empty, which is what an unmounted volume looks like (Stat answers
// ErrNotFound there, so that a first upload can check that its key is
// free). wal-fetch tells PostgreSQL "end of the archive"
// on ErrNotFound alone. Test with errors.Is.
var ErrNotFound = errors.New("object not found")

// ErrExist is returned (wrapped) by Create when an object already exists
// under the key. Test with errors.Is.
var ErrExist = errors.New("object already exists")

// ErrNoAtomicReplace is returned (wrapped) by Put when the store cannot
// replace an existing object without first removing it (an SFTP server
// without posix-rename@openssh.com whose rename refuses an existing
// name); the object is left as it was.
var ErrNoAtomicReplace = errors.New("the store cannot replace an object atomically")

// Metadata is an object's user metadata: string keys and values, spelled as
// PGHoard spells them (compression-algorithm, encryption-key-id, ...).
// Backends translate the spelling on the wire (Azure stores '-' as '_', S3
// lowercases) and hand back the PGHoard spelling.
type Metadata map[string]string

// Object describes one stored object as a listing or Stat sees it.
type Object struct {
	Key      string    // full key, relative to the store's root
	Size     int64     // stored (encoded) size in bytes
	Modified time.Time // last modification time, as the backend reports it (local: the file's mtime)
	// Changed is when the storage last wrote the object, as the storage
	// itself records it, never a time the writer chose: S3's and Azure's
	// Last-Modified, GCS's updated time, and for a local store the later
	// inode change time (ctime) of the object's file and its sidecar,
	// which utimes(2) cannot set, unlike Modified. Rewriting an object, or
	// its metadata, moves it forward.
	Changed  time.Time
	Metadata Metadata // filled by Stat and Open; nil in listings
	// Damaged, set by a local store's List only, says why the object its
	// .metadata sidecar names cannot be read: its file is a FIFO, a
	// socket, a device or a directory. It wraps
	// ErrObjectDamaged, as the error of Open and Stat of the key does.
	// Such an entry is listed, so that a listing shows it rather than
	// leave it out in silence; its Size is 0.
	Damaged error
}

// Store is hoard's view of an object store. Keys use '/' as separator and
// never start with '/'. Every method is safe for concurrent use.
type Store interface {
	// Put stores the whole of r under key with metadata md, or nothing: an
	// error from r or from the backend, or a cancelled ctx, never leaves an
	// object that Open, Stat or List can see. Put replaces an existing object.
	Put(ctx context.Context, key string, r io.Reader, md Metadata) error

	// Create is Put that never replaces: it stores r under key only if no
	// object exists there, atomically, in the backend itself (local: a hard
	// link, which fails on an existing name; S3: a conditional PUT with
	// If-None-Match: *; GCS: ifGenerationMatch=0; Azure: If-None-Match: *;
	// SFTP: a hard link, hardlink@openssh.com, as some servers' rename
	// replaces: see SFTP.Create; Swift: If-None-Match: *, which Swift does
	// not check atomically: see Swift.Create). Of concurrent Creates of one key exactly one succeeds
	// (on Swift, almost always); the others
	// return an error wrapping ErrExist and leave the object as the winner
	// wrote it. A Create whose success was not seen (a lost response, then
	// a retry) can also meet its own object as ErrExist: callers compare
	// the stored object with theirs. Put and Create of the same key at the
	// same time are not supported: WAL and history files are only ever
	// written with Create.
	Create(ctx context.Context, key string, r io.Reader, md Metadata) error

	// Open streams the object's stored bytes and returns the object as those
	// bytes were written: its size, Modified time and metadata. It returns
	// an error wrapping ErrNotFound when the key does not exist (see
	// ErrNotFound for what is not "does not exist").
	Open(ctx context.Context, key string) (io.ReadCloser, Object, error)

	// OpenRange streams length bytes starting at offset (length < 0 means to
	// the end). ErrNotFound as Open.
	OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)

	// Stat returns the object's size, time and metadata, or an error wrapping
	// ErrNotFound.
	Stat(ctx context.Context, key string) (Object, error)

	// List calls fn for every complete object whose key starts with prefix,
	// in lexical key order, recursively (a gocloud bucket: the order of the
	// stored names, which an escaped name someone planted can break; see
	// Bucket.List). Metadata is nil. An error from fn stops the listing and
	// is returned.
	List(ctx context.Context, prefix string, fn func(Object) error) error

	// Delete removes the object. Deleting a missing key succeeds.
	Delete(ctx context.Context, key string) error

	// Close releases the store's resources.
	Close() error
}

// Syncer is implemented by stores whose objects can be visible before they
// are durable. The local store is one: a Put that dies after its renames but
// before it fsynced the directory leaves an object that Stat and Open see
// and that a crash of the host can still take away. Object stores make an
// object durable before the upload returns, and have nothing to sync.
type Syncer interface {
	// Sync makes the object under key, its metadata and the directory
	// entries leading to it durable. A missing key is an error wrapping
	// ErrNotFound.
	Sync(ctx context.Context, key string) error
}

// Sync makes the object under key durable when s is a Syncer, and does
// nothing otherwise. A caller that finds an object already stored (a
// retried wal-push) calls it before reporting success, as the Put that
// wrote the object may not have finished.
func Sync(ctx context.Context, s Store, key string) error {
	if y, ok := s.(Syncer); ok {
		return y.Sync(ctx, key)
	}
	return nil
}
