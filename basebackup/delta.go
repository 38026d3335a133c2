package basebackup

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// DefaultDeltaMinFileSize is PGHoard's
// basebackup_delta_mode_min_delta_file_size: in delta mode, files of this
// size and more are stored as delta objects, smaller ones (over
// archive.DeltaEmbedMax bytes) in bundles.
const DefaultDeltaMinFileSize = 10 << 20

// A delta backup (ModeDelta, PGHoard's basebackup_mode "delta",
// pghoard-delta-v2) reads the data directory as local-tar does, but
// stores each file of at least Options.DeltaMinFileSize bytes once, as
// basebackup_delta/<BLAKE2s-256 of its bytes>, shared by every backup
// holding the same bytes; smaller files go into bundles
// (basebackup_delta_chunk/<name>/, members named relative to the data
// directory) and files of at most archive.DeltaEmbedMax bytes into the
// manifest itself. The manifest, in the control object's JSON, lists them
// all, as PGHoard writes it.
//
// The bundles are stored first, so that retention sees a delta backup
// running (a recent bundle folder of no listed backup) before any delta
// object is reused. Then the large files, the largest first, are read in
// one of two ways, chosen by the previous delta backup's manifest
// (previousDelta), which is only a hint: nothing it says is recorded.
// A file it does not list, or lists with another size or modification
// time, has likely changed, and is read once: its pages checked, hashed
// on one goroutine while another compresses and encrypts it into a
// temporary file (Options.TempDir), which is then stored under the hash
// of the bytes it holds. Any other file (and every file when the previous
// manifest cannot be read) is first read and hashed only; a delta object
// of that name that exists is reused, never written again, and otherwise
// the file is read again, hashed and staged the same way. Either way the
// object is stored with a conditional create (an object that appeared
// meanwhile is reused, not replaced), after a look that skips the upload
// of one that exists, under the hash of the bytes it holds, which is the
// digest the manifest records: a file that changed between two reads is
// stored as it was at the second, and no object is ever stored under a
// name its bytes do not have, even for a moment. An existing object is
// reused unread only when a delta backup of the site refers to it; any
// other is read back first, and stored over when it does not hold the
// digest's bytes (deltatrust.go). Before the control object is stored,
// every reused or stored-over object is checked to exist still
// (settleReused), the backup's marker to be as it last stored it and
// still counted by retention, however many writes of it failed
// (checkDeltaMarker: else a retention run may have missed the backup and
// deleted a reused object after that check, and the backup fails), and,
// in a site that encrypts, the backup's
// reference list is stored (archive.Archive.StoreDeltaRefs), which
// retention reads where it has only the public key.

// deltaBackup is what a delta backup adds to a local one.
type deltaBackup struct {
	mu       sync.Mutex
	inflight map[string]*digestState // digest → its object, decided once per backup
	bad      map[string]string       // digest → why its existing object may not be reused (deltatrust.go)
	trust    *deltaTrust             // the objects the site's delta backups refer to
}

// digestState is the fate of one digest's object in this backup.
type digestState struct {
	done     chan struct{}
	ok       bool  // the object holds the digest's bytes (reused or stored)
	reused   bool  // it existed before this backup looked
	replaced bool  // it existed without the digest's bytes, and this backup stored over it
	stored   int64 // its stored size
}

// deltaFileResult is one large file, read and hashed.
type deltaFileResult struct {
	e        *entry
	gone     bool // removed before it was read: left out
	digest   string
	size     int64
	stored   int64
	reused   bool
	replaced bool // stored over an object that did not hold its bytes
	crc      uint32
}

// deltaResult is what copyDelta stored.
type deltaResult struct {
	bundles  []*chunkResult
	manifest *archive.DeltaManifest
	pgFiles  []pgManifestFile // of the delta objects and embedded files (the bundles' are theirs)
	plain    int64            // decoded bytes of the delta objects and embedded files
	stored   int64            // their stored bytes
	uploaded int              // delta objects this backup stored
	reused   int              // delta objects it reused
}

// copyDelta stores the files of a delta backup, bundles then delta
// objects, and returns the manifest.
func (l *localBackup) copyDelta(ctx context.Context, began time.Time) (*deltaResult, error) {
	d := &deltaBackup{inflight: map[string]*digestState{}, bad: map[string]string{}}
	l.deltaState = d
	if err := os.MkdirAll(l.o.TempDir, 0o700); err != nil {
		return nil, fmt.Errorf("basebackup: delta objects are staged in %s: %w", l.o.TempDir, err)
	}
	// The marker first, before any delta object is looked for: a
	// retention run that has not seen this backup then deletes none
	// (archive/deltamark.go).
	marked, err := l.o.Archive.MarkDeltaRunning(ctx, l.name)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	// Stored again while the backup runs, however long: its folder,
	// bundles first, must not look orphaned to retention
	// (archive.KeepDeltaRunning). run stops it before the marker goes.
	// The stop (kctx's end) lets a write in flight finish under the
	// backup's own ctx: a write cut by the stop would leave the marker
	// at a time checkDeltaMarker does not know, which it takes for
	// another writer's.
	l.stopDeltaMarker = keepMarker(ctx, archive.DeltaRunningRefresh, func(kctx context.Context, tick <-chan time.Time) {
		if l.o.deltaMarkerTick != nil {
			tick = l.o.deltaMarkerTick
		}
		// Read by checkDeltaMarker once stopDeltaMarker returned.
		l.deltaMarkedAt, l.deltaMarkerErr = l.o.Archive.KeepDeltaRunning(ctx, l.name, marked, tick, kctx.Done(), l.log)
	})
	dr := &deltaResult{manifest: &archive.DeltaManifest{}}
	dm := dr.manifest
	dm.Start = archive.LabelTime{Time: began.UTC()}
	st := &dm.SnapshotResult.State
	st.RootGlobs = []string{"**/*"}
	st.EmptyDirs = []string{"."}
	// Every path is relative to the data directory, a tablespace's
	// through its link: pg_tblspc/<oid>/PG_<version>_<catalog>/...
	// (PGHoard names bundle members, delta objects' files and
	// directories so, relative to the data directory).
	deltaRoots := map[*root]*root{}
	for _, e := range l.entries {
		if deltaRoots[e.root] == nil {
			r := *e.root
			r.prefix = r.manifest
			deltaRoots[e.root] = &r
		}
	}
	var small, large, embed []entry
	for _, e := range l.entries {
		e.root = deltaRoots[e.root]
		switch e.typ {
		case tar.TypeDir:
			st.EmptyDirs = append(st.EmptyDirs, e.name())
		case tar.TypeSymlink:
			return nil, fmt.Errorf("basebackup: %s is a symbolic link, which delta mode (as PGHoard's) does not store: use basebackup_mode local-tar", e.path())
		case tar.TypeReg:
			switch {
			case e.size <= archive.DeltaEmbedMax:
				embed = append(embed, e)
			case e.size < l.o.DeltaMinFileSize:
				small = append(small, e)
			default:
				large = append(large, e)
			}
		}
	}
	dm.SnapshotResult.Start = archive.LabelTime{Time: time.Now().UTC()}

	// Bundles first: a running delta backup shows in storage.
	bundles, err := l.bundles(ctx, small)
	if err != nil {
		return nil, err
	}
	if l.o.afterBundles != nil {
		l.o.afterBundles()
	}
	files, err := l.deltaObjects(ctx, large, l.previousDelta(ctx, d))
	if err != nil {
		return nil, err
	}
	// A reused object deleted meanwhile, by a retention run that
	// planned before this backup began, would leave it unrestorable.
	if err := l.settleReused(ctx, marked, files); err != nil {
		return nil, err
	}
	dr.bundles = bundles

	// The manifest: every file as stored.
	sent := map[string]bool{}
	for _, b := range bundles {
		for name := range b.fileNames {
			sent[name] = true
		}
	}
	missingOK := func(rel string) bool { return strings.Contains(rel, "/") } // PGHoard: only top-level files must exist
	for i := range small {
		e := &small[i]
		if sent[e.name()] {
			st.Files = append(st.Files, archive.DeltaFile{RelativePath: e.name(), FileSize: e.size, MtimeNS: e.mtime.UnixNano(), ShouldBeBundled: true, MissingOK: missingOK(e.name())})
		}
	}
	hashes := map[string]bool{}
	for _, f := range files {
		if f.gone {
			continue
		}
		st.Files = append(st.Files, archive.DeltaFile{
			RelativePath: f.e.name(), FileSize: f.size, StoredFileSize: f.stored, MtimeNS: f.e.mtime.UnixNano(),
			Hexdigest: f.digest, MissingOK: missingOK(f.e.name()),
		})
		dr.pgFiles = append(dr.pgFiles, pgManifestFile{path: f.e.manifestPath(), size: f.size, mtime: f.e.mtime, crc32c: f.crc})
		dr.plain += f.size
		dr.stored += f.stored
		if !hashes[f.digest] {
			hashes[f.digest] = true
			dm.SnapshotResult.Hashes = append(dm.SnapshotResult.Hashes, archive.DeltaHash{Hexdigest: f.digest, Size: f.size})
			if f.reused {
				dr.reused++
			} else {
				dr.uploaded++
			}
		}
	}
	for i := range embed {
		e := &embed[i]
		data, err := readEmbedded(e)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile: WAL replay recreates what is needed
		}
		if err != nil {
			return nil, fmt.Errorf("basebackup: %w", err)
		}
		b64 := base64.StdEncoding.EncodeToString(data)
		st.Files = append(st.Files, archive.DeltaFile{RelativePath: e.name(), FileSize: int64(len(data)), MtimeNS: e.mtime.UnixNano(), ContentB64: &b64, MissingOK: missingOK(e.name())})
		dr.pgFiles = append(dr.pgFiles, pgManifestFile{path: e.manifestPath(), size: int64(len(data)), mtime: e.mtime, crc32c: crc32c(data)})
		dr.plain += int64(len(data))
		dr.stored += int64(len(data))
		l.read.Add(int64(len(data)))
	}
	dm.SnapshotResult.End = archive.LabelTime{Time: time.Now().UTC()}
	dm.SnapshotResult.Files = len(st.Files)
	for _, f := range st.Files {
		dm.SnapshotResult.TotalSize += f.FileSize
	}
	var bPlain, bStored int64
	for _, b := range bundles {
		bPlain += b.input
		bStored += b.stored.StoredSize
	}
	dm.UploadResult = archive.DeltaUploadResult{TotalSize: bPlain + dr.plain, TotalStoredSize: bStored + dr.stored}
	dm.End = archive.LabelTime{Time: time.Now().UTC()}
	l.log.Info().Int("bundles", len(bundles)).Int("delta_objects_stored", dr.uploaded).Int("delta_objects_reused", dr.reused).
		Int("embedded", len(embed)).Msg("delta backup files stored")
	return dr, nil
}

// prevFile is a large file as the previous delta backup found it.
type prevFile struct {
	Size    int64 `json:"size"`
	MtimeNS int64 `json:"mtime_ns"`
}

// previousDelta returns the files the newest delta backup of this
// cluster in the site stored as delta objects, by path, for
// likelyChanged: empty when there is none (every large file is new). They
// come from its manifest or, when that cannot be read (a site configured
// with the public key only), from Options.DeltaHintFile if it describes
// that backup; else previousDelta returns nil, and every large file is
// hashed before it is stored. Nothing in it is trusted: it only chooses
// which read of a file comes first. It also sets d.trust from the site's
// delta backups, with the objects that manifest refers to.
func (l *localBackup) previousDelta(ctx context.Context, d *deltaBackup) map[string]prevFile {
	a := l.o.Archive
	bs, err := a.ListBackups(ctx)
	d.trust = newDeltaTrust(a, bs, func(b *archive.BackupInfo, err error) {
		l.log.Info().Err(err).Str("backup", b.Name).Msg("the delta objects of a backup not read: those it refers to are read back before they are reused")
	})
	if err != nil {
		l.log.Info().Err(err).Msg("previous delta backup not read: every large file is hashed before it is stored, every existing delta object read back before it is reused")
		return nil
	}
	var prev *archive.BackupInfo
	for _, b := range bs { // oldest first
		if (b.Format == archive.FormatDeltaV2 || b.Format == archive.FormatDeltaV1) && b.SystemID == l.srv.systemID {
			prev = b
		}
	}
	out := map[string]prevFile{}
	if prev == nil {
		return out
	}
	c, err := a.ReadControl(ctx, prev.Key, nil)
	var dm *archive.DeltaManifest
	if err == nil {
		dm, err = archive.ParseDelta(c.Manifest)
	}
	if err != nil {
		if h := l.readDeltaHint(prev.Name); h != nil {
			return h
		}
		l.log.Info().Err(err).Str("previous", prev.Name).Msg("previous delta backup not read: every large file is hashed before it is stored")
		return nil
	}
	d.trust.add(prev, dm)
	for _, f := range dm.SnapshotResult.State.Files {
		if f.Hexdigest != "" {
			out[f.RelativePath] = prevFile{Size: f.FileSize, MtimeNS: f.MtimeNS}
		}
	}
	return out
}

// deltaHint is Options.DeltaHintFile's content: the large files a delta
// backup stored as delta objects, with their sizes and modification times.
type deltaHint struct {
	Backup   string              `json:"backup"`
	SystemID string              `json:"system_id"`
	Files    map[string]prevFile `json:"files"`
}

// readDeltaHint returns the files of Options.DeltaHintFile when it
// describes the backup called name of this cluster, else nil.
func (l *localBackup) readDeltaHint(name string) map[string]prevFile {
	if l.o.DeltaHintFile == "" {
		return nil
	}
	data, err := os.ReadFile(l.o.DeltaHintFile)
	if err != nil {
		return nil
	}
	var h deltaHint
	if json.Unmarshal(data, &h) != nil || h.Backup != name || h.SystemID != l.srv.systemID || h.Files == nil {
		return nil
	}
	return h.Files
}

// writeDeltaHint replaces Options.DeltaHintFile with the large files of
// the delta backup just stored, as storage.WriteFileAtomic does: a reader
// sees the old hint or the new one, even after a crash.
func (l *localBackup) writeDeltaHint(dm *archive.DeltaManifest) error {
	h := deltaHint{Backup: l.name, SystemID: l.srv.systemID, Files: map[string]prevFile{}}
	for _, f := range dm.SnapshotResult.State.Files {
		if f.Hexdigest != "" {
			h.Files[f.RelativePath] = prevFile{Size: f.FileSize, MtimeNS: f.MtimeNS}
		}
	}
	data, err := json.Marshal(&h)
	if err != nil {
		return err
	}
	dir := filepath.Dir(l.o.DeltaHintFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return storage.WriteFileAtomic(l.o.DeltaHintFile, bytes.NewReader(data), nil)
}

// bundles stores files in bundles.
func (l *localBackup) bundles(ctx context.Context, files []entry) ([]*chunkResult, error) {
	if len(files) == 0 {
		return nil, nil
	}
	l.entries = files
	return l.copy(ctx, split(files, l.o.DeltaChunkSize))
}

// deltaObjects reads, hashes and stores (or reuses) the large files, on
// l.o.Parallel workers, the largest first (so that the last to finish are
// small), while the SQL session is watched. prev, when not nil, is the
// previous delta backup's files by path (previousDelta): a file that
// differs from its entry (see likelyChanged) is stored in a single read.
func (l *localBackup) deltaObjects(ctx context.Context, files []entry, prev map[string]prevFile) ([]*deltaFileResult, error) {
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(files[b].size, files[a].size) })
	return runWorkers(ctx, l, len(files), order, func(ctx context.Context, w *worker, i int) (*deltaFileResult, error) {
		e := &files[i]
		if prev != nil && likelyChanged(e, prev) {
			return w.deltaChanged(ctx, e)
		}
		return w.deltaFile(ctx, e)
	})
}

// likelyChanged reports whether e surely or probably holds other bytes
// than at the previous delta backup, whose delta objects' files are prev:
// it is not there, or its size or modification time differ. It is only a
// hint of what to read first: whatever it says, the digest recorded is
// that of the bytes this backup read and stored.
func likelyChanged(e *entry, prev map[string]prevFile) bool {
	f, ok := prev[e.name()]
	return !ok || f.Size != e.size || f.MtimeNS != e.mtime.UnixNano()
}

// deltaChanged stores e, which likely changed since the previous delta
// backup, in one read: its pages checked, hashed, compressed and encrypted
// into a staging file at once (stage), then stored under the digest of
// what was read, or the object of that digest reused when it exists.
func (w *worker) deltaChanged(ctx context.Context, e *entry) (*deltaFileResult, error) {
	st, err := w.stage(ctx, e, true)
	if err != nil {
		return nil, err
	}
	if st.r.gone {
		return st.r, nil
	}
	defer st.tmp.Close()
	s, owner := w.l.deltaState.claim(st.r.digest)
	if !owner {
		select {
		case <-s.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		if s.ok {
			st.r.stored, st.r.reused, st.r.replaced = s.stored, s.reused, s.replaced
			return st.r, nil
		}
		// Its owner's file changed before it was stored: this file's
		// staged bytes have the digest.
		return st.r, w.put(ctx, st)
	}
	defer close(s.done)
	if err := w.put(ctx, st); err != nil {
		return nil, err
	}
	s.ok, s.reused, s.replaced, s.stored = true, st.r.reused, st.r.replaced, st.r.stored
	return st.r, nil
}

// deltaFile reads e, hashing it (and checking its pages, as local-tar
// does); a delta object of that digest that exists is reused, else the
// file is stored as a new one (storeNew).
func (w *worker) deltaFile(ctx context.Context, e *entry) (*deltaFileResult, error) {
	l := w.l
	r := &deltaFileResult{e: e, size: e.size}
	sum := archive.NewDeltaHash()
	crc, gone, err := w.hashFile(ctx, e, sum)
	if err != nil {
		return nil, err
	}
	if gone {
		r.gone = true
		return r, nil
	}
	r.crc = crc
	r.digest = hex.EncodeToString(sum.Sum(nil))
	s, owner := l.deltaState.claim(r.digest)
	if owner {
		n, err := w.decide(ctx, e, r.digest, s)
		close(s.done)
		if err != nil {
			return nil, err
		}
		if n != nil && !s.ok {
			// The file changed (or went) after it was hashed: it is
			// what the second read stored.
			return n, nil
		}
	} else {
		select {
		case <-s.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		if !s.ok {
			// The owner's file changed before it was stored: no object
			// holds this digest's bytes yet, so this file stores its own.
			return w.storeNew(ctx, e)
		}
	}
	r.stored, r.reused, r.replaced = s.stored, s.reused, s.replaced
	return r, nil
}

// claim returns the state of digest's object in this backup, and whether
// the caller is the one to decide it.
func (d *deltaBackup) claim(digest string) (*digestState, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.inflight[digest]; ok {
		return s, false
	}
	s := &digestState{done: make(chan struct{})}
	d.inflight[digest] = s
	return s, true
}

// decide decides digest's object: reused when it exists and may be
// (existing), else stored from a second read of e (storeNew). s.ok says
// whether the object now holds digest's bytes; when it does not, the file
// changed or went after it was hashed, and the returned result is what
// the second read found and stored.
func (w *worker) decide(ctx context.Context, e *entry, digest string, s *digestState) (*deltaFileResult, error) {
	a := w.l.o.Archive
	key := a.Layout.DeltaKey(digest)
	o, err := a.Store.Stat(ctx, key)
	switch {
	case err == nil:
		stored, ok, _, err := w.existing(ctx, digest, o, e.size)
		if err != nil {
			return nil, err
		}
		if ok {
			s.ok, s.reused, s.stored = true, true, stored
			return nil, nil
		}
		// put stores over it.
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("basebackup: delta object %s: %w", key, err)
	}
	n, err := w.storeNew(ctx, e)
	if err != nil {
		return nil, err
	}
	if !n.gone && n.digest == digest {
		s.ok, s.reused, s.replaced, s.stored = true, n.reused, n.replaced, n.stored
	}
	return n, nil
}

// storeNew reads e once more (its pages were checked by the read that
// hashed it) and stores it as the delta object named by the hash of what
// that read gave (stage, put): an object only ever holds the bytes its
// name says, even when the file changes while it is read. An object of
// that name that exists is reused, never replaced.
func (w *worker) storeNew(ctx context.Context, e *entry) (*deltaFileResult, error) {
	st, err := w.stage(ctx, e, false)
	if err != nil {
		return nil, err
	}
	if st.r.gone {
		return st.r, nil
	}
	defer st.tmp.Close()
	return st.r, w.put(ctx, st)
}

// staged is a file read, hashed, compressed and encrypted into a staging
// file, not stored yet. The staging file is never fsynced: if the disk
// fails its writeback and the kernel drops the pages, or anything else
// writes to it, reading it back gives other bytes, which would be stored
// under the digest of what was read. So sum is the CRC-32C and length of
// the encoded bytes as they were written, and every upload reads the file
// through upload (stagedReader), which fails at its end, aborting the
// store's Put or Create, when they differ: the backup then fails naming
// the file and the staging directory, and no object holds other bytes.
type staged struct {
	r      *deltaFileResult
	tmp    *os.File // the encoded object, unlinked
	sum    stageSum // of what was written to tmp
	stored archive.Stored
}

// upload rewinds the staging file and returns a reader of it that checks
// it against sum.
func (st *staged) upload(dir string) (io.Reader, error) {
	if _, err := st.tmp.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("basebackup: staged delta object of %s: %w", st.r.e.path(), err)
	}
	return &stagedReader{f: st.tmp, want: st.sum, what: "the staged copy of " + st.r.e.path(), dir: dir,
		lost: "nothing was stored under its digest"}, nil
}

// stage reads e up to its scanned size (padded with zeros if it shrank),
// hashing what it reads on one goroutine while another compresses and
// encrypts it into a temporary file (Options.TempDir, unlinked at once so
// that nothing stays behind, even after a crash). first says that this is
// the file's only read: its pages are checked (when e.check) and its
// bytes counted as read. A file removed since the scan is gone.
func (w *worker) stage(ctx context.Context, e *entry, first bool) (*staged, error) {
	l := w.l
	a := l.o.Archive
	st := &staged{r: &deltaFileResult{e: e, size: e.size}}
	if l.o.beforeStore != nil {
		l.o.beforeStore(e.path())
	}
	tmp, err := os.CreateTemp(l.o.TempDir, ".hoard-delta-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("basebackup: stage a delta object: %w", err)
	}
	if err := os.Remove(tmp.Name()); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("basebackup: stage a delta object: %w", err)
	}
	md := storage.Metadata{archive.MetaFormat: archive.FormatDeltaV2}
	enc, err := a.Codec.NewEncoder(ctx, io.MultiWriter(tmp, &st.sum), e.path(), md, archive.UploadOptions{Size: e.size, Concurrency: l.compressionThreads})
	if err != nil {
		tmp.Close()
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	sum := archive.NewDeltaHash()
	crc, gone, err := w.readFile(ctx, e, first, l.o.storeRead, func(p []byte) error {
		sum.Write(p)
		return nil
	}, func(p []byte) error {
		if _, err := enc.Write(p); err != nil {
			return fmt.Errorf("basebackup: stage delta object of %s: %w", e.path(), err)
		}
		return nil
	})
	if err != nil || gone {
		_ = enc.Abort(errors.New("not staged"))
		tmp.Close()
		if err != nil {
			return nil, err
		}
		st.r.gone = true // removed since the scan: WAL replay recreates what is needed
		return st, nil
	}
	if st.stored, err = enc.Close(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("basebackup: stage delta object of %s: %w", e.path(), err)
	}
	st.tmp = tmp
	st.r.digest = hex.EncodeToString(sum.Sum(nil))
	st.r.crc = crc
	return st, nil
}

// put stores a staged file as the delta object of its digest, unless an
// object of that name exists (stored before, or meanwhile by another
// backup or by this one for a file whose bytes became these) and may be
// reused (existing): that one is reused, never replaced. One that may not
// (it does not hold the digest's bytes) is stored over (replace).
func (w *worker) put(ctx context.Context, st *staged) error {
	a := w.l.o.Archive
	r := st.r
	if w.l.o.beforePut != nil {
		w.l.o.beforePut(r.e.path(), st.tmp)
	}
	key := a.Layout.DeltaKey(r.digest)
	o, err := a.Store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		var src io.Reader
		if src, err = st.upload(w.l.o.TempDir); err != nil {
			return err
		}
		// Its exact size lets an object store size its upload buffers.
		err = a.Store.Create(storage.WithMaxSize(ctx, st.stored.StoredSize), key, src, st.stored.Metadata)
		if err == nil {
			r.stored = st.stored.StoredSize
			return nil
		}
		if !errors.Is(err, storage.ErrExist) {
			return fmt.Errorf("basebackup: store delta object %s: %w", key, err)
		}
		o, err = a.Store.Stat(ctx, key)
	}
	if err != nil {
		return fmt.Errorf("basebackup: delta object %s: %w", key, err)
	}
	stored, ok, why, err := w.existing(ctx, r.digest, o, r.size)
	if err != nil {
		return err
	}
	if !ok {
		return w.replace(ctx, st, why)
	}
	r.reused, r.stored = true, stored
	return nil
}

// hashFile reads e (readFile, its pages checked, its bytes counted) into
// sum and returns its CRC-32C; gone reports a file removed since the scan.
func (w *worker) hashFile(ctx context.Context, e *entry, sum hash.Hash) (crc uint32, gone bool, err error) {
	return w.readFile(ctx, e, true, nil, func(p []byte) error {
		sum.Write(p)
		return nil
	})
}

// deltaPieces is how many read buffers (readBufferSize each) a worker
// reading a large file holds: the one being read and those its sinks
// have not finished with.
const deltaPieces = 4

// piece is one read buffer on its way through readFile's sinks.
type piece struct {
	buf  []byte
	p    []byte
	left atomic.Int32 // sinks still using it
}

// readFile reads e up to its scanned size, padding with zeros a file that
// shrank (as local-tar does), and hands each piece read, in order, to
// every sink, each running on its own goroutine while the next pieces are
// read: one file keeps as many cores busy. When first, the pages are
// checked (e.check) before the sinks see them and the bytes count as
// read. hook, when not nil, runs before each read (tests change the file
// there). It returns the CRC-32C of what it read; gone reports a file
// removed since the scan. The first sink error stops the read and is
// returned.
func (w *worker) readFile(ctx context.Context, e *entry, first bool, hook func(path string, off int64), sinks ...func([]byte) error) (crc uint32, gone bool, err error) {
	l := w.l
	f, err := openListed(e)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("basebackup: %w", err)
	}
	defer f.Close()
	if len(w.pieces) == 0 {
		w.pieces = make([]*piece, deltaPieces)
		w.pieces[0] = &piece{buf: w.buf}
		for i := 1; i < deltaPieces; i++ {
			w.pieces[i] = &piece{buf: make([]byte, readBufferSize)}
		}
	}
	free := make(chan *piece, len(w.pieces))
	for _, pc := range w.pieces {
		free <- pc
	}
	var failed atomic.Bool
	errs := make([]error, len(sinks))
	chans := make([]chan *piece, len(sinks))
	var wg sync.WaitGroup
	for i, sink := range sinks {
		ch := make(chan *piece, len(w.pieces))
		chans[i] = ch
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pc := range ch {
				if errs[i] == nil {
					if errs[i] = sink(pc.p); errs[i] != nil {
						failed.Store(true)
					}
				}
				if pc.left.Add(-1) == 0 {
					free <- pc
				}
			}
		}()
	}
	send := func(pc *piece) {
		pc.left.Store(int32(len(sinks)))
		for _, ch := range chans {
			ch <- pc
		}
	}
	err = func() error {
		var fc *fileCheck
		if first && e.check && l.check != nil {
			fc = &fileCheck{pageCheck: l.check, name: e.name(), path: e.path(), first: e.segno * l.check.segBlocks}
		}
		var off int64
		short := false
		for off < e.size {
			if failed.Load() {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			pc := <-free
			n := int(min(int64(len(pc.buf)), e.size-off))
			if !short {
				if hook != nil {
					hook(e.path(), off)
				}
				m, err := io.ReadFull(f, pc.buf[:n])
				if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
					free <- pc
					return fmt.Errorf("basebackup: read %s: %w", e.path(), err)
				}
				pc.p = pc.buf[:m]
				if fc != nil {
					if err := fc.pages(f, pc.p, off); err != nil {
						free <- pc
						return err
					}
				}
				if first {
					l.read.Add(int64(m))
				}
				if m < n {
					// Truncated since the scan: the rest is zeros.
					short = true
					if m == 0 {
						clear(pc.buf[:n])
						pc.p = pc.buf[:n]
					}
				}
			} else {
				clear(pc.buf[:n])
				pc.p = pc.buf[:n]
			}
			crc = crc32.Update(crc, castagnoli, pc.p)
			off += int64(len(pc.p))
			send(pc)
		}
		if fc != nil {
			fc.done()
		}
		return nil
	}()
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	if err != nil {
		return 0, false, err
	}
	for _, serr := range errs {
		if serr != nil {
			return 0, false, serr
		}
	}
	return crc, false, nil
}

// settleReused makes sure that every delta object the backup reuses, or
// stored over one that existed (which a retention run may have planned to
// delete as unreferenced), exists once no retention run can delete it any
// more: it waits while a retention run that may not have seen this
// backup's marker can still be deleting
// (archive.Archive.WaitDeltaRetention), then checks each such object
// again and stores again, from the file, any that went. A file
// whose bytes changed since it was hashed fails the backup: the digest
// its manifest entry, page checks and backup_manifest CRC were made
// from is no longer what the file holds. From then on retention sees
// this backup's marker, until its control object is listed.
func (l *localBackup) settleReused(ctx context.Context, marked time.Time, files []*deltaFileResult) error {
	a := l.o.Archive
	err := a.WaitDeltaRetention(ctx, marked, time.Second, func(key string) {
		l.log.Info().Str("key", key).Msg("a retention run may be deleting delta objects: waiting for it before checking the reused ones")
		if l.o.retentionWait != nil {
			l.o.retentionWait(key)
		}
	})
	if err != nil {
		return fmt.Errorf("basebackup: %w", err)
	}
	done := map[string]bool{}
	var w *worker
	for _, f := range files {
		if f.gone || !(f.reused || f.replaced) || done[f.digest] {
			continue
		}
		done[f.digest] = true
		key := a.Layout.DeltaKey(f.digest)
		_, err := a.Store.Stat(ctx, key)
		if err == nil {
			continue
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("basebackup: delta object %s: %w", key, err)
		}
		if w == nil {
			w = &worker{l: l, buf: make([]byte, readBufferSize)}
		}
		n, err := w.storeNew(ctx, f.e)
		if err != nil {
			return err
		}
		if n.gone || n.digest != f.digest {
			return fmt.Errorf("basebackup: delta object %s, which this backup reuses for %s, was deleted while it ran, and the file has changed since: take the backup again", key, f.e.name())
		}
		l.log.Info().Str("key", key).Str("file", f.e.name()).Msg("delta object deleted while the backup ran: stored again")
		for _, g := range files {
			if !g.gone && g.digest == f.digest {
				g.reused, g.replaced, g.stored = n.reused, n.replaced, n.stored
			}
		}
	}
	return nil
}

// checkDeltaMarker stops storing the delta backup's marker again and
// returns an error unless retention saw the marker all along, as the
// backup last stored it: archive.Archive.KeepDeltaRunning did not find
// it lost (a write that failed removing it, or failing until it would no
// longer count), and it is still in the store as written then and
// counted by retention now (archive.Archive.CheckDeltaRunning); a write
// that failed leaving it so does not matter. Otherwise a
// retention run may have missed the backup and deleted delta objects it
// reuses after settleReused checked them, and the backup must fail
// before it is listed.
func (l *localBackup) checkDeltaMarker(ctx context.Context) error {
	l.stopDeltaMarker()
	err := l.deltaMarkerErr
	if err == nil {
		err = l.o.Archive.CheckDeltaRunning(ctx, l.name, l.deltaMarkedAt, time.Now())
	}
	if err != nil {
		return fmt.Errorf("basebackup: %w: retention may have deleted delta objects this backup reuses, so it is not stored as a backup; take it again", err)
	}
	return nil
}

// readEmbedded reads a small file up to its scanned size, padded with
// zeros if it shrank.
func readEmbedded(e *entry) ([]byte, error) {
	f, err := openListed(e)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(io.MultiReader(f, zeros{}), e.size))
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// deltaManifestJSON encodes the manifest for the control object.
func deltaManifestJSON(dm *archive.DeltaManifest) (json.RawMessage, error) {
	js, err := json.Marshal(dm)
	if err != nil {
		return nil, fmt.Errorf("basebackup: encode delta manifest: %w", err)
	}
	return js, nil
}
