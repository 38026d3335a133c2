package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
)

// A delta backup (PGHoard's pghoard-delta-v1 and v2) has the control
// object of a pghoard-bb-v2 backup, whose JSON adds "manifest": every
// file of the data directory, each either a delta object
// basebackup_delta/<BLAKE2s-256 of its bytes> shared with other delta
// backups, embedded in the manifest (base64), or in one of the backup's
// bundles (tars under basebackup_delta_chunk/ whose members are named
// relative to the data directory); and every directory. Restore plans
// every path of the manifest as it plans a chunk's member under pgdata/
// before writing anything, then creates the directories, extracts the
// bundles and writes the delta objects in parallel, each decoded and
// checked against its name (a swapped or altered object is refused, naming
// it), writes the embedded files, and only then the control tar with
// pg_control.

// ErrDeltaDigest is returned (wrapped) when a delta object does not
// decode to the bytes its name (their digest) and the manifest promise.
var ErrDeltaDigest = errors.New("delta object does not match its digest")

// deltaPlan is what restore writes for a delta backup besides its bundles
// and control tar.
type deltaPlan struct {
	dirs     []memberPlan
	objects  []deltaObject
	embedded []deltaEmbedded
}

// deltaObject is one file restored from a delta object.
type deltaObject struct {
	p    memberPlan
	file archive.DeltaFile
	key  string
}

// deltaEmbedded is one file embedded in the manifest.
type deltaEmbedded struct {
	p    memberPlan
	name string
	data []byte
}

// planDelta parses the delta manifest of m and plans each of its paths
// as restore plans the member pgdata/<path> of a chunk: nothing may leave
// the data directory, nor be a file only the control object writes
// (pg_control, backup_label, tablespace_map); a path under pg_tblspc/ is
// refused unless it is pg_tblspc/<oid>/<path> of a tablespace in m, which
// is planned as tablespaces/<name>/<path> (see planRelative).
func planDelta(src *archive.Archive, m *archive.Manifest) (*deltaPlan, error) {
	dm, err := archive.ParseDelta(m)
	if err != nil {
		return nil, err
	}
	spcs := newDeltaTablespaces(m)
	st := dm.SnapshotResult.State
	dp := &deltaPlan{}
	for _, d := range st.EmptyDirs {
		if d == "." {
			continue
		}
		p, err := planDeltaPath(d, tar.TypeDir, spcs)
		if err != nil {
			return nil, fmt.Errorf("delta manifest: empty_dirs: %w", err)
		}
		if p.kind != memberSkip {
			dp.dirs = append(dp.dirs, p)
		}
	}
	for _, f := range st.Files {
		p, err := planDeltaPath(f.RelativePath, tar.TypeReg, spcs)
		if err != nil {
			return nil, fmt.Errorf("delta manifest: files: %w", err)
		}
		switch {
		case f.Hexdigest != "":
			dp.objects = append(dp.objects, deltaObject{p: p, file: f, key: src.Layout.DeltaKey(f.Hexdigest)})
		case f.ContentB64 != nil:
			data, _ := base64.StdEncoding.DecodeString(*f.ContentB64) // ParseDelta decoded it
			dp.embedded = append(dp.embedded, deltaEmbedded{p: p, name: f.RelativePath, data: data})
		}
	}
	return dp, nil
}

// deltaTablespaces are the tablespaces of a delta backup: names by OID
// (as pg_tblspc/<oid> names them) and the set of names.
type deltaTablespaces struct {
	byOID map[string]string
	names map[string]bool
}

func newDeltaTablespaces(m *archive.Manifest) deltaTablespaces {
	d := deltaTablespaces{byOID: map[string]string{}, names: tablespaceNames(m)}
	for name, ts := range m.Tablespaces {
		d.byOID[strconv.FormatUint(uint64(ts.OID), 10)] = name
	}
	return d
}

// planDeltaPath plans a path of a delta manifest, relative to the data
// directory, as a member of type typ.
func planDeltaPath(rel string, typ byte, spcs deltaTablespaces) (memberPlan, error) {
	h := &tar.Header{Name: rel, Typeflag: typ}
	p, err := planRelative(h, spcs)
	if err != nil {
		return p, err
	}
	if p.kind == memberSkip && typ == tar.TypeReg {
		return p, fmt.Errorf("%s: only the control object writes it: %w", archive.Quoted(rel), ErrUnsafeMember)
	}
	return p, nil
}

// planBundle plans member h of a delta backup's bundle, named relative to
// the data directory.
func planBundle(h *tar.Header, spcs deltaTablespaces) (memberPlan, error) {
	return planRelative(h, spcs)
}

// planRelative plans h, named relative to the data directory, as
// planMember plans pgdata/<name>: an absolute name is refused first, since
// under pgdata/ it would no longer be one. A name pg_tblspc/<oid>/<path>,
// where oid is one of the backup's tablespaces (hoard's delta backups
// name a tablespace's files so, relative to the data directory through
// the tablespace's link), is planned as planMember plans
// tablespaces/<name>/<path>: in the tablespace's directory, under its
// PG_<version>_<catalog version> directory. Any other name under
// pg_tblspc/ is refused, as planMember refuses it.
func planRelative(h *tar.Header, spcs deltaTablespaces) (memberPlan, error) {
	if strings.HasPrefix(h.Name, "/") || h.Name == "" {
		return memberPlan{}, fmt.Errorf("%s: absolute or empty name: %w", archive.Quoted(h.Name), ErrUnsafeMember)
	}
	mapped := *h
	mapped.Name = "pgdata/" + h.Name
	if rest, ok := strings.CutPrefix(h.Name, "pg_tblspc/"); ok {
		oid, rest, _ := strings.Cut(rest, "/")
		if name, ok := spcs.byOID[oid]; ok {
			mapped.Name = "tablespaces/" + name + "/" + rest
		}
	}
	p, err := planMember(&mapped, spcs.names, false)
	if err != nil {
		return p, fmt.Errorf("%s: %w", archive.Quoted(h.Name), err)
	}
	return p, nil
}

// CheckBundleMember is the check restore applies to each member of a
// delta backup's bundle (of the backup whose manifest is m) before
// writing it: for verify.
func CheckBundleMember(m *archive.Manifest, h *tar.Header) error {
	_, err := planBundle(h, newDeltaTablespaces(m))
	return err
}

// CheckDeltaManifest is the check restore applies to a delta backup's
// manifest before writing anything: for verify.
func CheckDeltaManifest(src *archive.Archive, m *archive.Manifest) error {
	_, err := planDelta(src, m)
	return err
}

// deltaJob is one bundle or one delta object to restore.
type deltaJob struct {
	bundle *archive.ManifestChunk
	object *deltaObject
}

// restoreDelta writes the directories, bundles, delta objects and
// embedded files of a delta backup (all but its control tar) into ex's
// data directory, the bundles and objects on a pool of o.Parallel
// workers.
func (o *Options) restoreDelta(ctx context.Context, log zerolog.Logger, src *archive.Archive, ex *extractor, m *archive.Manifest, dp *deltaPlan, res *Result) error {
	for _, d := range dp.dirs {
		if _, _, err := ex.mkdir(d.spc, d.rel); err != nil {
			return fmt.Errorf("delta manifest: create directory %s: %w", d.rel, err)
		}
	}
	ex.bundles = true
	ex.deltaSpcs = newDeltaTablespaces(m)
	jobs := make([]deltaJob, 0, len(m.Chunks)+len(dp.objects))
	p := &progress{}
	for i := range m.Chunks {
		jobs = append(jobs, deltaJob{bundle: &m.Chunks[i]})
		p.Bytes += m.Chunks[i].InputSize
	}
	for i := range dp.objects {
		jobs = append(jobs, deltaJob{object: &dp.objects[i]})
		p.Bytes += dp.objects[i].file.FileSize
	}
	p.Chunks = len(jobs)
	err := o.runJobs(ctx, len(jobs), p, func(ctx context.Context, i int, buf []byte) error {
		j := jobs[i]
		if j.bundle != nil {
			_, err := o.chunk(ctx, log, src, ex, *j.bundle, buf, p)
			return err
		}
		return o.deltaObject(ctx, log, src, ex, *j.object, buf, p)
	})
	if err != nil {
		return err
	}
	res.Chunks = len(jobs)
	res.Bytes += p.bytesDone.Load()
	for _, c := range m.Chunks {
		res.StoredBytes += c.ResultSize
	}
	for _, d := range dp.objects {
		res.StoredBytes += d.file.StoredFileSize
	}
	for _, e := range dp.embedded {
		if err := ex.writeFile(e.p, e.name, bytes.NewReader(e.data), 0o600, nil, nil, nil); err != nil {
			return fmt.Errorf("delta manifest: embedded file: %w", err)
		}
		res.Bytes += int64(len(e.data))
	}
	return nil
}

// deltaObject restores one file from its delta object, reading it again
// from the start after a transient error (the file is removed first).
func (o *Options) deltaObject(ctx context.Context, log zerolog.Logger, src *archive.Archive, ex *extractor, d deltaObject, buf []byte, p *progress) error {
	var made madeFiles
	defer made.close()
	for attempt := 0; ; attempt++ {
		made.reset()
		err := o.deltaObjectOnce(ctx, src, ex, d, buf, &p.bytesDone, &made)
		if err == nil {
			return nil
		}
		// A file that failed its checks does not stay.
		if rerr := ex.removeMade(&made); rerr != nil {
			return fmt.Errorf("delta object %s (file %s): %w (removing it after: %w)", d.key, d.file.RelativePath, rerr, err)
		}
		if ctx.Err() != nil || !retryable(err) || attempt >= o.Retries {
			return fmt.Errorf("delta object %s (file %s): %w", d.key, d.file.RelativePath, err)
		}
		log.Warn().Err(err).Str("key", d.key).Int("attempt", attempt+1).Msg("retrying delta object")
	}
}

// deltaObjectOnce decodes d's object once, to its end, into its file. It
// may not decode to more bytes than the manifest's file_size; at the end
// it must have decoded to exactly file_size bytes whose BLAKE2s-256 is the object's
// name.
func (o *Options) deltaObjectOnce(ctx context.Context, src *archive.Archive, ex *extractor, d deltaObject, buf []byte, total *atomic.Int64, made *madeFiles) (err error) {
	octx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rc, md, err := src.Store.Open(octx, d.key)
	if err != nil {
		return &sourceError{err}
	}
	defer rc.Close()
	// The stored size is not checked: the digest is, and PGHoard may
	// have stored the same bytes again, encoded otherwise, after an older
	// manifest recorded its stored_file_size.
	stored := &sizedReader{r: rc, max: -1}
	dec, err := src.Codec.DecodeObject(d.key, stored, md)
	if err != nil {
		return err
	}
	defer dec.Close()
	decoded := &sizedReader{r: dec, max: d.file.FileSize, what: "decoded bytes, over the manifest's file_size"}
	sum := archive.NewDeltaHash()
	pr := &progressReader{r: io.TeeReader(decoded, sum), total: total}
	defer func() {
		if err != nil {
			total.Add(-pr.n.Load()) // a retry starts the count again
		}
	}()
	stop := watchStall(octx, cancel, pr, o.StallTimeout)
	err = ex.writeFile(d.p, "pgdata/"+d.file.RelativePath, pr, 0o600, buf, made, nil)
	if err == nil {
		if _, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{stored}, buf); err != nil {
			err = &sourceError{err}
		}
	}
	stop()
	if cause := context.Cause(octx); errors.Is(cause, errStalled) {
		return fmt.Errorf("no data for %s: %w", o.StallTimeout, errStalled)
	}
	// A file that differs from backup_manifest (ErrPGManifest) was
	// decoded to its end: when the object is not the bytes of its name
	// (swapped, altered), the checks below say so, the more precise
	// cause.
	if err != nil && !errors.Is(err, ErrPGManifest) {
		return err
	}
	if decoded.n != d.file.FileSize {
		return fmt.Errorf("decoded %d bytes, manifest's file_size says %d: %w", decoded.n, d.file.FileSize, ErrSizeMismatch)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != d.file.Hexdigest {
		return fmt.Errorf("its content has BLAKE2s-256 %s, not the digest it is named by (altered or swapped): %w", got, ErrDeltaDigest)
	}
	return err
}
