package verify

import (
	"fmt"

	"github.com/hoardbackup/hoard/archive"
)

// checkChains marks every incremental backup whose chain of parents is
// incomplete, or holds a backup whose objects are broken, as broken
// itself: restore needs every backup of the chain down to a full one
// (but only the incremental backup's own WAL). As restore does, it takes
// the parent and its start from the control objects, which the site's
// keys authenticate, and not from the metadata, which anyone who can
// write to the bucket can change: a backup whose metadata names another
// parent than its control object records (or none), one whose parent is
// not a pghoard-bb-v2 backup, and one whose parent's control object
// records another start, timeline or system than the child was taken
// against, are broken. backups are oldest first, so a
// parent's report is final before its children's are looked at.
func checkChains(backups []*archive.BackupInfo, reps []BackupReport) {
	idx := make(map[string]int, len(backups))
	for i, b := range backups {
		idx[b.Name] = i
	}
	for i, b := range backups {
		r := &reps[i]
		broken := func(format string, args ...any) {
			r.Problems = append(r.Problems, "incremental chain: "+fmt.Sprintf(format, args...))
			r.Restorable, r.objectsBroken = false, true
		}
		var inc *archive.IncrementalParent
		if r.hoard != nil {
			inc = r.hoard.Incremental
		}
		if r.controlRead {
			recorded := ""
			if inc != nil {
				recorded = inc.Parent
			}
			if recorded != b.Parent {
				broken("its metadata names parent %q, its control object %q", b.Parent, recorded)
				continue
			}
		}
		if b.Parent == "" {
			continue
		}
		chain, err := archive.Chain(backups, b)
		if err != nil {
			broken("%v", err)
			continue
		}
		if inc != nil {
			if f := backups[idx[b.Parent]].Format; f != archive.FormatBBv2 {
				broken("backup %s, its parent, is of format %q, not %s", b.Parent, f, archive.FormatBBv2)
				continue
			}
			p := &reps[idx[b.Parent]]
			if ph := p.hoard; p.controlRead && (ph == nil || ph.StartLSN != inc.StartLSN || ph.StartTimeline != inc.Timeline || ph.SystemID != r.hoard.SystemID) {
				broken("backup %s, its parent, is not the backup it was taken against (starting at %s on timeline %d, of system %s): its control object records another start or system",
					b.Parent, inc.StartLSN, inc.Timeline, r.hoard.SystemID)
				continue
			}
		}
		for _, p := range chain[:len(chain)-1] {
			if reps[idx[p.Name]].objectsBroken {
				broken("backup %s, which it needs, is broken", p.Name)
				break
			}
			if err := reps[idx[p.Name]].parentErr; err != nil {
				broken("backup %s, which it needs, cannot be restored as a parent: %v", p.Name, err)
				break
			}
		}
	}
}
