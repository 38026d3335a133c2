package restore

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
)

// A single-tar backup is PGHoard's basic or pipe mode: the main object
// (no format metadata) is the whole base.tar of pg_basebackup --format
// tar, members at the tar's root (backup_label, PG_VERSION,
// global/pg_control, base/...). There is no manifest and no control
// object: global/pg_control travels inside the one tar, so restore holds
// it in memory and writes it only after the whole object has been read
// and its integrity checks passed at EOF. Until then the directory has no
// pg_control and PostgreSQL refuses to start on it, as with a chunked
// backup whose control tar was not yet written. PGHoard stores no
// tablespace in these modes (pg_basebackup writes each to its own tar,
// which PGHoard does not upload): a tablespace link in base.tar, or a
// tablespace_map that is not empty (pg_basebackup --format tar has the
// server send the map instead of the links), is refused, naming it.
//
// PGHoard's legacy pghoard-bb-v1 is one object too: a tar whose first
// member is the manifest (.pghoard_tar_metadata.json: pgdata and the
// tablespaces), then members named pgdata/... and tablespaces/<name>/...
// as in a pghoard-bb-v2 chunk, pg_control and backup_label last. The
// tablespaces are in the object's metadata (archive.V1Tablespaces); the
// manifest must name the same ones, which is checked before any other
// member is written, so metadata changed in the bucket cannot send the
// files elsewhere. It holds no tablespace_map (PGHoard left it out): the
// pg_tblspc links restore makes say where each tablespace is. pg_control
// is held back as above.

// maxV1Manifest bounds a pghoard-bb-v1 manifest, held in memory: PGHoard
// wrote the data directory's path, its version and the tablespaces.
const maxV1Manifest = 1 << 20

// oneTar plans the members of a backup held in one tar object, in order.
type oneTar struct {
	v1      bool
	spcs    map[string]archive.ManifestTablespace // v1: the tablespaces of the object's metadata
	names   map[string]bool
	members int
	label   bool // backup_label planned, a regular file of the data directory
}

func newOneTar(b *archive.BackupInfo) (*oneTar, error) {
	t := &oneTar{v1: b.Format == archive.FormatBBv1}
	if !t.v1 {
		return t, nil
	}
	spcs, err := archive.V1Tablespaces(b.Metadata)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", b.Name, err)
	}
	t.spcs, t.names = spcs, map[string]bool{}
	for name := range spcs {
		t.names[name] = true
	}
	return t, nil
}

// plan plans member h, whose data r holds; isControl reports
// global/pg_control, which restore holds in memory.
func (t *oneTar) plan(h *tar.Header, r io.Reader) (p memberPlan, isControl bool, err error) {
	t.members++
	switch {
	case !t.v1:
		p, isControl, err = planSingle(h)
	case t.members == 1:
		return p, false, t.checkManifest(h, r)
	default:
		p, isControl, err = planV1(h, t.names)
	}
	if err == nil && p.kind == memberFile && p.spc == "" && p.rel == "backup_label" {
		t.label = true
	}
	return p, isControl, err
}

// checkManifest reads a pghoard-bb-v1 object's manifest, its first
// member, and checks that it names the tablespaces of the metadata.
func (t *oneTar) checkManifest(h *tar.Header, r io.Reader) error {
	if h.Name != archive.ManifestName || h.Typeflag != tar.TypeReg {
		return fmt.Errorf("first member %s: not the manifest %s: %w", archive.Quoted(h.Name), archive.ManifestName, ErrUnsafeMember)
	}
	if h.Size > maxV1Manifest {
		return fmt.Errorf("manifest %s: %d bytes, over %d: %w", h.Name, h.Size, maxV1Manifest, ErrUnsafeMember)
	}
	js, err := io.ReadAll(io.LimitReader(r, maxV1Manifest))
	if err != nil {
		return fmt.Errorf("manifest %s: %w", h.Name, err)
	}
	var m struct {
		Tablespaces map[string]archive.ManifestTablespace `json:"tablespaces"`
	}
	if err := json.Unmarshal(js, &m); err != nil {
		return fmt.Errorf("manifest %s: %w", h.Name, err)
	}
	same := len(m.Tablespaces) == len(t.spcs)
	for name, ts := range m.Tablespaces {
		if t.spcs[name] != ts {
			same = false
		}
	}
	if !same {
		return fmt.Errorf("manifest %s: tablespaces %v, the object's metadata says %v: %w",
			h.Name, m.Tablespaces, t.spcs, ErrTablespaceMismatch)
	}
	return nil
}

// ErrTablespaceMismatch is returned (wrapped) when a pghoard-bb-v1
// backup's manifest and its object's metadata name different tablespaces.
var ErrTablespaceMismatch = errors.New("tablespaces differ between manifest and metadata")

// planV1 plans member h (after the manifest) of a pghoard-bb-v1 object,
// whose tablespaces are spcs, as planMember plans a control tar's;
// isControl reports pgdata/global/pg_control. A tablespace_map is skipped:
// restore's pg_tblspc links say where the tablespaces went.
func planV1(h *tar.Header, spcs map[string]bool) (p memberPlan, isControl bool, err error) {
	if p, err = planMember(h, spcs, true); err != nil {
		return p, false, err
	}
	switch path.Clean(h.Name) {
	case archive.ControlPGControl:
		if h.Typeflag != tar.TypeReg || h.Size > maxControlMember {
			return p, false, fmt.Errorf("member %s: not a regular file of at most %d bytes: %w", archive.Quoted(h.Name), maxControlMember, ErrUnsafeMember)
		}
		return memberPlan{}, true, nil
	case archive.ControlTablespaceMap:
		return memberPlan{}, false, nil
	}
	return p, false, nil
}

// TarCheck checks the members of a backup held in one tar object (no
// format, or pghoard-bb-v1) in order, as restore does before writing each:
// for verify.
type TarCheck struct {
	t       *oneTar
	control bool
}

// NewTarCheck returns the check of backup b's object, which must be one tar
// (b.OneTar()); it fails when b's metadata names tablespaces restore would
// refuse.
func NewTarCheck(b *archive.BackupInfo) (*TarCheck, error) {
	t, err := newOneTar(b)
	if err != nil {
		return nil, err
	}
	return &TarCheck{t: t}, nil
}

// Member checks member h, whose data is r (it may read some of it).
func (c *TarCheck) Member(h *tar.Header, r io.Reader) error {
	_, isControl, err := c.t.plan(h, r)
	if isControl {
		if c.control {
			return fmt.Errorf("member %s twice: %w", archive.Quoted(h.Name), ErrUnsafeMember)
		}
		c.control = true
	}
	return err
}

// Done checks, after the last member, that the object held pg_control
// and backup_label (and for pghoard-bb-v1 the manifest).
func (c *TarCheck) Done() error { return c.t.done(c.control) }

func (t *oneTar) done(control bool) error {
	switch {
	case t.v1 && t.members == 0:
		return fmt.Errorf("it holds no manifest %s: not a %s tar", archive.ManifestName, archive.FormatBBv1)
	case !control && t.v1:
		return fmt.Errorf("it holds no %s", archive.ControlPGControl)
	case !control:
		return fmt.Errorf("it holds no global/pg_control: not a pg_basebackup tar")
	case !t.label && t.v1:
		return errNoLabel("it", archive.ControlBackupLabel)
	case !t.label:
		return errNoLabel("it", "backup_label")
	}
	return nil
}

// singleTar restores the backup b of src held in one tar object into ex's
// directories, re-reading the object from the start after a transient
// error (the files the failed attempt created are removed first). The
// tablespaces of m (a pghoard-bb-v1's) are linked to dirs before
// pg_control is written.
func (o *Options) singleTar(ctx context.Context, log zerolog.Logger, src *archive.Archive, b *archive.BackupInfo, ex *extractor, m *archive.Manifest, dirs map[string]string, res *Result) error {
	p := &progress{Progress: Progress{Chunks: 1, Bytes: b.TotalSizePlain}}
	if n, ok := originalSize(b); ok {
		p.Bytes = n
	}
	stop := o.reportProgress(p)
	buf := make([]byte, copyBufferSize)
	var made madeFiles
	var pgControl []byte
	var err error
	for attempt := 0; ; attempt++ {
		made.reset()
		pgControl, err = o.singleTarOnce(ctx, src, b, ex, buf, &p.bytesDone, &made)
		if err == nil || ctx.Err() != nil || !retryable(err) || attempt >= o.Retries || made.overflow {
			break
		}
		if rerr := ex.removeMade(&made); rerr != nil {
			err = fmt.Errorf("%w (retrying after: %w)", rerr, err)
			break
		}
		log.Warn().Err(err).Str("key", b.Key).Int("attempt", attempt+1).Msg("retrying backup object")
	}
	if err == nil {
		p.chunksDone.Add(1)
	}
	stop(err == nil)
	if err != nil {
		return fmt.Errorf("object %s%s: %w", b.Key, o.Archive.InSite(src), err)
	}
	if err := ex.linkTablespaces(m, dirs); err != nil {
		return err
	}
	if err := ex.writePGControl(pgControl); err != nil {
		return err
	}
	res.Chunks = 1
	res.Bytes += p.bytesDone.Load()
	res.StoredBytes += b.StoredSize
	return nil
}

// originalSize returns the object's original-file-size, the length of the
// tar, when recorded.
func originalSize(b *archive.BackupInfo) (int64, bool) {
	var n int64
	if _, err := fmt.Sscan(b.Metadata[archive.MetaOriginalFileSize], &n); err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// singleTarOnce reads b's object once, to its end, writing every member
// but pg_control, which it returns. A member may not declare more bytes
// than are left of the tar's original-file-size, and the stored bytes may
// not pass the listed size of the object.
func (o *Options) singleTarOnce(ctx context.Context, src *archive.Archive, b *archive.BackupInfo, ex *extractor, buf []byte, total *atomic.Int64, made *madeFiles) (_ []byte, err error) {
	octx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rc, md, err := src.Store.Open(octx, b.Key)
	if err != nil {
		return nil, &sourceError{fmt.Errorf("open %s: %w", b.Key, err)}
	}
	defer rc.Close()
	storedMax := b.StoredSize
	if storedMax <= 0 {
		storedMax = -1
	}
	stored := &sizedReader{r: rc, max: storedMax, what: "stored bytes, more than the object listed"}
	dec, err := src.Codec.DecodeObject(b.Key, stored, md)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	want, known := originalSize(b)
	if !known {
		want = -1
	}
	decoded := &sizedReader{r: dec, max: want, what: "decoded bytes, over original-file-size"}
	pr := &progressReader{r: decoded, total: total}
	defer func() {
		if err != nil {
			total.Add(-pr.n.Load()) // a retry starts the count again
		}
	}()
	var pgControl []byte
	plan, err := newOneTar(b)
	if err != nil {
		return nil, err
	}
	stopWatch := watchStall(octx, cancel, pr, o.StallTimeout)
	err = func() error {
		tr := tar.NewReader(pr)
		var dir dirHandle
		defer dir.close()
		for h, err := range Members(tr) {
			if err != nil {
				return err
			}
			if known && h.Size > want-decoded.n {
				return fmt.Errorf("member %s declares %d bytes, more than the %d left of original-file-size: %w",
					archive.Quoted(h.Name), h.Size, want-decoded.n, ErrUnsafeMember)
			}
			if pgControl, err = ex.singleMember(plan, tr, h, pgControl, buf, made, &dir); err != nil {
				return err
			}
		}
		return nil
	}()
	if err == nil {
		// The padding after the end-of-archive blocks and the codec's
		// checks at EOF, then whatever stored bytes the decoder left.
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{pr}, buf)
	}
	if err == nil {
		if _, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{stored}, buf); err != nil {
			err = &sourceError{err}
		}
	}
	stopWatch()
	if cause := context.Cause(octx); errors.Is(cause, errStalled) {
		return nil, fmt.Errorf("no data for %s: %w", o.StallTimeout, errStalled)
	}
	if err != nil {
		return nil, err
	}
	if storedMax >= 0 && stored.n != storedMax {
		return nil, fmt.Errorf("stored %d bytes, listed as %d: %w", stored.n, storedMax, ErrSizeMismatch)
	}
	if err := plan.done(pgControl != nil); err != nil {
		return nil, err
	}
	return pgControl, nil
}

// singleMember writes member h of a backup held in one tar, as t plans
// it, or when it is pg_control returns it instead (pgControl is the one
// read so far, nil when none).
func (e *extractor) singleMember(t *oneTar, r io.Reader, h *tar.Header, pgControl []byte, buf []byte, made *madeFiles, dir *dirHandle) ([]byte, error) {
	p, isControl, err := t.plan(h, r)
	if err != nil {
		return nil, err
	}
	if !isControl {
		return pgControl, e.write(p, r, h, buf, made, dir)
	}
	if pgControl != nil {
		return nil, fmt.Errorf("member %s twice: %w", archive.Quoted(h.Name), ErrUnsafeMember)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", archive.Quoted(h.Name), err)
	}
	return data, nil
}

// planSingle plans member h of a single-tar backup, whose names are
// relative to the data directory, as planMember plans the same name under
// pgdata/ of a control tar. isControl reports global/pg_control, which
// restore holds in memory (at most maxControlMember bytes).
func planSingle(h *tar.Header) (p memberPlan, isControl bool, err error) {
	name := path.Clean(strings.TrimSuffix(h.Name, "/"))
	switch {
	case name == "global/pg_control":
		if h.Typeflag != tar.TypeReg || h.Size > maxControlMember {
			return p, false, fmt.Errorf("member %s: not a regular file of at most %d bytes: %w", archive.Quoted(h.Name), maxControlMember, ErrUnsafeMember)
		}
		return p, true, nil
	case strings.HasPrefix(name, "pg_tblspc/") && h.Typeflag == tar.TypeSymlink:
		return p, false, fmt.Errorf("member %s: a tablespace (link to %s), whose files a basic or pipe backup does not hold: %w",
			archive.Quoted(h.Name), archive.Quoted(h.Linkname), ErrUnsupportedFormat)
	case name == "tablespace_map" && h.Size > 0:
		// pg_basebackup --format tar asks for the map (TABLESPACE_MAP),
		// and the server then sends it instead of the pg_tblspc links:
		// a base.tar with tablespaces has no link, only this. Restored
		// without the tablespaces' files, the map would make PostgreSQL
		// link each tablespace to its original directory (on the
		// source's host, the running cluster's) and replay WAL into it.
		return p, false, fmt.Errorf("member %s: the backup has tablespaces (%d bytes of tablespace_map), whose files a basic or pipe backup does not hold: %w",
			archive.Quoted(h.Name), h.Size, ErrUnsupportedFormat)
	}
	if strings.HasPrefix(h.Name, "/") {
		// Under pgdata/ it would no longer look absolute.
		return p, false, fmt.Errorf("member %s: absolute name: %w", archive.Quoted(h.Name), ErrUnsafeMember)
	}
	mapped := *h
	mapped.Name = "pgdata/" + h.Name
	if p, err = planMember(&mapped, nil, true); err != nil {
		return p, false, fmt.Errorf("in the tar as %s: %w", archive.Quoted(h.Name), err)
	}
	return p, false, nil
}

// CheckSingleMember is the check restore applies to each member of a
// single-tar backup (PGHoard's basic and pipe modes) before writing it:
// for verify.
func CheckSingleMember(h *tar.Header) error {
	_, _, err := planSingle(h)
	return err
}
