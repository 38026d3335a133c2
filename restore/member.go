package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/hoardbackup/hoard/archive"
)

// ErrUnsafeMember is returned (wrapped) for a tar member restore refuses:
// a name that is absolute, holds "..", or lies outside pgdata/ and the
// backup's tablespaces/<name>/; a symbolic link, hard link, device, FIFO
// or sparse file; a member over the chunk's size; a member written twice.
// The error names the backup, the object and the member.
var ErrUnsafeMember = errors.New("unsafe member in backup")

// maxControlMember bounds pg_control, which restore holds in memory until
// the control object verified (PostgreSQL's is PG_CONTROL_FILE_SIZE, 8192
// bytes).
const maxControlMember = 64 << 10

// controlOnly are the members only the control tar may write. PGHoard's
// chunks never hold them; a chunk that did could make a failed restore
// look startable, so they are skipped there.
var controlOnly = map[string]bool{
	archive.ControlPGControl:     true,
	archive.ControlBackupLabel:   true,
	archive.ControlTablespaceMap: true,
}

// Members yields the header of each member of tr in order, the member's
// data being read from tr until the next step. A read error is yielded
// once, wrapped as "read tar", with a nil header, and ends the sequence;
// the end-of-archive marker ends it without one.
func Members(tr *tar.Reader) iter.Seq2[*tar.Header, error] {
	return func(yield func(*tar.Header, error) bool) {
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(nil, fmt.Errorf("read tar: %w", err))
				return
			}
			if !yield(h, nil) {
				return
			}
		}
	}
}

// memberKind is what restore does with a tar member.
type memberKind int

const (
	memberSkip memberKind = iota // nothing
	memberDir                    // create the directory
	memberFile                   // create the regular file, which must not exist yet
)

// memberPlan says where a member goes: rel (slash-separated, clean and
// local) under the data directory when spc is "", else under tablespace
// spc's directory.
type memberPlan struct {
	kind memberKind
	spc  string
	rel  string
}

// planMember decides what restore does with member h of a chunk, or of the
// control tar when control is set; spcs holds the backup's tablespace
// names. It is the only place that maps member names to paths, and it
// touches nothing: the extractor then creates directories and regular
// files only, without following links (see extractor).
//
// Skipped: the manifest, the pgdata/ and tablespaces/<name>/ roots, a
// global PAX header, and in a chunk the members only the control tar
// writes (pg_control, backup_label, tablespace_map). Refused, with an error
// wrapping ErrUnsafeMember: every link, device, FIFO and sparse member
// (PostgreSQL's BASE_BACKUP sends none to hoard's chunks, and PGHoard's
// local-tar mode skips special files), a name that is empty, absolute, holds
// ".." or NUL, or is outside pgdata/ and the backup's tablespaces, a
// tablespace member outside the tablespace's PG_<version>_<catalog>
// directory, and anything under pg_tblspc/, where restore makes the
// tablespace links.
func planMember(h *tar.Header, spcs map[string]bool, control bool) (memberPlan, error) {
	refuse := func(format string, args ...any) (memberPlan, error) {
		return memberPlan{}, fmt.Errorf("member %s: %s: %w", archive.Quoted(h.Name), fmt.Sprintf(format, args...), ErrUnsafeMember)
	}
	var kind memberKind
	switch h.Typeflag {
	case tar.TypeDir:
		kind = memberDir
	case tar.TypeReg:
		if sparse(h) {
			return refuse("sparse file")
		}
		kind = memberFile
	case tar.TypeXGlobalHeader:
		return memberPlan{}, nil
	case tar.TypeSymlink:
		return refuse("symbolic link to %s (restore makes only the pg_tblspc links, from the manifest)", archive.Quoted(h.Linkname))
	case tar.TypeLink:
		return refuse("hard link to %s", archive.Quoted(h.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		return refuse("device file")
	case tar.TypeFifo:
		return refuse("FIFO")
	case tar.TypeGNUSparse:
		return refuse("sparse file")
	default:
		return refuse("member type %q", h.Typeflag)
	}
	name := strings.TrimSuffix(h.Name, "/")
	switch {
	case name == "" || strings.HasPrefix(name, "/"):
		return refuse("absolute or empty name")
	case strings.ContainsRune(name, 0):
		return refuse("NUL in the name")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return refuse("\"..\" in the name")
		}
	}
	clean := path.Clean(name)
	if clean == archive.ManifestName {
		return memberPlan{}, nil
	}
	if !control && controlOnly[clean] {
		return memberPlan{}, nil
	}
	p := memberPlan{kind: kind}
	switch {
	case clean == "pgdata" || clean == "tablespaces":
		if kind != memberDir {
			return refuse("the root of the backup is not a directory")
		}
		return memberPlan{}, nil
	case strings.HasPrefix(clean, "pgdata/"):
		p.rel = strings.TrimPrefix(clean, "pgdata/")
		if p.rel == "pg_tblspc" && kind != memberDir {
			return refuse("pg_tblspc is not a directory")
		}
		if strings.HasPrefix(p.rel, "pg_tblspc/") {
			return refuse("pg_tblspc holds only the tablespace links restore makes")
		}
	case strings.HasPrefix(clean, "tablespaces/"):
		spc, rest, _ := strings.Cut(strings.TrimPrefix(clean, "tablespaces/"), "/")
		if !spcs[spc] {
			return refuse("tablespace %s is not in the backup's manifest", archive.Quoted(spc))
		}
		if rest == "" {
			if kind != memberDir {
				return refuse("the root of tablespace %s is not a directory", archive.Quoted(spc))
			}
			return memberPlan{}, nil
		}
		// PostgreSQL keeps everything of a tablespace in one directory
		// named for its version (TABLESPACE_VERSION_DIRECTORY, e.g.
		// PG_15_202209061): nothing else is written to the directory a
		// tablespace goes to, whose path may come from the backup.
		if top, _, _ := strings.Cut(rest, "/"); !tablespaceVersionDir.MatchString(top) {
			return refuse("not under tablespace %s's PG_<version>_<catalog version> directory", archive.Quoted(spc))
		}
		p.spc, p.rel = spc, rest
	default:
		return refuse("not under pgdata/ or tablespaces/")
	}
	if !filepath.IsLocal(p.rel) {
		return refuse("not a local path")
	}
	return p, nil
}

// tablespaceVersionDir matches PostgreSQL's TABLESPACE_VERSION_DIRECTORY,
// "PG_" PG_MAJORVERSION "_" CATALOG_VERSION_NO (PG_9.6_201608131 before 10).
var tablespaceVersionDir = regexp.MustCompile(`^PG_[0-9]+(\.[0-9]+)?_[0-9]+$`)

// sparse reports whether h is a sparse file in any of the tar formats Go
// reads: GNU's old type 'S', or PAX's GNU.sparse records (formats 0.0 to
// 1.0), which archive/tar expands into holes.
func sparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// checkControlMember is the archive.ControlCheck of a restore: the control
// tar's members are planned as the extractor will, and pg_control, held in
// memory, is bounded.
func checkControlMember(m *archive.Manifest, h *tar.Header) error {
	if _, err := planMember(h, tablespaceNames(m), true); err != nil {
		return err
	}
	if path.Clean(h.Name) == archive.ControlPGControl && h.Size > maxControlMember {
		return fmt.Errorf("member %s: %d bytes, over %d: %w", archive.Quoted(h.Name), h.Size, maxControlMember, ErrUnsafeMember)
	}
	return nil
}

// ReadControl reads the control object of backup b in a as restore does
// before it writes anything: each member after the manifest is planned as
// the extractor will (checkControlMember), the tar must hold pg_control
// and backup_label, a regular file (ErrNoBackupLabel), and it must be b's
// own (archive.CheckControl: not another backup's copied under b's name).
// Restore reads the control object of the backup it restores with it, and
// verify that of every backup.
func ReadControl(ctx context.Context, a *archive.Archive, b *archive.BackupInfo) (*archive.Control, error) {
	return readControl(ctx, a, b, nil)
}

// readControl is ReadControl, reading backup_manifest with p (nil: not)
// in the same pass.
func readControl(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, p *pgmPass) (*archive.Control, error) {
	key := b.Key
	var control, label bool
	ctrl, err := a.ReadControl(ctx, key, func(m *archive.Manifest, h *tar.Header, data io.Reader) error {
		if err := checkControlMember(m, h); err != nil {
			return err
		}
		switch path.Clean(h.Name) {
		case archive.ControlPGControl:
			control = true
		case archive.ControlBackupLabel:
			label = h.Typeflag == tar.TypeReg
		}
		if p != nil {
			return p.member(m, h, data)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !control:
		return nil, fmt.Errorf("control object %s holds no %s (restore another backup): %w", key, archive.ControlPGControl, archive.ErrBadControl)
	case !label:
		return nil, errNoLabel("control object "+key, archive.ControlBackupLabel)
	}
	if err := archive.CheckControl(b, ctrl); err != nil {
		return nil, fmt.Errorf("control object %s: %w", key, err)
	}
	return ctrl, nil
}

// ReadControlPGManifest is ReadControl that reads backup b's
// backup_manifest in the same pass, for verify: one download,
// decryption and decompression of the object, not two or three. err is
// ReadControl's; when it is nil, ownErr is NewPGManifestCheck's (own
// set: verify without --full, which compares nothing), and parentErr,
// when parent is set (an incremental backup names b as its parent) and b
// is a full backup, why Run refuses the chain of an incremental backup
// on b: it reads the backup_manifest of each backup of a chain it
// restores whatever b's metadata says (none there, or one that does not
// parse: ErrPGManifest).
func ReadControlPGManifest(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, own, parent bool) (ctrl *archive.Control, ownErr, parentErr, err error) {
	full := func(m *archive.Manifest) bool {
		return b.Parent == "" && (m.Hoard == nil || m.Hoard.Incremental == nil)
	}
	p := &pgmPass{want: func(m *archive.Manifest) bool {
		read, _ := comparedWith(b, m)
		return own && read || parent && full(m)
	}}
	if ctrl, err = readControl(ctx, a, b, p); err != nil {
		return nil, nil, nil, err
	}
	if read, chain := comparedWith(b, ctrl.Manifest); own && read {
		_, ownErr = p.levelResult(b, ctrl, chain)
	}
	if parent && full(ctrl.Manifest) {
		_, parentErr = p.levelResult(b, ctrl, true)
	}
	return ctrl, ownErr, parentErr, nil
}

// errNoLabel is the error of a backup whose object what holds no
// backup_label, there called member.
func errNoLabel(what, member string) error {
	return fmt.Errorf("%s holds no %s: PostgreSQL would recover from pg_control's checkpoint, one from during the backup, "+
		"into a silently corrupt cluster (restore another backup): %w", what, member, ErrNoBackupLabel)
}

// CheckChunkMember is the check restore applies to each member of a chunk
// of the backup whose manifest is m, before writing it: for verify.
func CheckChunkMember(m *archive.Manifest, h *tar.Header) error {
	_, err := planMember(h, tablespaceNames(m), false)
	return err
}

func tablespaceNames(m *archive.Manifest) map[string]bool {
	out := make(map[string]bool, len(m.Tablespaces))
	for name := range m.Tablespaces {
		out[name] = true
	}
	return out
}
