package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// MinIncrementalVersion is the first server version with incremental
// base backups (UPLOAD_MANIFEST, BASE_BACKUP INCREMENTAL).
const MinIncrementalVersion = 170000

// ErrIncrementalUnsupported is returned (wrapped) by UploadManifest for a
// server older than PostgreSQL 17.
var ErrIncrementalUnsupported = errors.New("incremental backups need PostgreSQL 17 or later")

// UploadManifest sends a prior backup's backup_manifest to the server
// (UPLOAD_MANIFEST, a COPY IN): the next BASE_BACKUP on this connection
// with Incremental set is taken relative to that backup. The server
// checks the manifest's checksum and that its WAL summaries cover the
// prior backup's start onwards (the latter when the backup starts).
func (c *Conn) UploadManifest(ctx context.Context, manifest []byte) error {
	if c.streaming {
		return fmt.Errorf("upload manifest: connection is streaming WAL")
	}
	if v := c.ServerVersion(); v < MinIncrementalVersion {
		return fmt.Errorf("upload manifest: server version %d: %w", v, ErrIncrementalUnsupported)
	}
	if _, err := c.pg.CopyFrom(ctx, bytes.NewReader(manifest), "UPLOAD_MANIFEST"); err != nil {
		return fmt.Errorf("upload manifest: %w", err)
	}
	return nil
}
