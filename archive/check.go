package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hoardbackup/hoard/storage"
)

// CheckBackup checks that backup b, stored in a, can be read back. Its
// control object (or, for formats without one, its main object) is
// decoded to the end, so its integrity checks run, and the manifest
// parsed; every chunk the manifest lists must exist with the stored size
// it records. With full, every chunk is also decoded to its end (its
// integrity checks run) and must decode to the size the manifest
// records.
//
// Retention relies on it before deleting a backup (Archive.PlanRetention):
// any error, whatever its cause, means b is not known good.
func (a *Archive) CheckBackup(ctx context.Context, b *BackupInfo, full bool) error {
	switch b.Format {
	case FormatBBv2, FormatDeltaV1, FormatDeltaV2:
	default:
		// A single object: decoding it is the only check there is.
		return a.decodeAll(ctx, b.Key, -1)
	}
	m, err := a.readManifest(ctx, b.Key)
	if err != nil {
		return fmt.Errorf("control object %s: %w", b.Key, err)
	}
	chunkDir := BasebackupChunkDir
	if b.Format != FormatBBv2 {
		chunkDir = basebackupDeltaChunkDir
	}
	for _, c := range m.Chunks {
		if !strings.HasPrefix(c.ChunkFilename, b.Name+"/") || strings.Contains(c.ChunkFilename, "..") {
			return fmt.Errorf("manifest names chunk %q outside the backup's folder", c.ChunkFilename)
		}
		key := a.Layout.join(chunkDir, c.ChunkFilename)
		st, err := a.Store.Stat(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("chunk %s is missing", key)
		}
		if err != nil {
			return fmt.Errorf("chunk %s: %w", key, err)
		}
		if c.ResultSize > 0 && st.Size != c.ResultSize {
			return fmt.Errorf("chunk %s: stored size %d, manifest says %d", key, st.Size, c.ResultSize)
		}
		if !full {
			continue
		}
		want := c.InputSize
		if want <= 0 {
			want = -1
		}
		if err := a.decodeAll(ctx, key, want); err != nil {
			return err
		}
	}
	return nil
}

// decodeAll decodes the object at key to its end and checks that it
// decodes to want bytes (any size when want < 0).
func (a *Archive) decodeAll(ctx context.Context, key string, want int64) error {
	rc, _, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		return fmt.Errorf("open %s: %w", key, err)
	}
	defer rc.Close()
	n, err := io.CopyBuffer(io.Discard, rc, make([]byte, 256<<10))
	if err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	if want >= 0 && n != want {
		return fmt.Errorf("%s decodes to %d bytes, manifest says %d", key, n, want)
	}
	return nil
}
