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
// same name (archive-copy, both kept) is listed once per site (backups,
// and damaged, the copies whose metadata does not parse). Every chain
// takes a parent as restore takes it, whichever site holds the child: the
// copy of the first site holding that name, the site, then its moved_from
// sites in order (archive.Archive.FirstCopies), sound or damaged. So an
// old site's child whose parent the site holds too is judged on the
// site's copy of the parent, the one restore reads, not on the old
// site's, and a damaged first copy breaks the chain even where another
// site's copy is sound, as restore refuses it.
func checkChains(a *archive.Archive, backups []*archive.BackupInfo, damaged []*archive.DamagedBackup, reps []BackupReport) {
	first := a.FirstCopies(archive.Backups{Sound: backups, Damaged: damaged})
	taken := make(map[*archive.BackupInfo]bool, len(first.Sound))
	for _, b := range first.Sound {
		taken[b] = true
	}
	at := make(map[string]int, len(first.Sound))
	for i, b := range backups {
		if taken[b] {
			at[b.Name] = i
		}
	}
	firstDamaged := make(map[string]*archive.DamagedBackup, len(first.Damaged))
	for _, d := range first.Damaged {
		firstDamaged[d.Name] = d
	}
	// parentOf returns the index in backups of the copy of b's parent
	// that restore takes, or an error when that copy is damaged or no
	// site holds the parent.
	parentOf := func(b *archive.BackupInfo) (int, error) {
		if d, ok := firstDamaged[b.Parent]; ok {
			of := ""
			if len(a.MovedFrom) > 0 && d.Archive != nil {
				of = " of site " + d.Archive.Site
			}
			return -1, fmt.Errorf("backup %s is an incremental of backup %s, whose object %s%s, the copy restore takes, is damaged (%v): %w",
				b.Name, b.Parent, d.Key, of, d.Err, archive.ErrNoParent)
		}
		if j, ok := at[b.Parent]; ok {
			return j, nil
		}
		return -1, fmt.Errorf("backup %s is an incremental of backup %s, which is not stored or is damaged: %w",
			b.Name, b.Parent, archive.ErrNoParent)
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
			// Its copy in another site than the child's (moved_from):
			// named, so that the old site's sound copy does not
			// contradict the report.
			of := ""
			if reps[j].Site != r.Site {
				of = fmt.Sprintf(" (its copy in site %s, the one restore takes)", reps[j].Site)
			}
			if reps[j].objectsBroken {
				broken("backup %s, which it needs, is broken%s", backups[j].Name, of)
				break
			}
			if err := reps[j].parentErr; err != nil {
				broken("backup %s, which it needs, cannot be restored as a parent%s: %v", backups[j].Name, of, err)
				break
			}
		}
	}
}

// chainOf returns the indexes in backups of b's chain, b first (-1: its
// own index is not needed), then each parent as parentOf takes it;
// as archive.Chain, a parent missing (parentOf's error) or a loop is an
// error wrapping archive.ErrNoParent.
func chainOf(b *archive.BackupInfo, backups []*archive.BackupInfo, parentOf func(*archive.BackupInfo) (int, error)) ([]int, error) {
	chain := []int{-1}
	seen := map[string]bool{b.Name: true}
	for cur := b; cur.Parent != ""; {
		j, err := parentOf(cur)
		if err != nil {
			return nil, err
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
