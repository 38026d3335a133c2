package archive

import "slices"

// A backup's metadata HMAC (backupauth.go) binds its
// hoard-system-identifier, but its key comes from the public key alone,
// and many operators make one key pair for every cluster (and name every
// site "default"). So another cluster's backups, copied with their names
// into this site by someone who can write its storage and read the other
// one's, authenticate here, and would count as this cluster's newest:
// retention would delete this cluster's backups and WAL on their strength,
// and the schedule would take none.
//
// Where hoard knows the system identifier of the cluster a site backs up
// (the daemon asks its node; hoard retention and hoard check ask it when
// it answers), a backup whose authenticated metadata names another system
// counts like one whose metadata does not authenticate: OfSystem leaves it
// out of what Trusted chooses from, so it is not counted toward keeping,
// not scheduled from and not reported as the newest, and retention
// deletes it only as this system's backups alone allow (planAuthenticated).
// Backups from before a pg_upgrade carry the old identifier legitimately:
// they are treated the same way, and age out as PGHoard's backups do.

// foreign reports whether b's metadata authenticates and names a system
// other than systemID. With systemID "" (not known) nothing is foreign,
// nor is an authenticated backup that records no system identifier.
func (b *BackupInfo) foreign(systemID string) bool {
	return systemID != "" && b.Auth == AuthOK && b.SystemID != "" && b.SystemID != systemID
}

// OfSystem returns the backups of bs that are not foreign to systemID
// (authenticated, of another system), oldest first as bs is: what the
// choices made on metadata alone (Trusted) go by where the site's system
// identifier is known. With systemID "" it returns bs.
func OfSystem(bs []*BackupInfo, systemID string) []*BackupInfo {
	if systemID == "" {
		return bs
	}
	var out []*BackupInfo
	for _, b := range bs {
		if !b.foreign(systemID) {
			out = append(out, b)
		}
	}
	return out
}

// TrustedOfSystem returns the backups that stand for the site's cluster
// in a choice of one backup made on metadata alone (which to restore or
// test, where archive-sync starts), oldest first: those Trusted keeps,
// less another system's (OfSystem). The order matters: Trusted's
// fallback to every backup is for a site where none authenticates (an
// archive from before hoard signed backups), not for one whose only
// authenticated backups are another system's (a new site with another
// cluster's copied in, or one after a pg_upgrade), where
// Trusted(OfSystem(bs, id)) would choose a planted unsigned backup that
// Trusted alone passes over. The result is empty when no authenticated
// backup is of this system while some authenticate. Retention counts by
// Trusted(OfSystem(bs, id)) instead: there, counting an unsigned backup
// keeps more.
func TrustedOfSystem(bs []*BackupInfo, systemID string) []*BackupInfo {
	return OfSystem(Trusted(bs), systemID)
}

// Foreign returns the backups of bs that OfSystem leaves out: their
// metadata authenticates but names a system other than systemID.
func Foreign(bs []*BackupInfo, systemID string) []*BackupInfo {
	var out []*BackupInfo
	for _, b := range bs {
		if b.foreign(systemID) {
			out = append(out, b)
		}
	}
	return out
}

// Systems returns the system identifiers that the authenticated backups
// of bs record, each once, in the order of bs. More than one means
// backups of other systems are in the site (another cluster's, or from
// before a pg_upgrade): restore's automatic choice, with no node to ask
// which is the site's, warns, and hoard list names them.
func Systems(bs []*BackupInfo) []string {
	var out []string
	for _, b := range bs {
		if b.Auth == AuthOK && b.SystemID != "" && !slices.Contains(out, b.SystemID) {
			out = append(out, b.SystemID)
		}
	}
	return out
}
