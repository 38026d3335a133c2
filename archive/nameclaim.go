package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/hoardbackup/hoard/storage"
)

// A backup's name comes from its start time, past the names the site
// holds (basebackup's chooseName), but nothing of the backup is stored
// until its first chunk. Two writers of one site (a manual hoard
// basebackup beside the daemon, two daemons by mistake) whose backups
// start together, released by the same checkpoint, would choose the same
// name: each would replace the other's chunks and control object, and
// the cleanup of the one that failed would delete the other's chunks.
// So a writer claims the name before it uses it: ClaimName stores an
// empty object in the backup's chunk folder with Store.Create, which of
// two writers only one wins; the other tries the next name. The claim
// makes the folder look used to every later choice, as a leftover chunk
// does, and is deleted once the control object is stored, or with the
// chunks of a failed backup. One left behind (a writer killed, a delete
// that failed) is an object of the folder like a chunk: retention's
// orphan sweep deletes it with the folder, and CheckBackupSealed does not
// count it as a chunk.

// NameClaimSuffix ends the key of a backup's name claim.
const NameClaimSuffix = ".claim"

// FormatNameClaim is the format metadata of a name claim.
const FormatNameClaim = "hoard-name-claim-v1"

// NameClaimKey returns the key of backup name's claim, in its chunk
// folder: basebackup_chunk/<name>/<name>.claim.
func (l Layout) NameClaimKey(name string) string {
	b := BackupName(name)
	return l.ChunkKey(b + "/" + b + NameClaimSuffix)
}

// ClaimName stores backup name's claim (through the codec, as any object
// of the site) only if the name holds none, and reports whether it did.
// false means another writer claimed it first; it is also what a Create
// whose success was not seen (a retry meeting its own object) returns:
// that name is then left unused, its claim an orphan.
func (a *Archive) ClaimName(ctx context.Context, name string) (bool, error) {
	key := a.Layout.NameClaimKey(name)
	_, err := a.Codec.Create(ctx, a.Store, key, bytes.NewReader(nil), 0, storage.Metadata{MetaFormat: FormatNameClaim})
	switch {
	case errors.Is(err, storage.ErrExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("claim backup name: store %s: %w", key, err)
	}
	return true, nil
}
