package restore

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// ErrBrokenChain is returned (wrapped) when an incremental backup cannot be
// restored because a backup of its chain is missing, damaged or not the
// one it was taken against.
var ErrBrokenChain = errors.New("broken incremental backup chain")

// PostgreSQL's incremental file format (src/include/backup/
// basebackup_incremental.h): a header of the magic number, the number of
// blocks and the truncation block length (uint32 each, in the server's
// byte order), then the relative block numbers (uint32 each), padded with
// zeros to a multiple of the block size when there are blocks, then the
// blocks in that order.
const (
	incrementalMagic  = 0xd3ae1f0d
	incrementalPrefix = "INCREMENTAL."
	blockSize         = 8192
	// maxSegmentBlocks bounds a segment's block numbers: 1 GiB segments
	// of 8 kB blocks (RELSEG_SIZE), and any larger build-time setting up
	// to 32 GiB.
	maxSegmentBlocks = 32 << 30 / blockSize
)

// chainLevel is one backup of an incremental chain with what restore read
// of it beforehand.
type chainLevel struct {
	info *archive.BackupInfo
	src  *archive.Archive
	ctrl *archive.Control
	// files are the paths PostgreSQL's backup_manifest lists, relative
	// to the data directory, with INCREMENTAL. dropped from the names:
	// the files the backup has, whole or as changed blocks. Only for
	// the incremental levels.
	files map[string]bool
	// pass read backup_manifest with ctrl, until readChain takes its
	// result as pgm.
	pass *pgmPass
	// pgm is the backup's backup_manifest, which the files written
	// from its chunks (and, for the last, its control tar) are compared
	// with; for a parent, fitted to what restoreChain writes of it
	// (fitParent).
	pgm *pgManifest
}

// readChain follows the parents of b, as its control object's manifest
// records them (the metadata's parent must agree), among the sound
// backups: full backup first, b last, each control object read and
// checked. A parent missing, damaged, of another system or starting
// elsewhere than its child was taken against is refused with the object
// named. Each backup's backup_manifest is read in the same pass as its
// control object (pgmPass; b's by the caller's pass): every
// backup of a chain holds one (basebackup sends a parent's with
// UPLOAD_MANIFEST and takes none without one as a parent), so a parent
// without one, or whose manifest cannot be read, breaks the chain, and b
// without one is damaged (ErrPGManifest), as a full backup is. An error
// of the store, the network or the restore itself breaks nothing (see
// damaged).
func readChain(ctx context.Context, a *archive.Archive, sound []*archive.BackupInfo, damagedMD []*archive.DamagedBackup, b *archive.BackupInfo, ctrl *archive.Control, pass *pgmPass) ([]*chainLevel, error) {
	byName := map[string]*archive.BackupInfo{}
	for _, x := range sound {
		byName[x.Name] = x
	}
	broken := map[string]*archive.DamagedBackup{}
	for _, d := range damagedMD {
		broken[d.Name] = d
	}
	levels := []*chainLevel{{info: b, src: a.ArchiveOf(b), ctrl: ctrl, pass: pass}}
	seen := map[string]bool{b.Name: true}
	for cur := levels[0]; ; {
		var inc *archive.IncrementalParent
		if h := cur.ctrl.Manifest.Hoard; h != nil {
			inc = h.Incremental
		}
		if inc == nil {
			if cur.info.Parent != "" {
				return nil, fmt.Errorf("backup %s: its metadata names parent %s but its control object %s%s records none: %w",
					cur.info.Name, cur.info.Parent, cur.info.Key, a.InSite(cur.src), ErrBrokenChain)
			}
			break
		}
		if cur.info.Parent != inc.Parent {
			return nil, fmt.Errorf("backup %s: its metadata names parent %s, its control object %s%s %s: %w",
				cur.info.Name, archive.Quoted(cur.info.Parent), cur.info.Key, a.InSite(cur.src), archive.Quoted(inc.Parent), ErrBrokenChain)
		}
		key := cur.src.Layout.BackupKey(inc.Parent)
		if d, ok := broken[archive.BackupName(inc.Parent)]; ok {
			return nil, fmt.Errorf("backup %s is an incremental of backup %s, whose object %s%s is damaged: %w: %w",
				cur.info.Name, inc.Parent, d.Key, a.InSite(d.Archive), ErrBrokenChain, d.Err)
		}
		p, ok := byName[inc.Parent]
		if !ok {
			return nil, fmt.Errorf("backup %s is an incremental of backup %s, whose object %s is not stored: %w",
				cur.info.Name, inc.Parent, key, ErrBrokenChain)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("backup %s: its chain of parents loops at %s: %w", b.Name, p.Name, ErrBrokenChain)
		}
		seen[p.Name] = true
		if p.Format != archive.FormatBBv2 {
			return nil, fmt.Errorf("backup %s is an incremental of backup %s, which is of format %q, not %s: %w",
				cur.info.Name, p.Name, p.Format, archive.FormatBBv2, ErrBrokenChain)
		}
		psrc := a.ArchiveOf(p)
		ppass := &pgmPass{want: func(*archive.Manifest) bool { return true }}
		pctrl, err := psrc.ReadControl(ctx, p.Key, func(m *archive.Manifest, h *tar.Header, data io.Reader) error {
			if err := checkControlMember(m, h); err != nil {
				return err
			}
			return ppass.member(m, h, data)
		})
		switch {
		case err != nil && (damaged(ctx, err) || errors.Is(err, storage.ErrNotFound)):
			return nil, fmt.Errorf("backup %s is an incremental of backup %s, whose control object%s cannot be read: %w: %w", cur.info.Name, p.Name, a.InSite(psrc), ErrBrokenChain, err)
		case err != nil:
			// The store, the network, a key or the restore itself, not
			// the parent: the chain is not broken, and the automatic
			// choice must not pass it over for an older backup (see
			// damaged).
			return nil, fmt.Errorf("backup %s is an incremental of backup %s, whose control object%s cannot be read: %w", cur.info.Name, p.Name, a.InSite(psrc), err)
		}
		// The system is compared with the one the child's control object
		// records, not with the listing's metadata, which anyone who can
		// write to the bucket can set to match another system's parent.
		ph := pctrl.Manifest.Hoard
		if ph == nil || ph.StartLSN != inc.StartLSN || ph.StartTimeline != inc.Timeline || ph.SystemID != cur.ctrl.Manifest.Hoard.SystemID {
			return nil, fmt.Errorf("backup %s was taken against backup %s starting at %s on timeline %d, but the control object %s%s of the stored one records another start or system: %w",
				cur.info.Name, p.Name, inc.StartLSN, inc.Timeline, p.Key, a.InSite(psrc), ErrBrokenChain)
		}
		lv := &chainLevel{info: p, src: psrc, ctrl: pctrl, pass: ppass}
		levels = append(levels, lv)
		cur = lv
	}
	// Oldest first.
	for i, j := 0, len(levels)-1; i < j; i, j = i+1, j-1 {
		levels[i], levels[j] = levels[j], levels[i]
	}
	// A backup_manifest missing or unreadable is damage (ErrPGManifest):
	// b's own is passed over by the automatic choice as a full
	// backup's is, a parent's breaks the chain. pgmPass, first, tells it
	// from the store's errors.
	last := len(levels) - 1
	// Each names the site holding the level (Archive.InSite), whose
	// key another storage's copy can share.
	levelErr := func(i int, err error) error {
		name, in := levels[i].info.Name, a.InSite(levels[i].src)
		switch {
		case i < last && damaged(ctx, err):
			return fmt.Errorf("backup %s%s is in the chain of backup %s: %w: %w", name, in, b.Name, ErrBrokenChain, err)
		case i < last:
			// The store or the network, not the parent: a retry may
			// mend it (see damaged).
			return fmt.Errorf("backup %s%s is in the chain of backup %s: %w", name, in, b.Name, err)
		}
		return fmt.Errorf("backup %s%s: %w", name, in, err)
	}
	for i, lv := range levels {
		pm, err := lv.pass.levelResult(lv.info, lv.ctrl, true)
		if err != nil {
			return nil, levelErr(i, err)
		}
		lv.pass = nil
		if i > 0 {
			// Before fitParent drops what this level's restore does
			// not write.
			lv.files = pm.paths()
		}
		if i < last {
			fitParent(pm, lv.ctrl.Manifest, levels[last])
		}
		lv.pgm = pm
	}
	return levels, nil
}

// errChainNoPGManifest is the error of backup b of an incremental chain
// whose control object holds no backup_manifest, whatever b's metadata
// says: every backup of a chain holds one (basebackup sends a parent's
// with UPLOAD_MANIFEST and takes none without one as a parent).
func errChainNoPGManifest(b *archive.BackupInfo) error {
	return fmt.Errorf("control object %s holds no %s, which every backup of an incremental chain holds: %w", b.Key, archive.ControlPGManifest, ErrPGManifest)
}

// fitParent fits pm, the backup_manifest of a parent level whose manifest
// is m, to what restoreChain writes of that level, last being the
// restored backup: its tablespaces are known by the names last gives the
// same OIDs (planChunkMember writes them there), the files of one last no
// longer has are not written and not required, and neither are the files
// of its control tar (pg_control, backup_label, tablespace_map), which
// only the restored backup's control tar writes. A file last no longer
// has (dropMissing removes it) is compared when the parent holds it, but
// not required: its absence changes nothing restored.
func fitParent(pm *pgManifest, m *archive.Manifest, last *chainLevel) {
	byOID := map[uint32]string{}
	for name, ts := range last.ctrl.Manifest.Tablespaces {
		byOID[ts.OID] = name
	}
	pm.spcs = map[string]string{}
	for _, ts := range m.Tablespaces {
		prefix := "pg_tblspc/" + strconv.FormatUint(uint64(ts.OID), 10) + "/"
		if name, ok := byOID[ts.OID]; ok {
			pm.spcs[name] = prefix
			continue
		}
		for k := range pm.files {
			if strings.HasPrefix(k, prefix) {
				delete(pm.files, k)
			}
		}
	}
	for name := range controlOnly {
		delete(pm.files, strings.TrimPrefix(name, "pgdata/"))
	}
	pm.need = func(k string) bool {
		dir, base := path.Split(k)
		return last.files[dir+strings.TrimPrefix(base, incrementalPrefix)]
	}
}

// maxPGManifest is the size of backup_manifest past which an incremental
// backup's is refused (archive.MaxPGManifest): a variable, for tests.
var maxPGManifest int64 = archive.MaxPGManifest

// maxManifestFiles bounds the entries of a backup_manifest's "Files":
// each takes at least 70 bytes (Path, Size and Last-Modified, as
// PostgreSQL writes them), so the 1 GiB a control object's
// backup_manifest may hold lists fewer than 16 Mi.
var maxManifestFiles = 1 << 24

// paths returns the paths pm lists, with INCREMENTAL. dropped from
// incremental files' names (chainLevel.files): the files the backup has,
// whole or as changed blocks. A path without it shares pm's string.
func (pm *pgManifest) paths() map[string]bool {
	out := make(map[string]bool, len(pm.files))
	for k := range pm.files {
		dir, base := path.Split(k)
		if rest, ok := strings.CutPrefix(base, incrementalPrefix); ok {
			k = dir + rest
		}
		out[k] = true
	}
	return out
}

// incrementalLevel is how an extractor writes the chunks of an
// incremental backup over the files its parents left: a whole file
// replaces the parent's, an INCREMENTAL.<name> file is applied to <name>.
type incrementalLevel struct {
	mu      sync.Mutex
	written map[memberPlan]bool // files this level wrote, to refuse a second copy
}

// writeFile writes member p of an incremental backup's chunk.
func (l *incrementalLevel) writeFile(e *extractor, p memberPlan, member string, r io.Reader, size int64, mode fs.FileMode, buf []byte, made *madeFiles, dh *dirHandle) error {
	stored := p.rel // as backup_manifest lists it
	dir, base := path.Split(p.rel)
	incr := strings.HasPrefix(base, incrementalPrefix)
	if incr {
		p.rel = dir + strings.TrimPrefix(base, incrementalPrefix)
	}
	l.mu.Lock()
	twice := l.written[p]
	l.written[p] = true
	l.mu.Unlock()
	if twice {
		return fmt.Errorf("member %s: %s is already restored from this backup: %w", archive.Quoted(member), archive.Quoted(p.rel), ErrUnsafeMember)
	}
	root := e.roots[p.spc]
	if !incr {
		// A whole file: the parent's version, if any, goes.
		if err := root.Remove(p.rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("member %s: replace %s: %w", archive.Quoted(member), archive.Quoted(p.rel), e.pathErr(p.spc, err))
		}
		return e.writeFile(p, member, r, mode, buf, made, dh)
	}
	// Applying the same incremental file again gives the same result, so
	// a retried chunk needs nothing removed; but the retry must be let
	// apply it again.
	if made != nil {
		made.addApplied(p)
	}
	f, err := root.OpenFile(p.rel, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("member %s: %s is in no parent backup: %w", archive.Quoted(member), archive.Quoted(p.rel), ErrBrokenChain)
	}
	if err != nil {
		return fmt.Errorf("member %s: %w", archive.Quoted(member), e.pathErr(p.spc, err))
	}
	// The incremental file is compared with its entry as it is read, by
	// its stored name (backup_manifest lists INCREMENTAL.<name> with the
	// incremental file's size and CRC-32C): the file it rebuilds is in
	// no manifest.
	var sum *crcWriter
	if e.pgm != nil {
		sum = &crcWriter{w: io.Discard}
		r = io.TeeReader(r, sum)
	}
	err = applyIncremental(f, r, size, buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if sum != nil {
		// The rest of a member applyIncremental refused is read too:
		// one that differs from its entry (altered in the bucket, its
		// header too) is reported as such, not as a broken chain.
		_, derr := io.CopyBuffer(io.Discard, r, buf)
		if derr == nil {
			if cerr := e.pgm.check(p.spc, stored, member, sum.n, sum.crc); cerr != nil {
				if err != nil {
					return fmt.Errorf("%w (applying it: %v)", cerr, err)
				}
				return cerr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("member %s: %w", archive.Quoted(member), e.pathErr(p.spc, err))
	}
	return nil
}

// forget lets a retry write the files of a failed attempt again.
func (l *incrementalLevel) forget(made []memberPlan) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range made {
		delete(l.written, p)
	}
}

// applyIncremental applies an incremental file of size bytes, read from r,
// to f, the file as the parent backups left it, as pg_combinebackup
// reconstructs it: the result is as long as the truncation block length,
// or up to the highest block the incremental file holds if that is
// further; its blocks are the incremental file's where it has them, else
// the parent's below the truncation length (zeros where the parent's file
// is shorter).
func applyIncremental(f *os.File, r io.Reader, size int64, buf []byte) error {
	var hdr [12]byte
	if size < int64(len(hdr)) {
		return fmt.Errorf("incremental file of %d bytes has no header: %w", size, ErrBrokenChain)
	}
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("read incremental header: %w", err)
	}
	magic := binary.LittleEndian.Uint32(hdr[0:])
	n := binary.LittleEndian.Uint32(hdr[4:])
	trunc := binary.LittleEndian.Uint32(hdr[8:])
	if magic != incrementalMagic {
		return fmt.Errorf("bad incremental magic number 0x%x (want 0x%x): %w", magic, uint32(incrementalMagic), ErrBrokenChain)
	}
	if n > maxSegmentBlocks || trunc > maxSegmentBlocks {
		return fmt.Errorf("incremental file of %d blocks, truncation length %d: over %d blocks a segment: %w", n, trunc, maxSegmentBlocks, ErrBrokenChain)
	}
	hlen := int64(len(hdr)) + 4*int64(n)
	if n > 0 && hlen%blockSize != 0 {
		hlen += blockSize - hlen%blockSize
	}
	if want := hlen + int64(n)*blockSize; size != want {
		return fmt.Errorf("incremental file of %d blocks is %d bytes, not %d: %w", n, size, want, ErrBrokenChain)
	}
	blocks := make([]uint32, n)
	if n > 0 {
		br := bufio.NewReaderSize(r, 64<<10)
		if err := binary.Read(br, binary.LittleEndian, blocks); err != nil {
			return fmt.Errorf("read block numbers: %w", err)
		}
		if _, err := io.CopyN(io.Discard, br, hlen-int64(len(hdr))-4*int64(n)); err != nil {
			return fmt.Errorf("read incremental header: %w", err)
		}
		r = br
	}
	length := int64(trunc)
	for _, b := range blocks {
		if b >= maxSegmentBlocks {
			return fmt.Errorf("block number %d over %d blocks a segment: %w", b, maxSegmentBlocks, ErrBrokenChain)
		}
		length = max(length, int64(b)+1)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	// The parent's blocks at and past the truncation length are gone;
	// blocks past the parent's end that the file does not hold are zeros.
	if st.Size() > int64(trunc)*blockSize {
		if err := f.Truncate(int64(trunc) * blockSize); err != nil {
			return err
		}
	}
	if err := f.Truncate(length * blockSize); err != nil {
		return err
	}
	block := buf[:blockSize]
	for _, b := range blocks {
		if _, err := io.ReadFull(r, block); err != nil {
			return fmt.Errorf("read block %d: %w", b, err)
		}
		if _, err := f.WriteAt(block, int64(b)*blockSize); err != nil {
			return err
		}
	}
	return nil
}

// dropMissing removes the files the parents left that backup lv does not
// have (its backup_manifest does not list them): dropped or truncated
// away since the parent. tablespaceOIDs maps tablespace names to OIDs,
// by which backup_manifest paths name them (pg_tblspc/<oid>/...).
func dropMissing(log zerolog.Logger, ex *extractor, lv *chainLevel, tablespaceOIDs map[string]uint32) error {
	for spc, root := range ex.roots {
		prefix := ""
		if spc != "" {
			prefix = "pg_tblspc/" + strconv.FormatUint(uint64(tablespaceOIDs[spc]), 10) + "/"
		}
		var gone []string
		err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !lv.files[prefix+p] {
				gone = append(gone, p)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("backup %s: list restored files: %w", lv.info.Name, err)
		}
		for _, p := range gone {
			if err := root.Remove(p); err != nil {
				return fmt.Errorf("backup %s: remove %s, which it does not have: %w", lv.info.Name, p, err)
			}
		}
		if len(gone) > 0 {
			log.Debug().Str("backup", lv.info.Name).Int("files", len(gone)).Str("tablespace", spc).Msg("files the incremental backup does not have removed")
		}
	}
	return nil
}

// stripIncrementalLabel drops the INCREMENTAL FROM LSN and INCREMENTAL
// FROM TLI lines of an incremental backup's backup_label, as
// pg_combinebackup does: PostgreSQL refuses to start from a label that
// still has them.
func stripIncrementalLabel(label []byte) []byte {
	var out []byte
	for line := range strings.SplitAfterSeq(string(label), "\n") {
		if strings.HasPrefix(line, "INCREMENTAL FROM ") {
			continue
		}
		out = append(out, line...)
	}
	return out
}

// restoreChain writes the chunks of every backup of chain in turn, the
// full backup first: each incremental one's files over those its parents
// left, then the files it does not have removed. Each level's files are
// compared with its own backup_manifest as they are written, and a
// parent must have held every file its manifest lists (fitParent) before
// the next level begins. The control object of the last is written
// afterwards, as for any backup, and compared with the last's manifest.
func (o *Options) restoreChain(ctx context.Context, log zerolog.Logger, ex *extractor, chain []*chainLevel, res *Result) error {
	last := chain[len(chain)-1].ctrl.Manifest
	oids := map[string]uint32{}
	for name, ts := range last.Tablespaces {
		oids[name] = ts.OID
	}
	res.Chunks = 0
	byOID := map[uint32]string{}
	for name, ts := range last.Tablespaces {
		byOID[ts.OID] = name
	}
	defer func() { ex.spcRename = nil }()
	for i, lv := range chain {
		llog := log.With().Str("chain_backup", lv.info.Name).Logger()
		if i > 0 {
			ex.incr = &incrementalLevel{written: map[memberPlan]bool{}}
		}
		// An older backup's tablespaces go where the restored backup's
		// of the same OID go; one it no longer has is not written.
		ex.spcRename = nil
		if i < len(chain)-1 {
			ex.spcRename = map[string]string{}
			for name, ts := range lv.ctrl.Manifest.Tablespaces {
				ex.spcRename[name] = byOID[ts.OID]
			}
		}
		// Each level's files are compared with its own backup_manifest;
		// the last's stays for extractControl, which compares its
		// control tar and requires every file listed.
		ex.pgm = lv.pgm
		err := o.downloadChunks(ctx, llog, lv.src, ex, lv.ctrl.Manifest, res)
		ex.incr = nil
		if err != nil {
			return fmt.Errorf("backup %s of the chain: %w", lv.info.Name, err)
		}
		if i < len(chain)-1 {
			// Before the next level's files replace or remove any.
			if err := lv.pgm.missing(); err != nil {
				return fmt.Errorf("backup %s of the chain: control object %s: %w", lv.info.Name, lv.info.Key, err)
			}
		}
		res.PGManifestFiles += len(lv.pgm.files)
		res.Chunks += len(lv.ctrl.Manifest.Chunks)
		if i > 0 {
			if err := dropMissing(llog, ex, lv, oids); err != nil {
				return err
			}
		}
		llog.Info().Int("chunks", len(lv.ctrl.Manifest.Chunks)).Msg("backup of the chain restored")
	}
	ex.chain = true
	return nil
}
