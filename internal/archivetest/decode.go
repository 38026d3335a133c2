package archivetest

import (
	"context"
	"io"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// Decode reads object key of st through c (decrypted, decompressed and
// checked) to its end and returns its contents and metadata; it fails the
// test on any error.
func Decode(t testing.TB, c *archive.Codec, st storage.Store, key string) ([]byte, storage.Metadata) {
	t.Helper()
	rc, md, err := c.Open(context.Background(), st, key)
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data, md
}
