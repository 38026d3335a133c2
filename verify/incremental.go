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
//
// A backup that a (the site) and a site it moved from both hold under the
// same name (archive-copy, both kept) is listed once per site: a parent
// is taken in its child's site, else in the first site holding it (the
// site, then its moved_from sites), so the site's own backups are checked
// with the parents restore takes (archive.Archive.FirstCopies).
func checkChains(a *archive.Archive, backups []*archive.BackupInfo, reps []BackupReport) {
	copies := make(map[string][]int, len(backups))
	for i, b := range backups {
		copies[b.Name] = append(copies[b.Name], i)
	}
	// parentOf returns the index in backups of the copy of b's parent
	// that b's chain takes, or -1.
	parentOf := func(b *archive.BackupInfo) int {
		best := -1
		for _, j := range copies[b.Parent] {
			s := a.ArchiveOf(backups[j])
			if s == a.ArchiveOf(b) {
				return j
			}
			if best < 0 || a.SiteRank(s) < a.SiteRank(a.ArchiveOf(backups[best])) {
				best = j
			}
		}
		return best
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
		chain, err := chainOf(b, backups, parentOf)
		if err != nil {
			broken("%v", err)
			continue
		}
		if inc != nil {
			if f := backups[chain[1]].Format; f != archive.FormatBBv2 {
				broken("backup %s, its parent, is of format %q, not %s", b.Parent, f, archive.FormatBBv2)
				continue
			}
			p := &reps[chain[1]]
			if ph := p.hoard; p.controlRead && (ph == nil || ph.StartLSN != inc.StartLSN || ph.StartTimeline != inc.Timeline || ph.SystemID != r.hoard.SystemID) {
				broken("backup %s, its parent, is not the backup it was taken against (starting at %s on timeline %d, of system %s): its control object records another start or system",
					b.Parent, inc.StartLSN, inc.Timeline, r.hoard.SystemID)
				continue
			}
		}
		for k := len(chain) - 1; k >= 1; k-- { // the full backup first
			j := chain[k]
			if reps[j].objectsBroken {
				broken("backup %s, which it needs, is broken", backups[j].Name)
				break
			}
			if err := reps[j].parentErr; err != nil {
				broken("backup %s, which it needs, cannot be restored as a parent: %v", backups[j].Name, err)
				break
			}
		}
	}
}

// chainOf returns the indexes in backups of b's chain, b first (-1: its
// own index is not needed), then each parent as parentOf takes it;
// as archive.Chain, a parent missing or a loop is an error wrapping
// archive.ErrNoParent.
func chainOf(b *archive.BackupInfo, backups []*archive.BackupInfo, parentOf func(*archive.BackupInfo) int) ([]int, error) {
	chain := []int{-1}
	seen := map[string]bool{b.Name: true}
	for cur := b; cur.Parent != ""; {
		j := parentOf(cur)
		if j < 0 {
			return nil, fmt.Errorf("backup %s is an incremental of backup %s, which is not stored or is damaged: %w",
				cur.Name, cur.Parent, archive.ErrNoParent)
		}
		p := backups[j]
		if seen[p.Name] {
			return nil, fmt.Errorf("backup %s: its chain of parents loops at %s: %w", b.Name, p.Name, archive.ErrNoParent)
		}
		seen[p.Name] = true
		chain = append(chain, j)
		cur = p
	}
	return chain, nil
}
