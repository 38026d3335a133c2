package verify

import (
	"fmt"

	"github.com/hoardbackup/hoard/archive"
)

// checkChains marks every incremental backup whose chain of parents is
// incomplete, or holds a backup whose objects are broken, as broken
// itself: restore needs every backup of the chain down to a full one
// (but only the incremental backup's own WAL). backups are oldest first,
// so a parent's report is final before its children's are looked at.
func checkChains(backups []*archive.BackupInfo, reps []BackupReport) {
	idx := make(map[string]int, len(backups))
	for i, b := range backups {
		idx[b.Name] = i
	}
	for i, b := range backups {
		if b.Parent == "" {
			continue
		}
		r := &reps[i]
		chain, err := archive.Chain(backups, b)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("incremental chain: %v", err))
			r.Restorable, r.objectsBroken = false, true
			continue
		}
		for _, p := range chain[:len(chain)-1] {
			if reps[idx[p.Name]].objectsBroken {
				r.Problems = append(r.Problems, fmt.Sprintf("incremental chain: backup %s, which it needs, is broken", p.Name))
				r.Restorable, r.objectsBroken = false, true
				break
			}
		}
	}
}
