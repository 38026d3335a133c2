package restore

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"path"

	"github.com/hoardbackup/hoard/archive"
)

// PGManifestCheck compares the files of one backup with the
// backup_manifest it carries, by the rules restore applies as it writes
// them (pgManifest: each file's size and CRC-32C, no file that is not
// listed, every listed file present but those the backup leaves out on
// purpose), without writing them: hoard verify --full reads every file
// of a backup through it, so that it never calls sound a backup restore
// refuses. Its errors are restore's and wrap ErrPGManifest.
//
// Each file is given to it once (a chunk's or bundle's member, the
// control tar's members, a delta backup's delta objects and embedded
// files), then Missing names the listed files none of those held.
// Several goroutines may use one PGManifestCheck.
type PGManifestCheck struct {
	pm    *pgManifest
	spcs  map[string]bool  // tablespace names, as chunks name them
	delta deltaTablespaces // as delta backups name them
	// control are the files of the control tar, read with
	// backup_manifest for Control; nil when there were more than
	// maxControlFiles, and Control reads them again.
	control []controlFile
}

// controlFile is a file of a control tar as NewPGManifestCheck read it.
type controlFile struct {
	p      memberPlan
	member string
	size   int64
	crc    uint32
}

// maxControlFiles bounds the files of a control tar NewPGManifestCheck
// keeps for Control: hoard's hold pg_control, backup_label and
// tablespace_map (basebackup/control.go), PGHoard's no more; a tar of
// more (anyone can store one in a site without keys) is read again by
// Control rather than held.
const maxControlFiles = 64

// NewPGManifestCheck reads the backup_manifest of backup b, whose control
// object ReadControl read as ctrl, as Run does before restoring b (the
// same refusals: a control object without one where b's authenticated
// metadata says it holds one, one that does not parse). It returns nil
// and no error when restore compares nothing for b: b's metadata records
// no backup_manifest (PGHoard's backups). It reads the control tar's
// other files in the same pass, for Control.
//
// An incremental backup (one with a parent) is compared with its own
// backup_manifest as restoreChain compares the backup it restores
// (errChainNoPGManifest, whatever b's metadata says): its
// INCREMENTAL.<name> files under that name, with the incremental file's
// size and CRC-32C, its whole files, backup_label as backed up (before
// its INCREMENTAL FROM lines go), and every file it lists held. Each
// backup of a chain holds every file its own backup_manifest lists, so a
// parent is compared as a backup of its own.
func NewPGManifestCheck(ctx context.Context, src *archive.Archive, b *archive.BackupInfo, ctrl *archive.Control) (*PGManifestCheck, error) {
	read, chain := comparedWith(b, ctrl.Manifest)
	if !read {
		return nil, nil
	}
	// The control tar's files are read in the same pass, for Control:
	// backup_manifest comes last, after them.
	spcs := tablespaceNames(ctrl.Manifest)
	files := []controlFile{}
	buf := make([]byte, 64<<10)
	other := func(h *tar.Header, data io.Reader) error {
		p, err := planMember(h, spcs, true)
		if err != nil {
			return err
		}
		sum := &crcWriter{w: io.Discard}
		if _, err := io.CopyBuffer(sum, data, buf); err != nil {
			return fmt.Errorf("member %s: read: %w", archive.Quoted(h.Name), err)
		}
		switch {
		case p.kind != memberFile || files == nil:
		case len(files) == maxControlFiles:
			files = nil
		default:
			files = append(files, controlFile{p: p, member: h.Name, size: sum.n, crc: sum.crc})
		}
		return nil
	}
	pm, err := readPGManifest(ctx, src, b, ctrl, chain, other)
	if err != nil || pm == nil {
		return nil, err
	}
	c := newPGManifestCheck(pm, ctrl)
	c.control = files
	return c, nil
}

// comparedWith reports whether NewPGManifestCheck compares the files of
// backup b, whose control tar's manifest is m, with its backup_manifest
// (read), and whether as a backup of an incremental chain (chain: Run's
// test in check).
func comparedWith(b *archive.BackupInfo, m *archive.Manifest) (read, chain bool) {
	if b.Format != archive.FormatBBv2 && b.Format != archive.FormatDeltaV2 {
		return false, false
	}
	chain = b.Parent != "" || m.Hoard != nil && m.Hoard.Incremental != nil
	return chain || b.PGManifest, chain
}

// newPGManifestCheck is the check of the files of the backup whose
// control object is ctrl with its backup_manifest pm.
func newPGManifestCheck(pm *pgManifest, ctrl *archive.Control) *PGManifestCheck {
	return &PGManifestCheck{pm: pm, spcs: tablespaceNames(ctrl.Manifest), delta: newDeltaTablespaces(ctrl.Manifest)}
}

// Files is how many files the backup_manifest lists.
func (c *PGManifestCheck) Files() int { return len(c.pm.files) }

// ChunkMember compares member h of a chunk of a pghoard-bb-v2 backup,
// whose data r holds, with its entry, as restore writes it (planMember):
// it reads r to the member's end through buf. A member restore does not
// write as a file (a directory, one only the control tar writes) is read
// and not compared.
func (c *PGManifestCheck) ChunkMember(h *tar.Header, r io.Reader, buf []byte) error {
	p, err := planMember(h, c.spcs, false)
	if err != nil {
		return err
	}
	return c.member(p, h.Name, r, buf)
}

// BundleMember is ChunkMember for a member of a delta backup's bundle,
// named relative to the data directory (planBundle).
func (c *PGManifestCheck) BundleMember(h *tar.Header, r io.Reader, buf []byte) error {
	p, err := planBundle(h, c.delta)
	if err != nil {
		return err
	}
	return c.member(p, h.Name, r, buf)
}

// DeltaFile compares file rel of a delta backup's manifest (its
// relative_path), of size bytes whose CRC-32C is crc (NewCRC32C), with
// its entry: a file restored from a delta object, or embedded in the
// manifest.
func (c *PGManifestCheck) DeltaFile(rel string, size int64, crc uint32) error {
	p, err := planDeltaPath(rel, tar.TypeReg, c.delta)
	if err != nil {
		return err
	}
	return c.pm.check(p.spc, p.rel, "pgdata/"+rel, size, crc)
}

// Control compares the members of b's control tar with their entries as
// extractControl does, pg_control as backed up, tablespace_map as stored
// (a restore that moves a tablespace writes it anew), backup_manifest
// not at all (it does not list itself). NewPGManifestCheck read them
// with backup_manifest; only a tar of more than maxControlFiles files is
// read again, and must decode to the bytes ReadControl read as ctrl.
func (c *PGManifestCheck) Control(ctx context.Context, src *archive.Archive, b *archive.BackupInfo, ctrl *archive.Control) error {
	if c.control != nil {
		for _, f := range c.control {
			if err := c.pm.check(f.p.spc, f.p.rel, f.member, f.size, f.crc); err != nil {
				return fmt.Errorf("control object %s: %w", b.Key, err)
			}
		}
		return nil
	}
	rc, _, err := src.Codec.Open(ctx, src.Store, b.Key)
	if err != nil {
		return fmt.Errorf("open control object %s: %w", b.Key, err)
	}
	defer rc.Close()
	sum := sha256.New()
	sized := &sizedReader{r: rc, max: ctrl.Size, what: "decoded bytes, more than when it was first read"}
	r := io.TeeReader(sized, sum)
	tr := tar.NewReader(r)
	buf := make([]byte, 64<<10)
	for h, err := range Members(tr) {
		if err != nil {
			return fmt.Errorf("control object %s: %w", b.Key, err)
		}
		if path.Clean(h.Name) == archive.ControlPGManifest {
			continue
		}
		p, err := planMember(h, c.spcs, true)
		if err != nil {
			return fmt.Errorf("control object %s: %w", b.Key, err)
		}
		if err := c.member(p, h.Name, tr, buf); err != nil {
			return fmt.Errorf("control object %s: %w", b.Key, err)
		}
	}
	if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
		return fmt.Errorf("control object %s: read: %w", b.Key, err)
	}
	var got [sha256.Size]byte
	sum.Sum(got[:0])
	if sized.n != ctrl.Size || got != ctrl.Sum {
		return fmt.Errorf("control object %s changed since it was first read (%d bytes, then %d): %w", b.Key, ctrl.Size, sized.n, ErrSizeMismatch)
	}
	return nil
}

// Missing returns an error naming the files the manifest lists that
// none of the files given held, but for those the backup leaves out on
// purpose (pgManifest.missing); nil when there are none. It is called
// once every file was given.
func (c *PGManifestCheck) Missing() error { return c.pm.missing() }

// member reads r, member of plan p, to its end and compares it with its
// entry when restore writes it as a file.
func (c *PGManifestCheck) member(p memberPlan, member string, r io.Reader, buf []byte) error {
	sum := &crcWriter{w: io.Discard}
	if _, err := io.CopyBuffer(sum, r, buf); err != nil {
		return fmt.Errorf("member %s: read: %w", archive.Quoted(member), err)
	}
	if p.kind != memberFile {
		return nil
	}
	return c.pm.check(p.spc, p.rel, member, sum.n, sum.crc)
}

// NewCRC32C returns a hash of PostgreSQL's CRC-32C (pg_crc32c), as
// backup_manifest records it, for DeltaFile.
func NewCRC32C() hash.Hash32 { return crc32.New(castagnoli) }

// Altered adds to err, which wraps ErrPGManifest, what it means and what
// to do, as restore and verify say it.
func Altered(err error) error {
	return fmt.Errorf("%w (the backup is damaged or was altered: restore another backup with --basebackup)", err)
}
