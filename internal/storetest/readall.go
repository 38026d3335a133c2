package storetest

import (
	"context"
	"io"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// ReadAll returns the stored bytes of key in st and its object (with its
// metadata), failing the test when it cannot be read whole.
func ReadAll(tb testing.TB, st storage.Store, key string) ([]byte, storage.Object) {
	tb.Helper()
	rc, obj, err := st.Open(context.Background(), key)
	if err != nil {
		tb.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		tb.Fatalf("read %s: %v", key, err)
	}
	return data, obj
}
