package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// ProbeDir is the folder of a site's scratch objects: Probe writes there
// and nothing else does, so no real object is ever touched.
const ProbeDir = "hoard/check"

// ErrProbeLeft is wrapped by Probe's error when the scratch object was
// written and read back but could not be deleted: the storage lets hoard
// write but not delete, which retention needs.
var ErrProbeLeft = errors.New("scratch object could not be deleted")

// Probe checks that a's storage takes, returns and deletes an object: it
// creates a scratch object under ProbeDir with a random name (Create,
// which never replaces), reads it back and compares, then deletes it. It
// returns the scratch object's key, and an error saying which step
// failed; only ErrProbeLeft's leaves the object behind. The object is
// deleted after a failed write too (its answer may be lost after the
// object was stored), and under a context of its own (probeDeleteTimeout)
// when ctx ends: an interrupted or timed-out check leaves nothing.
func (a *Archive) Probe(ctx context.Context) (string, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	key := a.Layout.join(ProbeDir, hex.EncodeToString(id[:]))
	body := []byte("hoard check " + key)
	if err := a.Store.Create(ctx, key, bytes.NewReader(body), storage.Metadata{}); err != nil {
		if !errors.Is(err, storage.ErrExist) {
			// Best effort: the object is ours, never a real one.
			_ = a.deleteProbe(ctx, key)
		}
		return key, fmt.Errorf("write %s: %w", key, err)
	}
	got, err := readStored(ctx, a.Store, key, int64(len(body)))
	if err == nil && !bytes.Equal(got, body) {
		err = fmt.Errorf("read back %d bytes, want the %d written", len(got), len(body))
	}
	if err != nil {
		_ = a.deleteProbe(ctx, key)
		return key, fmt.Errorf("read %s back: %w", key, err)
	}
	if err := a.deleteProbe(ctx, key); err != nil {
		return key, fmt.Errorf("delete %s: %w: %w", key, ErrProbeLeft, err)
	}
	if _, err := a.Store.Stat(ctx, key); err == nil {
		return key, fmt.Errorf("delete %s: %w: the storage accepted the delete but still holds it", key, ErrProbeLeft)
	}
	return key, nil
}

// probeDeleteTimeout bounds the deletion of Probe's scratch object once
// the probe's context has ended.
const probeDeleteTimeout = 30 * time.Second

// deleteProbe deletes Probe's scratch object key, also when ctx has
// ended (an interrupted or timed-out probe).
func (a *Archive) deleteProbe(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeDeleteTimeout)
	defer cancel()
	return a.Store.Delete(ctx, key)
}

// readStored returns the stored bytes of key, at most one past size:
// enough to tell that it is not what was written, whatever someone who
// can write the storage put in its place.
func readStored(ctx context.Context, st storage.Store, key string, size int64) ([]byte, error) {
	rc, _, err := st.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, size+1))
}
