package archive

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Retention reads nothing but the backups' metadata, which the storage
// writer can plant or alter (backupauth.go). Where hoard authenticated
// some backups' metadata, retention counts only those: a planted backup
// that claims to be the newest, or many of them, cannot make it delete a
// backup whose metadata authenticates, nor the WAL such a backup needs.
// An archive where no backup authenticates (PGHoard's, an older hoard's,
// a site without keys) is planned as before, on all its metadata.

// planAuthenticated narrows plan's deletions, made by planBackups over
// all of backups, when any of them authenticates. A backup is then
// deleted only if the policy deletes it both among all backups and among
// the authenticated ones with it added: an authenticated backup only on
// the strength of other authenticated ones, an unauthenticated one (a
// PGHoard backup from before, or a planted one) only when the
// authenticated backups alone make it surplus. A backup whose HMAC does
// not verify is kept and not counted: its metadata was altered, and what
// it says of itself (its start) cannot be trusted either (planWAL keeps
// every WAL file while one is kept).
//
// With p.SystemID, the backups that count are Trusted(OfSystem): a backup
// of another system (backupsystem.go) is judged as an unauthenticated
// one, among this system's authenticated backups, or among all of this
// system's backups where none of them authenticates.
func planAuthenticated(plan *RetentionPlan, backups []*BackupInfo, p RetentionPolicy) {
	trusted := Trusted(OfSystem(backups, p.SystemID))
	if len(trusted) == len(backups) {
		return // all authenticate, or none does, and all are of this system
	}
	var invalid, none []*BackupInfo
	for _, b := range backups {
		switch {
		case slices.Contains(trusted, b) || b.foreign(p.SystemID):
		case b.Auth == AuthInvalid:
			invalid = append(invalid, b)
		default:
			none = append(none, b)
		}
	}
	keep, del := plan.Keep, plan.Delete
	plan.Keep, plan.Delete = keep, nil
	_, trustedDel := planBackups(trusted, p, plan.Now)
	for _, d := range del {
		var alone []BackupDecision
		switch {
		case slices.Contains(trusted, d.Backup):
			alone = trustedDel
		case d.Backup.Auth != AuthInvalid:
			_, alone = planBackups(append(trusted[:len(trusted):len(trusted)], d.Backup), p, plan.Now)
		}
		if ok, why := deletedIn(alone, d.Backup); ok {
			d.Reason = why
			plan.Delete = append(plan.Delete, d)
			continue
		}
		switch {
		case d.Backup.foreign(p.SystemID):
			d.Reason = fmt.Sprintf("%s; kept: backups of other database systems do not count, and among this system's the policy keeps it", d.Reason)
		case d.Backup.KeyMissing != "":
			d.Reason = "its " + keyMissingWhy(d.Backup.KeyMissing) + ": kept, and not counted"
		case d.Backup.Auth == AuthInvalid:
			d.Reason = "its metadata does not authenticate (altered, or copied under another name): kept, and not counted"
		default:
			d.Reason = fmt.Sprintf("%s; kept: only backups whose metadata authenticates count, and among them the policy keeps it", d.Reason)
		}
		plan.Keep = append(plan.Keep, d)
	}
	sortDecisions(plan.Keep)
	if foreign := Foreign(backups, p.SystemID); len(foreign) > 0 {
		plan.Notes = append(plan.Notes, fmt.Sprintf("metadata authenticated, but of another database system than this one (%s), "+
			"not counted toward the policy: %s (another cluster's backups copied here, sites sharing a key pair, or taken before a pg_upgrade)",
			p.SystemID, backupSystems(foreign)))
	}
	if len(none) > 0 {
		plan.Notes = append(plan.Notes, fmt.Sprintf("metadata not authenticated, not counted toward the policy: %s "+
			"(planted, or written by PGHoard or by a hoard that did not sign backups)", backupNames(none)))
	}
	// Those signed with a key the configuration lacks are named by key:
	// adding it, not deleting them, is what to do.
	var altered []*BackupInfo
	missing := map[string][]*BackupInfo{}
	for _, b := range invalid {
		if b.KeyMissing != "" {
			missing[b.KeyMissing] = append(missing[b.KeyMissing], b)
		} else {
			altered = append(altered, b)
		}
	}
	if len(altered) > 0 {
		plan.Notes = append(plan.Notes, fmt.Sprintf("metadata does not authenticate (altered, or copied under another name), kept and not counted: %s",
			backupNames(altered)))
	}
	for _, kid := range slices.Sorted(maps.Keys(missing)) {
		plan.Notes = append(plan.Notes, fmt.Sprintf("%s, kept and not counted: %s", keyMissingWhy(kid), backupNames(missing[kid])))
	}
}

// deletedIn reports whether ds deletes b, and why.
func deletedIn(ds []BackupDecision, b *BackupInfo) (bool, string) {
	for _, d := range ds {
		if d.Backup == b {
			return true, d.Reason
		}
	}
	return false, ""
}

// backupSystems joins the backups' names, each with its system
// identifier.
func backupSystems(bs []*BackupInfo) string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = fmt.Sprintf("%s (system %s)", b.Name, b.SystemID)
	}
	return strings.Join(names, ", ")
}

// backupNames joins the backups' names.
func backupNames(bs []*BackupInfo) string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name
	}
	return strings.Join(names, ", ")
}

// splitShared returns apart the backups of bs whose chunk folder is not
// theirs alone, which retention must neither count nor delete (deleting
// a backup deletes the folder of its name):
//
//   - Those whose name another backup of bs in the same store shares:
//     every main object of one name, hoard's
//     basebackup/NAME.00000000.pghoard and PGHoard's basebackup/NAME, is
//     backup NAME, with the one folder of that name. A backup has one
//     main object, so one of them was planted (or copied there) by
//     someone who can write the storage, and which one cannot be told
//     from metadata: a copy of a signed one authenticates, as the HMAC
//     binds the name, not the key. Counted, the copy would make an older
//     backup surplus; deleted (a planted one claiming an old start), it
//     would take the chunks of the backup it shares the name with.
//   - Those named as a folder where hoard keeps its own records
//     (incrementalMarkerFolder, deltaRetentionFolder): no backup hoard or
//     PGHoard takes is (their names start with the time), and deleting
//     one would delete the markers of the backups or retention runs in
//     progress.
func splitShared(bs []*BackupInfo) (rest, shared []*BackupInfo) {
	type id struct {
		a    *Archive
		name string
	}
	n := map[id]int{}
	for _, b := range bs {
		n[id{b.Archive, b.Name}]++
	}
	for _, b := range bs {
		if n[id{b.Archive, b.Name}] > 1 || reservedFolder(b.Name) {
			shared = append(shared, b)
		} else {
			rest = append(rest, b)
		}
	}
	return rest, shared
}

// splitDamagedName returns apart the backups of bs whose name a damaged
// backup of the same store shares (ScanAllBackups: a main object whose
// metadata cannot be read), for keepShared, as splitShared does two of
// bs: the damaged backup is neither counted nor deleted (someone must
// look at it), its chunks are in the one folder of that name, and
// deleting the other main object, planted by someone who can write the
// storage and claiming an old start, would delete them.
func splitDamagedName(bs []*BackupInfo, damaged []*DamagedBackup) (rest, shared []*BackupInfo) {
	for _, b := range bs {
		if slices.ContainsFunc(damaged, func(d *DamagedBackup) bool { return d.Archive == b.Archive && d.Name == b.Name }) {
			shared = append(shared, b)
		} else {
			rest = append(rest, b)
		}
	}
	return rest, shared
}

// reservedFolder reports whether name is that of a folder under the chunk
// directories where hoard keeps markers, not a backup's chunks.
func reservedFolder(name string) bool {
	return name == incrementalMarkerFolder || name == deltaRetentionFolder
}

// keepShared adds the backups splitShared set apart to plan.Keep,
// outside the policy: their starts hold WAL as every kept backup's do,
// and a note names their main objects.
func keepShared(plan *RetentionPlan, shared []*BackupInfo) {
	var same, reserved []string
	for _, b := range shared {
		reason := fmt.Sprintf("kept, and not counted: another main object names backup %s too (one was planted or copied there)", b.Name)
		if reservedFolder(b.Name) {
			reason = fmt.Sprintf("kept, and not counted: %s is the name of a folder of hoard's markers, not of a backup (planted)", b.Name)
			reserved = append(reserved, b.Key)
		} else {
			same = append(same, b.Key)
		}
		plan.Keep = append(plan.Keep, BackupDecision{Backup: b, Reason: reason})
	}
	if len(shared) > 0 {
		sortDecisions(plan.Keep)
	}
	if len(same) > 0 {
		plan.Notes = append(plan.Notes, fmt.Sprintf("main objects of the same backup name, each kept and none counted toward the policy: %s; "+
			"a backup has one, in one of the two forms (hoard's NAME%s, PGHoard's NAME): delete the one that is not the backup's own "+
			"(someone who can write the storage stored it)", strings.Join(same, ", "), ControlSuffix))
	}
	if len(reserved) > 0 {
		plan.Notes = append(plan.Notes, fmt.Sprintf("main objects named as a folder of hoard's markers, kept and not counted toward the policy: %s; "+
			"no backup is named so: delete them (someone who can write the storage stored them)", strings.Join(reserved, ", ")))
	}
}
