package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
)

// ErrNoParent is returned (wrapped) when an incremental backup's parent is
// not stored (or not listed as sound).
var ErrNoParent = errors.New("parent backup not found")

// MaxPGManifest bounds PostgreSQL's backup_manifest read into memory
// (about 150 bytes per file of the cluster).
const MaxPGManifest = 1 << 30

// ControlMember keeps one member of a control tar (Name, e.g.
// ControlPGManifest, of at most Max bytes) in memory, read in the pass
// that reads and checks the control object: its Check is the
// ControlCheck given to Archive.ReadBackupControl. What is used of the
// object is then what was checked; a second read could find another
// object under the key (someone who can write the bucket but holds no
// key copies another backup's control object there between the two).
type ControlMember struct {
	Name string
	Max  int64

	data  []byte
	found bool
	err   error
}

// Check keeps the member's data. A member over Max, not a regular file,
// or found twice does not stop the read: the object is still read to its
// end and checked, and Data reports it.
func (c *ControlMember) Check(_ *Manifest, h *tar.Header, data io.Reader) error {
	if path.Clean(h.Name) != c.Name || c.err != nil {
		return nil
	}
	switch {
	case c.found:
		c.err, c.data = fmt.Errorf("member %s twice", c.Name), nil
		return nil
	case h.Typeflag != tar.TypeReg || h.Size > c.Max:
		c.err = fmt.Errorf("member %s is not a regular file within %d bytes", c.Name, c.Max)
		return nil
	}
	b, err := io.ReadAll(data)
	if err != nil {
		return fmt.Errorf("member %s: %w", c.Name, err)
	}
	c.data, c.found = b, true
	return nil
}

// Data returns the member's bytes, once the control object has been read
// and checked; an error when it held none or one Check could not keep.
func (c *ControlMember) Data() ([]byte, error) {
	switch {
	case c.err != nil:
		return nil, c.err
	case !c.found:
		return nil, fmt.Errorf("holds no %s", c.Name)
	}
	return c.data, nil
}

// Chain returns the backups an incremental backup b needs, full backup
// first and b last, following each one's Parent among backups (a listing
// of sound backups). A parent missing from the listing is an error
// wrapping ErrNoParent that names it; so is a chain that loops.
func Chain(backups []*BackupInfo, b *BackupInfo) ([]*BackupInfo, error) {
	byName := make(map[string]*BackupInfo, len(backups))
	for _, x := range backups {
		byName[x.Name] = x
	}
	chain := []*BackupInfo{b}
	seen := map[string]bool{b.Name: true}
	for cur := b; cur.Parent != ""; {
		p, ok := byName[cur.Parent]
		if !ok {
			return nil, fmt.Errorf("backup %s is an incremental of backup %s, which is not stored or is damaged: %w",
				cur.Name, cur.Parent, ErrNoParent)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("backup %s: its chain of parents loops at %s: %w", b.Name, p.Name, ErrNoParent)
		}
		seen[p.Name] = true
		chain = append(chain, p)
		cur = p
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// keepParents moves into plan.Keep every backup planned for deletion that
// a kept backup needs: the parents, and their parents, of kept
// incremental backups. Restoring an incremental backup needs its whole
// chain.
func keepParents(plan *RetentionPlan) {
	kept := map[string]bool{}
	for _, k := range plan.Keep {
		kept[k.Backup.Name] = true
	}
	planned := map[string]int{}
	for i, d := range plan.Delete {
		planned[d.Backup.Name] = i
	}
	moved := map[int]string{} // index in Delete → the kept backup that needs it
	for _, k := range plan.Keep {
		for p := k.Backup.Parent; p != ""; {
			i, ok := planned[p]
			if !ok {
				break
			}
			if _, done := moved[i]; done {
				break
			}
			moved[i] = k.Backup.Name
			p = plan.Delete[i].Backup.Parent
		}
	}
	if len(moved) == 0 {
		return
	}
	var del []BackupDecision
	for i, d := range plan.Delete {
		child, ok := moved[i]
		if !ok {
			del = append(del, d)
			continue
		}
		d.Reason = fmt.Sprintf("%s; kept: the kept incremental backup %s needs it (its chain of parents)", d.Reason, child)
		plan.Keep = append(plan.Keep, d)
	}
	plan.Delete = del
	sortDecisions(plan.Keep)
}
