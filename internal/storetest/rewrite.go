package storetest

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// Rewrite stores the object at key again with edit applied to its stored
// bytes and its metadata: what someone who can write to the store but
// holds no key can do. edit may change data in place and return it, or
// return other bytes; the metadata it leaves is stored with them.
func Rewrite(tb testing.TB, st storage.Store, key string, edit func(data []byte, md storage.Metadata) []byte) {
	tb.Helper()
	data, o := Read(tb, st, key)
	data = edit(data, o.Metadata)
	if err := st.Put(context.Background(), key, bytes.NewReader(data), o.Metadata); err != nil {
		tb.Fatal(err)
	}
}

// Read returns the stored bytes of the object at key, as Open gives them,
// and the Object it reports; it fails the test on any error.
func Read(tb testing.TB, st storage.Store, key string) ([]byte, storage.Object) {
	tb.Helper()
	rc, o, err := st.Open(context.Background(), key)
	if err != nil {
		tb.Fatalf("open %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		tb.Fatalf("read %s: %v", key, err)
	}
	return data, o
}

// Tamper flips one bit of the byte in the middle of the object stored at
// key, keeping its metadata.
func Tamper(tb testing.TB, st storage.Store, key string) {
	tb.Helper()
	Rewrite(tb, st, key, func(data []byte, _ storage.Metadata) []byte {
		data[len(data)/2] ^= 0x40
		return data
	})
}
