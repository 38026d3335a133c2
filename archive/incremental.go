package archive

import (
	"archive/tar"
	"context"
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

// ReadControlMember reads the control object key and returns its parsed
// manifest and the data of its member name (e.g. ControlPGManifest), read
// into memory. The object is read to its end first, so the codec's checks
// have passed before anything is returned. A control object without the
// member is an error.
func (a *Archive) ReadControlMember(ctx context.Context, key, name string) (*Manifest, []byte, error) {
	rc, _, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		return nil, nil, fmt.Errorf("open control object %s: %w", key, err)
	}
	defer rc.Close()
	lr := &controlReader{r: rc, h: nullHash{}, max: maxControlSize}
	tr := tar.NewReader(lr)
	var m *Manifest
	var data []byte
	found := false
	for first := true; ; first = false {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("control object %s: read tar: %w", key, err)
		}
		if first {
			if h.Name != ManifestName || h.Size > MaxManifestSize {
				return nil, nil, fmt.Errorf("control object %s: first member is %s, not %s within %d bytes", key, Quoted(h.Name), ManifestName, MaxManifestSize)
			}
			js, err := io.ReadAll(tr)
			if err != nil {
				return nil, nil, fmt.Errorf("control object %s: %w", key, err)
			}
			if m, err = ParseManifest(js); err != nil {
				return nil, nil, fmt.Errorf("control object %s: %w", key, err)
			}
			if err := m.Validate(); err != nil {
				return nil, nil, fmt.Errorf("control object %s: %w", key, err)
			}
			continue
		}
		if path.Clean(h.Name) != name {
			continue
		}
		if found {
			return nil, nil, fmt.Errorf("control object %s: member %s twice", key, name)
		}
		if h.Typeflag != tar.TypeReg || h.Size > MaxPGManifest {
			return nil, nil, fmt.Errorf("control object %s: member %s is not a regular file within %d bytes", key, name, MaxPGManifest)
		}
		if data, err = io.ReadAll(tr); err != nil {
			return nil, nil, fmt.Errorf("control object %s: member %s: %w", key, name, err)
		}
		found = true
	}
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return nil, nil, fmt.Errorf("control object %s: %w", key, err)
	}
	if m == nil {
		return nil, nil, fmt.Errorf("control object %s: empty tar", key)
	}
	if !found {
		return nil, nil, fmt.Errorf("control object %s holds no %s", key, name)
	}
	return m, data, nil
}

// nullHash is a hash.Hash that computes nothing, for a controlReader
// whose sum nobody reads.
type nullHash struct{}

func (nullHash) Write(p []byte) (int, error) { return len(p), nil }
func (nullHash) Sum(b []byte) []byte         { return b }
func (nullHash) Reset()                      {}
func (nullHash) Size() int                   { return 0 }
func (nullHash) BlockSize() int              { return 1 }

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
