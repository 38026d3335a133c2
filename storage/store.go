package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) by Open, OpenRange and Stat when no
// complete object exists under the key. Test with errors.Is.
var ErrNotFound = errors.New("object not found")

// Metadata is an object's user metadata: string keys and values, spelled as
// PGHoard spells them (compression-algorithm, encryption-key-id, ...).
// Backends translate the spelling on the wire (Azure stores '-' as '_', S3
// lowercases) and hand back the PGHoard spelling.
type Metadata map[string]string

// Object describes one stored object as a listing or Stat sees it.
type Object struct {
	Key      string    // full key, relative to the store's root
	Size     int64     // stored (encoded) size in bytes
	Modified time.Time // last modification time, as the backend reports it
	Metadata Metadata  // filled by Stat and Open; nil in listings
}

// Store is hoard's view of an object store. Keys use '/' as separator and
// never start with '/'. Every method is safe for concurrent use.
type Store interface {
	// Put stores the whole of r under key with metadata md, or nothing: an
	// error from r or from the backend, or a cancelled ctx, never leaves an
	// object that Open, Stat or List can see. Put replaces an existing object.
	Put(ctx context.Context, key string, r io.Reader, md Metadata) error

	// Open streams the object's stored bytes and returns its metadata. It
	// returns an error wrapping ErrNotFound when the key does not exist.
	Open(ctx context.Context, key string) (io.ReadCloser, Metadata, error)

	// OpenRange streams length bytes starting at offset (length < 0 means to
	// the end). ErrNotFound as Open.
	OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)

	// Stat returns the object's size, time and metadata, or an error wrapping
	// ErrNotFound.
	Stat(ctx context.Context, key string) (Object, error)

	// List calls fn for every complete object whose key starts with prefix,
	// in lexical key order, recursively. Metadata is nil. An error from fn
	// stops the listing and is returned.
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
