package verify

import (
	"context"
	"slices"

	"github.com/hoardbackup/hoard/archive"
)

// checkUnsigned reports the backups without a metadata HMAC in a site
// that signs its backups (archive.UnsignedBackups; docs/security.md
// "Backup metadata"). One older than the oldest authenticated backup is
// what an upgrade from PGHoard or from a hoard that did not sign leaves:
// a note, its status unchanged. A suspicious one (newer, or any where
// the HMACs were stripped from all) is a problem, so the backup is
// limited and verify fails, as for metadata that does not authenticate:
// someone wrote to the storage who should not have, and the backup must
// be looked at before anyone restores it.
func checkUnsigned(ctx context.Context, a *archive.Archive, backups []*archive.BackupInfo, reps []BackupReport) error {
	signs, err := a.SignsBackups(ctx)
	if err != nil {
		return err
	}
	for _, u := range archive.UnsignedBackups(backups, signs) {
		r := &reps[slices.Index(backups, u.Backup)]
		if !u.Suspicious {
			r.Notes = append(r.Notes, u.Why)
			continue
		}
		r.Problems = append(r.Problems, u.Why+": check it before restoring it with --basebackup "+u.Backup.Name+
			", and delete it if nobody here took it")
	}
	return nil
}
