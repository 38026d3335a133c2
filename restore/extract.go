package restore

import (
	"archive/tar"
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
)

// copyBufferSize is each worker's file write buffer: large writes keep the
// restore near the disk's sequential speed.
const copyBufferSize = 1 << 20

// extractor writes tar members into a data directory and its tablespace
// directories, as planMember decides. Every path is resolved through an
// os.Root of the directory it belongs to, so nothing is created or opened
// outside those directories even if a link were there; and restore creates
// no link from the backup, only directories and regular files. A regular
// file is created with O_EXCL: it never replaces anything, so a member
// written twice, by one chunk or by two chunks extracting in parallel, is
// refused. Several goroutines may use one extractor, each with its own
// buffer.
type extractor struct {
	spcs  map[string]bool
	roots map[string]*os.Root // "" → the data directory; a tablespace name → its directory
	// bundles: the chunks are a delta backup's bundles, under
	// basebackup_delta_chunk/ with members named relative to the data
	// directory (see planBundle).
	bundles bool
	// deltaSpcs are the tablespaces of the delta backup whose bundles
	// are extracted.
	deltaSpcs deltaTablespaces
	// incr is set while the chunks of an incremental backup are written
	// over its parents' files (see incrementalLevel).
	incr *incrementalLevel
	// spcRename is set while the chunks of a backup of an incremental
	// chain older than the one restored are written: it maps each of
	// that backup's tablespace names to the name the restored backup
	// gives the tablespace of the same OID, "" when it no longer has it
	// (see planChunkMember).
	spcRename map[string]string
	// chain is set when the backup restored is an incremental one: its
	// control object's backup_label loses its INCREMENTAL FROM lines and
	// its backup_manifest, which lists INCREMENTAL files, is left out.
	chain bool
	// syncs are the directories whose file systems writePGControl
	// syncs first: the data directory's and every tablespace's.
	syncs []*os.File
	// log says why writePGControl kept a pg_control as the backup
	// holds it.
	log zerolog.Logger
	// planted are the tablespaces whose directory is their path in the
	// backup's manifest, not one the operator chose: their errors quote
	// it (see targetDir).
	planted map[string]bool
	// wal, when set, is the WAL directory (Options.WALDir), the target
	// of the data directory's pg_wal link: pg_wal and the directories in
	// it are made there (mkdir).
	wal *os.Root
	// pgm, when set, is the backup's backup_manifest, which every file
	// writeFile writes is compared with (size and CRC-32C, computed as
	// the file is written).
	pgm *pgManifest
	// dirs holds the directories already created (dirKey), so that a
	// file's parent is created once, not again for each of the tens of
	// thousands of files a database directory may hold. Restore
	// removes no directory while it runs: one made stays. (A member
	// that replaced one by a file would make the next file in it fail
	// to be created, as MkdirAll would have failed.)
	dirs sync.Map
	// mkdirs counts the directories created (os.Root.MkdirAll calls),
	// and dirOpens the directories a dirHandle opened, for tests.
	mkdirs   atomic.Int64
	dirOpens atomic.Int64
}

// dirHandle keeps open the directory of the last file one writer (a
// chunk's extraction, one goroutine) created, an os.Root beneath its
// tablespace's root, so that the next file of the same directory is
// created with one openat(2) in it instead of a walk from the root (an
// open and a close of each directory above the file: base/ and the
// database's directory). A database directory's files come one after
// the other in a chunk. The zero value is ready; close releases it.
type dirHandle struct {
	key  dirKey
	root *os.Root
}

// open returns the directory dir of tablespace spc, opened beneath its
// root (os.Root.OpenRoot follows no link out of it), reusing the one
// opened last when it is the same.
func (d *dirHandle) open(e *extractor, spc, dir string) (*os.Root, error) {
	k := dirKey{spc, dir}
	if d.root != nil && d.key == k {
		return d.root, nil
	}
	d.close()
	r, err := e.roots[spc].OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	e.dirOpens.Add(1)
	d.key, d.root = k, r
	return r, nil
}

// close closes the directory kept open, if any. Safe on a nil dirHandle.
func (d *dirHandle) close() {
	if d != nil && d.root != nil {
		d.root.Close()
		d.root = nil
	}
}

// pathErr is quotedPath for an error of a file of tablespace spc ("": the
// data directory).
func (e *extractor) pathErr(spc string, err error) error {
	return targetDir{path: e.roots[spc].Name(), planted: e.planted[spc]}.pathErr(err)
}

// newExtractor opens the data directory pgdata and the tablespace
// directories (name → directory), which must exist.
func newExtractor(pgdata string, tablespaces map[string]string) (*extractor, error) {
	e := &extractor{spcs: map[string]bool{}, roots: map[string]*os.Root{}, log: zerolog.Nop()}
	dirs := map[string]string{"": pgdata}
	for name, d := range tablespaces {
		e.spcs[name] = true
		dirs[name] = d
	}
	for name, d := range dirs {
		r, err := os.OpenRoot(d)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("open %s: %w", d, err)
		}
		e.roots[name] = r
	}
	return e, nil
}

func (e *extractor) close() {
	for _, r := range e.roots {
		r.Close()
	}
	if e.wal != nil {
		e.wal.Close()
	}
}

// extract reads the chunk tar stream r to its end and writes its members.
// left returns how many bytes of the chunk's input_size are unread: a
// member that declares more is refused before anything of it is written,
// and so is one that names, when not nil (the manifest's "files" list),
// does not hold: the chunk is another one moved under this one's name.
// The files created are appended to made, so that a retry can remove them.
func (e *extractor) extract(r io.Reader, left func() int64, names *archive.NameSet, buf []byte, made *madeFiles) error {
	tr := tar.NewReader(r)
	var dir dirHandle
	defer dir.close()
	for h, err := range Members(tr) {
		if err != nil {
			return err
		}
		var p memberPlan
		if e.bundles {
			p, err = planBundle(h, e.deltaSpcs)
		} else {
			p, err = e.planChunkMember(h)
		}
		if err != nil {
			return err
		}
		if err := names.Check(h.Name); err != nil {
			return err
		}
		if h.Size > left() {
			return fmt.Errorf("member %s declares %d bytes, more than the %d left of the chunk's input_size: %w",
				archive.Quoted(h.Name), h.Size, left(), ErrUnsafeMember)
		}
		if err := e.write(p, tr, h, buf, made, &dir); err != nil {
			return err
		}
	}
	return nil
}

// planChunkMember plans member h of a chunk as planMember does. While
// spcRename is set (a backup of an incremental chain older than the one
// restored), a member of one of that backup's tablespaces is planned
// under the name the restored backup gives the tablespace (by OID: it may
// have been renamed since), and skipped, written nowhere, when the
// restored backup no longer has the tablespace (dropped since): the files
// would be removed after the last backup anyway, as it does not list
// them, and no directory was chosen for them. A tablespace that backup's
// manifest does not name is refused.
func (e *extractor) planChunkMember(h *tar.Header) (memberPlan, error) {
	if e.spcRename != nil {
		if rest, ok := strings.CutPrefix(h.Name, "tablespaces/"); ok {
			name, sub, _ := strings.Cut(rest, "/")
			to, known := e.spcRename[name]
			switch {
			case !known:
				return planMember(h, nil, false)
			case to == "":
				return memberPlan{}, nil
			}
			mapped := *h
			mapped.Name = "tablespaces/" + to + "/" + sub
			h = &mapped
		}
	}
	return planMember(h, e.spcs, false)
}

// member writes one member of a chunk, or of the control tar when control
// is set.
func (e *extractor) member(r io.Reader, h *tar.Header, control bool, buf []byte, made *madeFiles) error {
	p, err := planMember(h, e.spcs, control)
	if err != nil {
		return err
	}
	return e.write(p, r, h, buf, made, nil)
}

// write carries out plan p for member h, whose data r holds. A file is
// created through dir when it is not nil (see writeFile).
func (e *extractor) write(p memberPlan, r io.Reader, h *tar.Header, buf []byte, made *madeFiles, dir *dirHandle) error {
	if p.kind == memberSkip {
		return nil
	}
	mode := fs.FileMode(h.Mode) & fs.ModePerm
	switch p.kind {
	case memberDir:
		root, rel, err := e.mkdir(p.spc, p.rel)
		if err != nil {
			return fmt.Errorf("member %s: create directory: %w", archive.Quoted(h.Name), e.pathErr(p.spc, err))
		}
		if err := root.Chmod(rel, dirMode(mode)); err != nil {
			return fmt.Errorf("member %s: %w", archive.Quoted(h.Name), e.pathErr(p.spc, err))
		}
		return nil
	default:
		if e.incr != nil {
			return e.incr.writeFile(e, p, h.Name, r, h.Size, mode, buf, made, dir)
		}
		return e.writeFile(p, h.Name, r, mode, buf, made, dir)
	}
}

// writeFile creates the regular file p, which must not exist, from r.
// With dir set, the file is created in its directory as dir keeps it
// open (dirHandle); else from the tablespace's root.
func (e *extractor) writeFile(p memberPlan, member string, r io.Reader, mode fs.FileMode, buf []byte, made *madeFiles, dir *dirHandle) error {
	root := e.roots[p.spc]
	parent, base := path.Split(p.rel)
	parent = strings.TrimSuffix(parent, "/")
	if parent != "" {
		if err := e.mkdirAll(p.spc, parent); err != nil {
			return fmt.Errorf("member %s: create directory: %w", archive.Quoted(member), e.pathErr(p.spc, err))
		}
	}
	var f *os.File
	var err error
	if dir != nil && parent != "" {
		var d *os.Root
		if d, err = dir.open(e, p.spc, parent); err == nil {
			f, err = d.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
		}
		// The error names the file from the tablespace's root, as
		// root.OpenFile's would.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Path = p.rel
		}
	} else {
		f, err = root.OpenFile(p.rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("member %s: %s is already restored (a member twice, or over a directory): %w", archive.Quoted(member), archive.Quoted(p.rel), ErrUnsafeMember)
	}
	if err != nil {
		return fmt.Errorf("member %s: create: %w", archive.Quoted(member), e.pathErr(p.spc, err))
	}
	if made != nil {
		made.add(p)
	}
	// writebackWriter has no ReadFrom, so io.CopyBuffer uses buf: large
	// writes, whose write-back starts as they are written.
	w := &writebackWriter{f: f}
	var dst io.Writer = w
	var sum *crcWriter
	if e.pgm != nil {
		sum = &crcWriter{w: w}
		dst = sum
	}
	if _, err := io.CopyBuffer(dst, r, buf); err != nil {
		f.Close()
		return fmt.Errorf("member %s: write: %w", archive.Quoted(member), e.pathErr(p.spc, err))
	}
	if sum != nil {
		if err := e.pgm.check(p.spc, p.rel, member, sum.n, sum.crc); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.flush(); err != nil {
		f.Close()
		return fmt.Errorf("member %s: write: %w", archive.Quoted(member), e.pathErr(p.spc, err))
	}
	if err := f.Chmod(mode | 0o600); err != nil {
		f.Close()
		return fmt.Errorf("member %s: %w", archive.Quoted(member), e.pathErr(p.spc, err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("member %s: write: %w", archive.Quoted(member), e.pathErr(p.spc, err))
	}
	return nil
}

// mkdirAll creates directory dir of tablespace spc ("": the data
// directory) and its parents, mode 0700, as os.Root.MkdirAll does.
// A directory made once is not made again (e.dirs): a member asks for
// its parent, which its directory's member or the previous file in it
// made already.
func (e *extractor) mkdirAll(spc, dir string) error {
	k := dirKey{spc, dir}
	if _, ok := e.dirs.Load(k); ok {
		return nil
	}
	e.mkdirs.Add(1)
	if err := e.roots[spc].MkdirAll(dir, 0o700); err != nil {
		return err
	}
	e.dirs.Store(k, struct{}{})
	return nil
}

// dirKey is a directory of tablespace spc ("": the data directory).
type dirKey struct{ spc, dir string }

// writeNew creates the regular file rel of the data directory from data; it
// must not exist.
func (e *extractor) writeNew(rel string, data []byte, mode fs.FileMode) error {
	if dir := path.Dir(rel); dir != "." {
		if err := e.roots[""].MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	f, err := e.roots[""].OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", rel, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return nil
}

// writePGControl writes global/pg_control, the last of the backup's files,
// once everything written before it is on disk: it syncs the file system
// of the data directory and of every tablespace directory first. Without
// pg_control PostgreSQL refuses to start on the directory; with it,
// backup_label and the recovery configuration it replays from the
// backup's checkpoint and checks no file against the backup, so a
// relation file missing or short is taken as it is. A SIGKILL leaves
// what was written to the kernel, but the kernel writes it out in its
// own order, and the recovery configuration is fsynced as it is written
// (WriteRecoveryConfig), before Run's final sync: a power loss or an OS
// crash in between could otherwise find pg_control and recovery.signal on
// disk and an earlier relation file not. pg_control itself needs no sync
// here: one that did not reach the disk whole fails PostgreSQL's CRC
// check of the file at startup, and Run's final sync follows.
//
// backup_label must be in place, a regular file (every backup holds one,
// and it is written before pg_control; ReadControl and oneTar.done
// refuse a backup without one before this): without it PostgreSQL would
// recover from pg_control's checkpoint, so nothing is written and the
// error wraps ErrNoBackupLabel. pg_control's checkpoint location is set
// to GuardCheckpoint (guardCheckpoint), so that PostgreSQL refuses to
// start if backup_label is removed instead of recovering from the wrong
// checkpoint into a corrupt cluster. A pg_control of a layout hoard does
// not know is written as it is, and the log says so.
func (e *extractor) writePGControl(data []byte) error {
	if fi, err := e.roots[""].Lstat("backup_label"); err != nil || !fi.Mode().IsRegular() {
		return errNoLabel("the backup", "backup_label")
	}
	if guarded, err := guardCheckpoint(data); errors.Is(err, errControlLayout) {
		e.log.Warn().Err(err).Msg("pg_control kept as in the backup: its checkpoint location is not invalidated, so removing backup_label would not stop PostgreSQL")
	} else if err != nil {
		return fmt.Errorf("%s, damaged in the backup (PostgreSQL would refuse it too; restore another backup): %w", archive.ControlPGControl, err)
	} else {
		data = guarded
	}
	for _, d := range e.syncs {
		if err := syncFS(d); err != nil {
			return err
		}
	}
	return e.writeNew("global/pg_control", data, 0o600)
}

// madeFiles records the files one attempt at a chunk created, so that a
// retry can remove them first, and the incremental files it applied to
// the files an incremental backup's parents left (see incrementalLevel):
// those stay, since applying one again gives the same file, but the level
// must forget them so that the retry applies them again instead of
// refusing them as written twice. It keeps at most maxMadeFiles of them in
// memory; past that, it appends them to an unlinked temporary file
// (spill), so that a chunk of many tiny members is retried like any other
// without costing memory per member. overflow is set only when that file
// cannot be written: the chunk is then not retried.
type madeFiles struct {
	files    []memberPlan
	applied  []memberPlan
	overflow bool

	spill    *os.File      // nil until the lists are full
	spillW   *bufio.Writer // over spill
	spillErr error         // why the spill failed, with overflow
}

// reset empties m for another attempt.
func (m *madeFiles) reset() {
	m.files, m.applied, m.overflow, m.spillErr = m.files[:0], m.applied[:0], false, nil
	if m.spill != nil {
		if err := m.spill.Truncate(0); err != nil {
			m.fail(err)
		} else if _, err := m.spill.Seek(0, io.SeekStart); err != nil {
			m.fail(err)
		}
		m.spillW.Reset(m.spill)
	}
}

// close removes the spill file, if any. Safe to call more than once.
func (m *madeFiles) close() {
	if m.spill != nil {
		m.spill.Close()
		m.spill, m.spillW = nil, nil
	}
}

// maxMadeFiles is a variable for tests.
var maxMadeFiles = 1 << 16

func (m *madeFiles) add(p memberPlan) { m.record(&m.files, 0, p) }

// addApplied records an incremental file applied to its parents' file.
func (m *madeFiles) addApplied(p memberPlan) { m.record(&m.applied, 1, p) }

func (m *madeFiles) record(list *[]memberPlan, which byte, p memberPlan) {
	if m.overflow {
		return
	}
	if len(m.files)+len(m.applied) < maxMadeFiles {
		*list = append(*list, p)
		return
	}
	if m.spill == nil {
		f, err := os.CreateTemp("", ".hoard-restore-made-*")
		if err != nil {
			m.fail(err)
			return
		}
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			m.fail(err)
			return
		}
		m.spill, m.spillW = f, bufio.NewWriterSize(f, 64<<10)
	}
	// A record: which list, kind, then spc and rel, each after its length.
	var rec [1 + 3*binary.MaxVarintLen64]byte
	b := append(rec[:0], which)
	b = binary.AppendUvarint(b, uint64(p.kind))
	b = binary.AppendUvarint(b, uint64(len(p.spc)))
	if _, err := m.spillW.Write(b); err != nil {
		m.fail(err)
		return
	}
	// bufio keeps its first error: the last write returns it.
	_, _ = m.spillW.WriteString(p.spc)
	_, _ = m.spillW.Write(binary.AppendUvarint(rec[:0], uint64(len(p.rel))))
	if _, err := m.spillW.WriteString(p.rel); err != nil {
		m.fail(err)
	}
}

// fail gives up the spill: the chunk will not be retried.
func (m *madeFiles) fail(err error) {
	m.overflow, m.spillErr = true, err
}

// spilled calls fn with the recorded plans past the in-memory lists, in
// batches of at most maxMadeFiles, each with its list (0 files, 1 applied).
func (m *madeFiles) spilled(fn func(which byte, batch []memberPlan) error) error {
	if m.spill == nil {
		return nil
	}
	if err := m.spillW.Flush(); err != nil {
		return fmt.Errorf("list of the files to remove before a retry: %w", err)
	}
	end, err := m.spill.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("list of the files to remove before a retry: %w", err)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(m.spill, 0, end), 64<<10)
	batches := [2][]memberPlan{}
	flush := func(which byte) error {
		if len(batches[which]) == 0 {
			return nil
		}
		err := fn(which, batches[which])
		batches[which] = batches[which][:0]
		return err
	}
	str := func() (string, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return "", err
		}
		if n > 1<<20 {
			return "", fmt.Errorf("name of %d bytes", n)
		}
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return string(b), err
	}
	for {
		which, err := r.ReadByte()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || which > 1 {
			return fmt.Errorf("list of the files to remove before a retry: bad record (%v)", err)
		}
		kind, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("list of the files to remove before a retry: %w", err)
		}
		spc, err := str()
		if err != nil {
			return fmt.Errorf("list of the files to remove before a retry: %w", err)
		}
		rel, err := str()
		if err != nil {
			return fmt.Errorf("list of the files to remove before a retry: %w", err)
		}
		batches[which] = append(batches[which], memberPlan{kind: memberKind(kind), spc: spc, rel: rel})
		if len(batches[which]) >= max(maxMadeFiles, 1) {
			if err := flush(which); err != nil {
				return err
			}
		}
	}
	if err := flush(0); err != nil {
		return err
	}
	return flush(1)
}

// removeMade removes the files an attempt created, and makes an
// incremental level forget them and the files it applied, before a
// retry.
func (e *extractor) removeMade(made *madeFiles) error {
	remove := func(which byte, plans []memberPlan) error {
		if e.incr != nil {
			e.incr.forget(plans)
		}
		if which != 0 {
			return nil
		}
		for _, p := range plans {
			if err := e.roots[p.spc].Remove(p.rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s before a retry: %w", p.rel, err)
			}
		}
		return nil
	}
	if err := remove(0, made.files); err != nil {
		return err
	}
	if err := remove(1, made.applied); err != nil {
		return err
	}
	return made.spilled(remove)
}

// dirMode keeps a directory usable by its owner whatever the tar says.
func dirMode(m fs.FileMode) fs.FileMode {
	if m == 0 {
		return 0o700
	}
	return m | 0o700
}

// quotedPath returns err, when it is a *fs.PathError, with its path quoted
// by archive.Quoted: a file named after a tar member fails to be created
// (ENAMETOOLONG) with the member's whole name, up to 1 MiB, in its error.
// Only what came from the storage is quoted: a path under keep, a
// directory the operator chose (see targetDir), names keep whole and
// quotes the rest; keep "" quotes the whole path.
func quotedPath(err error, keep string) error {
	pe, ok := err.(*fs.PathError)
	if !ok {
		return err
	}
	return quotedPathError{pe, keep}
}

// quotedPathError is quotedPath's error: errors.Is and errors.As see the
// *fs.PathError.
type quotedPathError struct {
	*fs.PathError
	keep string
}

func (e quotedPathError) Error() string {
	name := archive.Quoted(e.Path)
	if e.keep != "" {
		if e.Path == e.keep {
			name = e.keep
		} else if rest, ok := strings.CutPrefix(e.Path, strings.TrimSuffix(e.keep, "/")+"/"); ok {
			name = archive.Quoted(rest) + " in " + e.keep
		}
	}
	return e.Op + " " + name + ": " + e.Err.Error()
}

func (e quotedPathError) Unwrap() error { return e.PathError }
