package archive

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_FetchWAL_ErrAlteredEveryStore: on every storage backend,
// with its own way of keeping metadata (local sidecars, S3 user metadata
// on MinIO, Azure's on Azurite with PGHoard's key spelling, GCS's on
// fake-gcs-server, Swift's headers, SFTP's sidecars), someone who can
// write the storage but holds no key changes one metadata field of an
// authentic encrypted segment, or puts an earlier .partial copy of it
// (object and metadata) under its name. FetchWAL refuses each, saying
// why, never with "not in the archive" (which PostgreSQL takes as the end
// of the WAL), and leaves nothing at the destination.
func TestArchive_FetchWAL_ErrAlteredEveryStore(t *testing.T) {
	ctx := context.Background()
	name := segName(3)
	seg := waltest.Segment(t, name, testSegSize, 1)
	cut := bytes.Clone(seg)
	clear(cut[testSegSize/2:])
	for _, srv := range storetest.Servers {
		t.Run(srv.Name, func(t *testing.T) {
			a := &Archive{Store: storetest.Open(t, srv.Config(t)), Codec: encryptingCodec(t), Layout: Layout{Prefix: "site"}, Site: "site"}
			dir := t.TempDir()
			for file, data := range map[string][]byte{name: seg, name + ".partial": cut} {
				path := filepath.Join(dir, file)
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := a.PushWAL(ctx, path, PushOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			key := a.Layout.WALKey(name)
			orig, obj := storetest.Read(t, a.Store, key)
			partial, partialObj := storetest.Read(t, a.Store, key+".partial")
			dest := filepath.Join(dir, "RECOVERYXLOG")

			if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); err != nil {
				t.Fatalf("fetch the authentic segment: %v", err)
			}
			if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, seg) {
				t.Fatalf("fetched %d bytes (%v), want the segment's %d", len(got), err, len(seg))
			}
			os.Remove(dest)

			for _, tc := range []struct {
				name string
				edit func(data []byte, md storage.Metadata) []byte
				want string
			}{
				{"KeyIDRemoved", func(d []byte, md storage.Metadata) []byte { delete(md, MetaEncryptionKeyID); return d }, "refused as tampered"},
				{"KeyIDUnknown", func(d []byte, md storage.Metadata) []byte { md[MetaEncryptionKeyID] = "other-key"; return d }, "private key is not in the configuration"},
				{"CompressionChanged", func(d []byte, md storage.Metadata) []byte { md[MetaCompressionAlgorithm] = "snappy"; return d }, "does not match the compression-algorithm metadata"},
				{"CompressionRemoved", func(d []byte, md storage.Metadata) []byte { delete(md, MetaCompressionAlgorithm); return d }, "does not match the compression-algorithm metadata"},
				{"OriginalSizeCut", func(d []byte, md storage.Metadata) []byte { md[MetaOriginalFileSize] = "8192"; return d }, "decoded more than original-file-size 8192 bytes"},
				{"HashChanged", func(d []byte, md storage.Metadata) []byte {
					md[MetaHash] = strings.Repeat("0", len(md[MetaHash]))
					return d
				}, "damaged object"},
				{"PartialCopied", func(_ []byte, md storage.Metadata) []byte {
					clear(md)
					maps.Copy(md, partialObj.Metadata)
					return partial
				}, ErrTruncatedSegment.Error()},
			} {
				t.Run(tc.name, func(t *testing.T) {
					storetest.Rewrite(t, a.Store, key, tc.edit)
					t.Cleanup(func() {
						if err := a.Store.Put(ctx, key, bytes.NewReader(orig), obj.Metadata); err != nil {
							t.Fatal(err)
						}
					})
					err := a.FetchWAL(ctx, name, dest, FetchOptions{})
					if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), tc.want) {
						t.Errorf("FetchWAL = %v, want a refusal saying %q", err, tc.want)
					}
					if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s exists after the refusal (%v)", dest, err)
					}
				})
			}
		})
	}
}
