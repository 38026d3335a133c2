package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	_ Store  = (*Local)(nil)
	_ Syncer = (*Local)(nil)
)

// Local is PGHoard's "local" storage: the object for key K is the file
// <root>/K and its metadata the sidecar <root>/K.metadata, a JSON object of
// string values plus "_hash", the SHA-256 hex of the stored bytes, and
// "Content-Length", their count, as PGHoard's uploader records it. An
// object without a sidecar is invisible, so the sidecar is written last.
type Local struct {
	root string
	// fsync is (*os.File).Sync; tests replace it to see what is synced.
	fsync func(*os.File) error
	// rename is os.Rename in Put; tests replace it to make a rename fail
	// or to stop there.
	rename func(oldpath, newpath string) error
	// beforeOpen, when set, runs in Open and Stat between the sidecar's
	// read and the object file's open; tests race a Put there.
	beforeOpen func()
	// afterMkdir, when set, runs in openTemp between making the key's
	// directory and opening it; tests remove the directory there, as a
	// Delete emptying it does.
	afterMkdir func(dir string)
	// lockWait, when set, is called when Create or Sync must wait for
	// another writer's lock of the object's directory (lockDir); tests
	// order two writers with it.
	lockWait func()
	// flock is syscall.Flock in lockDir; tests replace it to act as a
	// file system without locks.
	flock func(fd int, how int) error
	// lockPatience, when set, replaces lockPatience (tests).
	lockPatience time.Duration
	// OnSkip, if set, is called by List for each symbolic link under the
	// prefix that it leaves out (it enters no linked directory below the
	// one it starts in, and takes no link for an object), with its key
	// and a sentence (skippedLink) saying what is left out, why, and what
	// to do: hoard and PGHoard make no links in a store, so one was
	// planted or made by hand. It is called too for each .metadata
	// sidecar whose object file is missing (sidecarAlone), which List
	// leaves out as PGHoard's listing does. Callers log it as a warning.
	// It is called from List's goroutine.
	OnSkip func(key, why string)
}

// NewLocal returns the local store rooted at dir (PGHoard's
// object_storage.directory joined with the prefix). The directory is
// created on the first Put.
func NewLocal(dir string) *Local {
	return &Local{root: dir}
}

const (
	sidecarSuffix = ".metadata"
	sidecarTemp   = ".metadata_tmp" // PGHoard's marker for a sidecar being written
	hashKey       = "_hash"
	// contentLengthKey is the stored size PGHoard's uploader adds to the
	// metadata of every object it stores.
	contentLengthKey = "Content-Length"
	tempMarker       = ".tmp-" // in the names of hoard's data temp files: .<name>.tmp-<random>
)

// StaleTempAge is how long a temp file of a Put or Create may go unmodified
// before List removes it as the leftover of a killed writer. A live writer
// keeps writing its temp file, so its modification time stays recent; no
// hoard upload stalls for a day.
const StaleTempAge = 24 * time.Hour

// incompleteWait is how long Create waits for the sidecar of an object
// file another writer has linked but not yet described: between its two
// links a writer does nothing else, so a sidecar that does not appear in
// this time never will.
var incompleteWait = 5 * time.Second

// hidden reports whether a directory entry is never an object: PGHoard's
// rules (dot files, sidecars, sidecar temp files); hoard's data temp files
// start with a dot.
func hidden(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, sidecarSuffix) || strings.Contains(name, sidecarTemp)
}

// tempFile reports whether a hidden name is a temp file of a Put or Create
// (hoard's, or PGHoard's sidecar temp files).
func tempFile(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker) || strings.Contains(name, sidecarTemp)
}

// checkFileKey checks that key can name a file below a store's root (the
// local store's and SFTP's rule): relative, no empty, dot or hidden
// component (see hidden). what names the kind of file in the error.
func checkFileKey(key, what string) error {
	if key == "" || strings.HasPrefix(key, "/") {
		return fmt.Errorf("invalid key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || hidden(part) {
			return fmt.Errorf("invalid key %q: component %q cannot be stored as %s", key, part, what)
		}
	}
	return nil
}

// Put writes a temp file in the object's directory and one for the
// sidecar, fsyncs both, then renames the file over the object's, fsyncs
// the directory, renames the sidecar over the object's sidecar and fsyncs
// the directory again. Both temp files are written first, so a write or
// fsync that fails (a full disk) leaves the old object as it was. The old
// object is never removed: each rename replaces one of its files
// atomically, and between the two renames (a crash there, or a failing
// second rename) the sidecar temp file, named for the new file
// (replaceName), completes the new object: readers roll it forward (see
// replace.go). The fsync between the renames keeps a crash from persisting
// the sidecar's rename without the file's. Everything happens in the
// directory objectDir opens, never through a link out of the store.
//
// A directory fsync after a rename that fails loses the object, the old
// copy included: Put removes what it made visible, under the directory's
// create lock (lockDir, held from the first rename, as Create holds it),
// and fails. It is never fsynced again and counted durable (the
// "fsyncgate" rule, docs/architecture.md). Losing the old copy is safe
// because every caller that replaces a key still holds what it stores:
// the daemon's .partial copies (the receiver's file, stored again by the
// next copy), a delta object stored over a bad one (the backup fails),
// and a running backup's marker (stored again at its next refresh, which
// a failed refresh already waits for).
func (l *Local) Put(ctx context.Context, key string, r io.Reader, md Metadata) (err error) {
	if err := checkFileKey(key, "a local file"); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	d, base, f, tmp, err := l.openTemp(ctx, key)
	if err != nil {
		return localErr("put", key, err)
	}
	defer d.Close()
	sum, size, fi, err := l.writeFile(ctx, d, f, tmp, r)
	if err != nil {
		return localErr("put", key, err)
	}
	renamed := false // the new file is in place: its sidecar temp completes it
	defer func() {
		if err != nil && !renamed {
			_ = d.Remove(tmp)
		}
	}()
	sidecar, err := encodeSidecar(md, sum, size)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f, mdTmp, err := l.createReplaceTemp(d, tmp, base, size, fi.ModTime())
	if err != nil {
		return localErr("put", key, err)
	}
	defer func() {
		if err != nil && !renamed {
			_ = d.Remove(mdTmp)
		}
	}()
	if _, _, _, err := l.writeFile(ctx, d, f, mdTmp, bytes.NewReader(sidecar)); err != nil {
		return localErr("put", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	// Held from the first rename to the end of the last directory fsync,
	// and of the removal should one fail, as in Create.
	dir, unlock, err := l.lockForSync(ctx, d)
	if err != nil {
		return localErr("put", key, err)
	}
	defer unlock()
	// The sidecar temp that may complete the file being replaced, left by
	// a Put interrupted between its renames; it goes once this one is done.
	var oldTmp string
	if ofi, err := d.Lstat(base); err == nil {
		oldTmp = replaceName(base, ofi.Size(), ofi.ModTime())
	}
	if err := l.doRename(d, tmp, base); err != nil {
		// On a network file system a rename that reports an error may
		// have happened: then the sidecar temp completes the new file.
		_, serr := d.Lstat(tmp)
		renamed = serr != nil
		return localErr("put", key, err)
	}
	renamed = true
	// A failed directory fsync after a rename: the entries may be lost
	// although the directory reads well, and a second fsync (the Sync of
	// a retried copy that finds the same bytes stored, PutPartialWAL's)
	// would succeed without them. So the object goes, sidecar first (the
	// old one, or the new), and with it the old copy, whose file the
	// rename replaced: the caller still holds the bytes and stores them
	// again, which writes and fsyncs new entries. Under the lock nobody
	// has reported the object stored meanwhile.
	if err := l.sync(dir); err != nil {
		return localErr("put", key, l.unlinkUnsynced(d, err, base+sidecarSuffix, mdTmp, base))
	}
	if err := l.doRename(d, mdTmp, base+sidecarSuffix); err != nil {
		return localErr("put", key, err)
	}
	if err := l.sync(dir); err != nil {
		return localErr("put", key, l.unlinkUnsynced(d, err, base+sidecarSuffix, base))
	}
	if oldTmp != "" && oldTmp != mdTmp {
		_ = d.Remove(oldTmp)
	}
	return nil
}

// objectDir opens the directory of key's files through the storage
// directory, creating the missing directories when create is set, and
// returns it with the key's last component. Whoever can write the storage
// directory could replace a directory in it with a link to one outside
// (pg_wal of the running cluster): os.Root refuses a path that leaves the
// storage directory, so Put, Create and Delete never write or remove a
// file outside it, and reads (readDir) never read one.
func (l *Local) objectDir(ctx context.Context, key string, create bool) (*os.Root, string, error) {
	rel := filepath.FromSlash(key)
	dir, base := filepath.Dir(rel), filepath.Base(rel)
	if create {
		if err := l.mkdirAll(ctx, dir); err != nil {
			return nil, "", err
		}
		if l.afterMkdir != nil {
			l.afterMkdir(filepath.Join(l.root, dir))
		}
	}
	root, err := os.OpenRoot(l.root)
	if err != nil {
		return nil, "", err
	}
	defer root.Close()
	d, err := root.OpenRoot(dir)
	if err != nil {
		if link := linkOut(root, dir); link != "" {
			return nil, "", errLinkOut(l.root, link, err)
		}
		return nil, "", err
	}
	return d, base, nil
}

// openTemp opens the directory of key's files (objectDir, creating the
// missing directories) and creates a data temp file for the key in it. It
// returns the directory, the key's last component, the file and its name.
// Delete removes a directory left with nothing but its lock file
// (removeEmptyDir): a directory this writer found or opened just before
// is then gone, and no entry can be made in it any more (Linux refuses
// one in a removed directory with ENOENT), so this writer makes it again
// and tries once more, after a pause that grows with each try: a Delete
// looping in the directory (retention's, a sweep's) can otherwise fall
// into step with the writer and remove the directory between its mkdir
// and its open try after try (seen at 5 tries in a row on a loaded
// machine; the 10 tries without a pause once ran out). Once the temp file
// is in it, the directory is not empty and stays until the writer is done.
func (l *Local) openTemp(ctx context.Context, key string) (d *os.Root, base string, f *os.File, tmp string, err error) {
	for try := 1; ; try++ {
		d, base, err = l.objectDir(ctx, key, true)
		if err == nil {
			f, tmp, err = CreateTempIn(d, "."+base+tempMarker)
			if err == nil {
				return d, base, f, tmp, nil
			}
			d.Close()
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", nil, "", err
		}
		if try == maxDirTries {
			// Not ErrNotFound, which says the object is not there: a
			// writer that may try again later (retries) should.
			return nil, "", nil, "", fmt.Errorf("the directory of %s was removed %d times in a row as it was made "+
				"(a deletion emptying it each time?): %v", key, try, err)
		}
		select {
		case <-ctx.Done():
			return nil, "", nil, "", ctx.Err()
		case <-time.After(time.Duration(try) * time.Millisecond):
		}
	}
}

// maxDirTries bounds openTemp's tries of a directory that a Delete
// removes each time, as it empties it: with its pauses (1 ms more each
// try), about 1.2 s in all.
const maxDirTries = 50

// linkOut returns the first directory on the way to dir in root that is a
// symbolic link leading out of root, or "" when there is none.
func linkOut(root *os.Root, dir string) string {
	p := ""
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		fi, err := root.Lstat(p)
		if err != nil {
			return ""
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if _, err := root.Stat(p); err != nil {
				return p
			}
		}
	}
	return ""
}

// createReplaceTemp creates, in d, the sidecar temp file of the data temp
// file tmp, of size bytes modified at mtime, that is to replace the object
// file base: under the file's replace name (replaceName), which readers
// find from the file. Another Put of the key in flight, or a sidecar temp
// an interrupted one left, may hold that name (same size, same second):
// then tmp's modification time moves on a second, fsynced, until its name
// is free (see replace.go). It returns the file and its name.
func (l *Local) createReplaceTemp(d *os.Root, tmp, base string, size int64, mtime time.Time) (*os.File, string, error) {
	for try := range maxReplaceNames {
		if try > 0 {
			mtime = mtime.Add(time.Second)
			if err := d.Chtimes(tmp, mtime, mtime); err != nil {
				return nil, "", err
			}
			if err := l.syncIn(d, tmp); err != nil {
				return nil, "", err
			}
		}
		name := replaceName(base, size, mtime)
		f, err := d.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		switch {
		case err == nil:
			return f, name, nil
		case !errors.Is(err, fs.ErrExist):
			// The error names the file relative to d only.
			return nil, "", fmt.Errorf("create a temporary file in %s: %w", d.Name(), err)
		}
	}
	return nil, "", errReplaceNamesTaken(base)
}

// doRename renames oldname to newname in d, through the tests' hook (with
// both paths) when set.
func (l *Local) doRename(d *os.Root, oldname, newname string) error {
	if l.rename != nil {
		return l.rename(filepath.Join(d.Name(), oldname), filepath.Join(d.Name(), newname))
	}
	return d.Rename(oldname, newname)
}

// mkdirAll creates the directory dir below the storage directory, and
// the storage directory, as os.MkdirAll does, and fsyncs the parent of
// each directory it created, so that a crash cannot take away a
// directory, with the objects in it, after Put returned. Below the
// storage directory it works through an os.Root (see objectDir), one
// directory at a time (mkdir).
func (l *Local) mkdirAll(ctx context.Context, dir string) error {
	if err := l.mkdirRoot(ctx); err != nil {
		return err
	}
	root, err := os.OpenRoot(l.root)
	if err != nil {
		return err
	}
	defer root.Close()
	parent := "."
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		if part == "." {
			continue
		}
		p, err := root.OpenRoot(parent)
		if err != nil {
			return err
		}
		err = l.mkdir(ctx, p, part)
		p.Close()
		if err != nil {
			return err
		}
		parent = filepath.Join(parent, part)
	}
	return nil
}

// mkdir creates the directory name in the directory p and fsyncs p,
// unless it exists. A failed fsync of p may lose the new entry although
// the directory reads well, and a second fsync (the next Put's, Sync's)
// would succeed without it (the "fsyncgate" rule, docs/architecture.md):
// so the directory goes again, and the next writer creates it and fsyncs
// p anew. Another writer must not put an object in it meanwhile, and
// report it stored: the creator holds p's create lock (lockDir) from its
// mkdir to the end of that fsync or removal, and a writer that finds the
// directory waits for that lock, when p has a lock file (a directory made
// without the lock, by an older hoard or by hand, has settled long ago),
// then looks again. A directory that cannot go (a writer that takes no
// lock, on a file system without locks, put a file in it) fails the
// write.
func (l *Local) mkdir(ctx context.Context, p *os.Root, name string) error {
	if fi, err := p.Stat(name); err == nil && fi.IsDir() {
		unlock, err := l.lockIfPresent(ctx, p)
		if err != nil {
			return err
		}
		unlock()
		if fi, err := p.Stat(name); err == nil && fi.IsDir() {
			return nil
		}
	}
	dir, unlock, err := l.lockForSync(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	switch err := p.Mkdir(name, 0o755); {
	case errors.Is(err, fs.ErrExist):
		return nil // made and settled by a writer that held the lock
	case err != nil:
		return err
	}
	if err := l.sync(dir); err != nil {
		if rerr := p.Remove(name); rerr != nil {
			return fmt.Errorf("%w; remove the directory whose entry is not durable: %w", err, rerr)
		}
		return err
	}
	return nil
}

// mkdirRoot creates the storage directory and its missing parents, as
// os.MkdirAll does, and fsyncs the parent of each directory it created.
// Its path is the configuration's, links and all. It makes them one at a
// time, outermost first, each by mkdir in its parent: a failed fsync
// removes only the directory whose entry it may have lost (of a/b/c, made
// now, c when the fsync of b fails: b's entry was fsynced in a), and the
// next write makes c again and fsyncs b anew. A writer that finds the
// first directory of the path existing waits for its parent's lock
// (lockParentIfPresent), as mkdir does, so that it does not write in a
// directory whose creator is still fsyncing that parent; that parent is
// not opened, only its lock file (it need not be readable).
func (l *Local) mkdirRoot(ctx context.Context) error {
	dir := filepath.Clean(l.root)
	var missing []string
	d := dir
	for {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
		d = filepath.Dir(d)
	}
	// d exists. Its creator may still be fsyncing its parent, and remove
	// it again when that fails (mkdir): wait for the parent's lock, if it
	// has a lock file, and look again.
	if parent := filepath.Dir(d); parent != d {
		unlock, err := l.lockParentIfPresent(ctx, parent)
		if err != nil {
			return err
		}
		unlock()
		switch _, err := os.Stat(d); {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, d) // made again below
		case err != nil:
			return err
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p, err := os.OpenRoot(filepath.Dir(missing[i]))
		if err != nil {
			return err
		}
		err = l.mkdir(ctx, p, filepath.Base(missing[i]))
		p.Close()
		if err != nil {
			return fmt.Errorf("make %s: %w", missing[i], err)
		}
	}
	return nil
}

// Sync fsyncs the object's file and sidecar, its directory and every
// directory up to the store's root and the root's parent: a Put that died
// before its own fsyncs may have created any of them. It holds the
// directory's create lock (lockDir) throughout, so the object it finds is
// not one whose Create or Put is still to learn that its entries were
// lost: that writer removes it first. Like the reads, it opens nothing
// through a link: not the files (see openBeneath), and the directories
// through an os.Root of the storage directory.
func (l *Local) Sync(ctx context.Context, key string) error {
	d, base, err := l.readDir("sync", key, false)
	if err != nil {
		return err
	}
	defer d.Close()
	// A Create of the key that linked it and is fsyncing the directory
	// holds the lock: it ends with the object durable, or removed, which
	// the sidecar's read below then finds.
	unlock, err := l.lockDir(ctx, d)
	if err != nil {
		return localErr("sync", key, err)
	}
	defer unlock()
	if _, _, err := l.readSidecar("sync", key, d, base, false); err != nil {
		return err
	}
	f, _, err := l.openFile("sync", key, d, base)
	if err != nil {
		return err
	}
	if err := l.syncOpened(f, nil); err != nil {
		return localErr("sync", key, err)
	}
	if err := l.syncOpened(openBeneath(d, base+sidecarSuffix)); err != nil {
		return localErr("sync", key, err)
	}
	root, err := os.OpenRoot(l.root)
	if err != nil {
		return localErr("sync", key, err)
	}
	defer root.Close()
	for dir := filepath.Dir(filepath.FromSlash(key)); ; dir = filepath.Dir(dir) {
		if err := l.syncIn(root, dir); err != nil {
			return localErr("sync", key, err)
		}
		if dir == "." {
			break
		}
	}
	if err := l.syncDir(filepath.Dir(filepath.Clean(l.root))); err != nil {
		return localErr("sync", key, err)
	}
	return nil
}

// sync fsyncs f, through the tests' hook when set.
func (l *Local) sync(f *os.File) error {
	if l.fsync != nil {
		return l.fsync(f)
	}
	return f.Sync()
}

// syncFile fsyncs the file or directory at name.
func (l *Local) syncFile(name string) error { return l.syncOpened(os.Open(name)) }

// syncDir fsyncs a directory so that the entries created in it survive a
// crash.
func (l *Local) syncDir(dir string) error { return l.syncFile(dir) }

// syncIn fsyncs the file or directory name of d.
func (l *Local) syncIn(d *os.Root, name string) error { return l.syncOpened(d.Open(name)) }

// syncOpened fsyncs and closes f, opened with error err.
func (l *Local) syncOpened(f *os.File, err error) error {
	if err != nil {
		return err
	}
	err = l.sync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Create stores the object only if the key has none, with two hard links:
// the data temp file is linked to the object's name, then the sidecar temp
// file to the sidecar's name. link(2) fails on an existing name, on local
// filesystems and NFS alike, so of two writers only one can link each
// name, and the sidecar, which makes the object visible, is linked only by
// the writer whose bytes are under the object's name.
//
// An object file without a sidecar is a writer between its two links, or
// one that died there. Create adopts it when it holds the same bytes (the
// sidecar it then links describes them truly), waits for its sidecar when
// it holds other bytes, and, when no sidecar comes, refuses with an error
// that names the file: it may be the only copy of those bytes, and only a
// person can say which copy is right.
//
// The directory fsync after the links may fail; then the links may not
// survive a crash, and Create removes them again (see the end of it). Of
// two writers of one key (a wal-push that PostgreSQL retries while the
// first still runs, the daemon and a wal-push, two daemons of one site),
// the second must not report stored an object the first then removes: the
// first holds the directory's create lock (lockDir) from its first link
// to the end of that fsync or removal, and the second waits for it before
// it answers ErrExist (settledExists) or Sync reports the object durable.
func (l *Local) Create(ctx context.Context, key string, r io.Reader, md Metadata) error {
	if err := checkFileKey(key, "a local file"); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	d, base, f, tmp, err := l.openTemp(ctx, key)
	if err != nil {
		return localErr("create", key, err)
	}
	defer d.Close()
	if exists, err := l.settledExists(ctx, d, base); err != nil {
		_ = f.Close()
		_ = d.Remove(tmp)
		return localErr("create", key, err)
	} else if exists {
		_ = f.Close()
		_ = d.Remove(tmp)
		return fmt.Errorf("create %s: %w", key, ErrExist)
	}
	sum, size, _, err := l.writeFile(ctx, d, f, tmp, r)
	if err != nil {
		return localErr("create", key, err)
	}
	// The temp names go in every case: after a link they are second names
	// of the committed files.
	defer d.Remove(tmp)
	sidecar, err := encodeSidecar(md, sum, size)
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	_, _, mdTmp, err := l.writeTemp(ctx, d, "."+base+sidecarTemp+"-", bytes.NewReader(sidecar))
	if err != nil {
		return localErr("create", key, err)
	}
	defer d.Remove(mdTmp)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	// Held from the first link to the end of the directory fsync, and of
	// the removal should it fail.
	dir, unlock, err := l.lockForSync(ctx, d)
	if err != nil {
		return localErr("create", key, err)
	}
	defer unlock()
	linked, err := l.linkData(key, d, tmp, base, sum)
	if err != nil {
		return err
	}
	// base holds our bytes now. Should the sidecar link fail, it stays: it
	// may be another writer's identical file, and a later Create adopts it.
	if err := d.Link(mdTmp, base+sidecarSuffix); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", key, ErrExist)
		}
		return localErr("create", key, err)
	}
	if err := l.sync(dir); err != nil {
		// The new entries may be lost although the directory reads
		// well: Linux may mark the pages it failed to write clean and
		// report the error once, so a second fsync (Sync, which a
		// wal-push that finds the same bytes stored calls) would succeed
		// without them. Never fsync again and count them durable: the
		// object goes, sidecar first, so that the next Create links it
		// again. An adopted object file is another writer's and stays.
		//
		// Removing is safe only because of the lock: a writer that
		// found the object (its sidecar linked) while it was held
		// waits in Sync and then finds it gone, so nobody has reported
		// it stored. Without the lock, a second wal-push of the segment
		// could see the object, fsync the directory after this failure
		// (successfully: the error was reported here) and report it
		// archived, and this removal would then take away a segment
		// PostgreSQL recycles.
		names := []string{base + sidecarSuffix}
		if linked {
			names = append(names, base)
		}
		return localErr("create", key, l.unlinkUnsynced(d, err, names...))
	}
	return nil
}

// lockForSync takes the create lock of d (lockDir) and opens d itself,
// for a writer about to make new entries in it and fsync them; unlock
// closes both. Sync takes the lock too, so no writer that finds the
// object reports it durable before this one knows whether its entries
// are (see createLockName). The directory is opened before the entries
// are made: Linux reports a writeback error of the directory to every
// descriptor opened before it (errseq_t), so another writer's fsync of
// the directory, failing first, cannot take the error of these entries
// away from this one's.
func (l *Local) lockForSync(ctx context.Context, d *os.Root) (dir *os.File, unlock func(), err error) {
	release, err := l.lockDir(ctx, d)
	if err != nil {
		return nil, nil, err
	}
	dir, err = d.Open(".")
	if err != nil {
		release()
		return nil, nil, err
	}
	return dir, func() { _ = dir.Close(); release() }, nil
}

// settledExists reports whether the object base of d exists (its sidecar
// does) once no Create in d is between its links and their directory
// fsync: a Create whose fsync fails removes what it linked, so an object
// seen in that window may go, and ErrExist for it would have the caller
// (PushWAL, the markers of signed backups and histories) count stored
// what is not. Only a sidecar seen costs a wait for the lock.
func (l *Local) settledExists(ctx context.Context, d *os.Root, base string) (bool, error) {
	if _, err := d.Lstat(base + sidecarSuffix); err != nil {
		return false, nil
	}
	unlock, err := l.lockDir(ctx, d)
	if err != nil {
		return false, err
	}
	defer unlock()
	_, err = d.Lstat(base + sidecarSuffix)
	return err == nil, nil
}

// unlinkUnsynced removes names from d in order, the object's sidecar
// first (the object is gone once it is), after the directory fsync that
// was to make them durable failed with err. A name already missing is
// passed over; any other removal error stops it, so that no object file
// goes while a sidecar still names it. It returns err with that error.
func (l *Local) unlinkUnsynced(d *os.Root, err error, names ...string) error {
	for _, name := range names {
		if rerr := d.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("%w; remove the object whose directory entry is not durable: %w", err, rerr)
		}
	}
	return err
}

// linkData links the data temp file tmp of d to the object's name base, or adopts
// an identical object file already there without a sidecar. linked says
// that base is the link it made, not an adopted file.
func (l *Local) linkData(key string, d *os.Root, tmp, base string, sum []byte) (linked bool, err error) {
	err = d.Link(tmp, base)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		if err != nil {
			return false, localErr("create", key, err)
		}
		return true, nil
	}
	deadline := time.Now().Add(incompleteWait)
	for {
		if _, err := d.Lstat(base + sidecarSuffix); err == nil {
			return false, fmt.Errorf("create %s: %w", key, ErrExist)
		}
		same, err := fileHashes(d, base, sum)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Gone meanwhile (a Delete): the name is free again.
			if err := d.Link(tmp, base); err == nil {
				return true, nil
			}
		case err != nil:
			return false, localErr("create", key, err)
		case same:
			return false, nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("create %s: %w", key, &permanentError{
				msg: fmt.Sprintf("%s exists without its metadata sidecar and holds other bytes: a writer stopped between storing "+
					"an object and its metadata; if no hoard or PGHoard process is writing it, move it out of the storage "+
					"directory (keep it: it may be the only copy of those bytes) and the file will be stored again", filepath.Join(d.Name(), base)),
				err: errIncomplete,
			})
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errIncomplete is the cause of Create's refusal of an object file that
// has no sidecar and other bytes.
var errIncomplete = errors.New("object file without its metadata sidecar")

// fileHashes reports whether the file name of d has SHA-256 sum.
func fileHashes(d *os.Root, name string, sum []byte) (bool, error) {
	f, err := d.Open(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return bytes.Equal(h.Sum(nil), sum), nil
}

// localCopyBufferSize is the buffer of writeTemp's copy, the size of its
// writes.
const localCopyBufferSize = 256 << 10

// writeTemp copies r into a new fsynced temp file of d, named prefix and
// a random suffix, and returns the SHA-256 of the bytes, their count and
// the file's name. On error it leaves nothing.
func (l *Local) writeTemp(ctx context.Context, d *os.Root, prefix string, r io.Reader) (sum []byte, size int64, name string, err error) {
	f, name, err := CreateTempIn(d, prefix)
	if err != nil {
		return nil, 0, "", err
	}
	sum, size, _, err = l.writeFile(ctx, d, f, name, r)
	return sum, size, name, err
}

// writeFile copies r into the new file f, name in d, fsyncs and closes
// it, and returns the SHA-256 of the bytes, their count and the file's
// FileInfo. On error it closes and removes f.
func (l *Local) writeFile(ctx context.Context, d *os.Root, f *os.File, name string, r io.Reader) (sum []byte, size int64, fi os.FileInfo, err error) {
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = d.Remove(name)
		}
	}()
	h := sha256.New()
	// Large writes: an archive.Upload hands over its stored bytes in
	// pieces of 256 KiB (io.Copy's own buffer is 32 KiB).
	n, err := io.CopyBuffer(io.MultiWriter(f, h), ctxReader{ctx, r}, make([]byte, localCopyBufferSize))
	if err != nil {
		return nil, 0, nil, err
	}
	if err := l.sync(f); err != nil {
		return nil, 0, nil, err
	}
	if fi, err = f.Stat(); err != nil {
		return nil, 0, nil, err
	}
	if err := f.Close(); err != nil {
		return nil, 0, nil, err
	}
	return h.Sum(nil), n, fi, nil
}

// ctxReader stops a copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// SyncDir fsyncs a directory so that renames and new entries in it
// survive a crash.
func SyncDir(dir string) error {
	d, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	return SyncRoot(d)
}

// encodeSidecar renders the sidecar as PGHoard's writes it: sorted keys,
// Python's json.dumps separators, empty values dropped, "_hash" (rohmu's)
// and "Content-Length", the stored size (which PGHoard's uploader adds to
// every object's metadata), set from the bytes written.
func encodeSidecar(md Metadata, sum []byte, size int64) ([]byte, error) {
	m := make(map[string]string, len(md)+2)
	for k, v := range md {
		if v != "" && k != hashKey {
			m[k] = v
		}
	}
	m[hashKey] = hex.EncodeToString(sum)
	m[contentLengthKey] = strconv.FormatInt(size, 10)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteString(", ")
		}
		for j, s := range []string{k, m[k]} {
			if j == 1 {
				buf.WriteString(": ")
			}
			enc, err := json.Marshal(s)
			if err != nil {
				return nil, fmt.Errorf("encode metadata: %w", err)
			}
			buf.Write(enc)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// readSidecar reads the metadata of the object base in its directory d
// (readDir) and returns the sidecar's FileInfo (from the descriptor read,
// so its change time is the one of the metadata returned); a missing
// sidecar means the object does not exist. "_hash" is dropped and not
// checked (PGHoard's own test data carries a placeholder there), and so is
// "Content-Length".
//
// With mounted, a missing sidecar is ErrNotFound only if the storage
// directory is there and not empty (see notFound): reads of content ask
// this; Stat does not, so that a first upload into a new directory can
// check that its key is free.
func (l *Local) readSidecar(op, key string, d *os.Root, base string, mounted bool) (Metadata, os.FileInfo, error) {
	sidecar := base + sidecarSuffix
	data, fi, err := readRegular(d, sidecar)
	var nr *notRegularError
	switch {
	case errors.Is(err, syscall.ELOOP):
		return nil, nil, fmt.Errorf("%s %s: %s is a symbolic link: %w", op, key, sidecar, ErrBadMetadata)
	case errors.As(err, &nr):
		return nil, nil, fmt.Errorf("%s %s: %s is not a regular file (%s): %w", op, key, sidecar, nr.mode, ErrBadMetadata)
	case errors.Is(err, errTooLarge):
		return nil, nil, fmt.Errorf("%s %s: %s is over %d bytes: %w", op, key, sidecar, maxSidecar, ErrBadMetadata)
	case errors.Is(err, fs.ErrNotExist):
		if !mounted {
			return nil, nil, fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
		}
		return nil, nil, l.notFound(op, key)
	case err != nil:
		return nil, nil, localErr(op, key, err)
	}
	md, err := parseSidecar(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: parse %s: %w: %w", op, key, sidecar, ErrBadMetadata, err)
	}
	return md, fi, nil
}

// readRegular reads the sidecar file name of d, which must be a regular
// file of at most maxSidecar bytes, and returns its bytes and its FileInfo
// (from the descriptor read). Anyone who can write the storage directory
// could plant a FIFO that never ends, /dev/zero or a link there: the file
// is opened with openBeneath (a link: syscall.ELOOP; a FIFO: no wait).
func readRegular(d *os.Root, name string) ([]byte, os.FileInfo, error) {
	f, err := openBeneath(d, name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, &notRegularError{mode: fi.Mode().Type()}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSidecar+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxSidecar {
		return nil, nil, errTooLarge
	}
	return data, fi, nil
}

// notRegularError is readRegular's refusal of a file that is not regular.
type notRegularError struct{ mode fs.FileMode }

func (e *notRegularError) Error() string { return fmt.Sprintf("not a regular file (%s)", e.mode) }

// errTooLarge is readRegular's refusal of a file over maxSidecar bytes.
var errTooLarge = fmt.Errorf("over %d bytes", maxSidecar)

// maxSidecar bounds a sidecar read into memory; PGHoard's are a few
// hundred bytes.
const maxSidecar = 1 << 20

// parseSidecar decodes a sidecar: a JSON object whose values are strings
// (PGHoard's), or numbers and booleans (read as their text); nulls are
// dropped, and so is "_hash".
func parseSidecar(data []byte) (Metadata, error) {
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, errors.New("not a JSON object")
	}
	md := make(Metadata, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case nil:
		case string:
			md[k] = v
		case float64, bool:
			md[k] = fmt.Sprint(v)
		default:
			return nil, fmt.Errorf("value of %q is not a string", k)
		}
	}
	// Both are the store's bookkeeping, not the writer's metadata: every
	// store returns what was put, and Stat reports the size.
	delete(md, hashKey)
	delete(md, contentLengthKey)
	return md, nil
}

// notFound is the error for a key without a sidecar: ErrNotFound when the
// storage directory answers, an error when it is missing or empty, which is
// what an unmounted volume looks like. Without this check wal-fetch would
// tell PostgreSQL that the archive ends here, and recovery would stop and
// promote short of the archived WAL.
func (l *Local) notFound(op, key string) error {
	d, err := os.Open(l.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %s: %w", op, key, &permanentError{
				msg: fmt.Sprintf("local storage directory %s does not exist: is its volume mounted? (check object_storage.directory)", l.root),
				err: err,
			})
		}
		return localErr(op, key, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if len(names) == 0 {
		return fmt.Errorf("%s %s: %w", op, key, &permanentError{
			msg: fmt.Sprintf("local storage directory %s is empty or unreadable: is its volume mounted? (check object_storage.directory)", l.root),
			err: fmt.Errorf("no entries: %v", err),
		})
	}
	return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
}

// openFile opens the object file base in its directory d (readDir) of a
// key whose sidecar was read. A missing file is a damaged store, not a
// missing object, unless the sidecar is gone too (a Delete removes the
// sidecar first). It opens with openBeneath: a link is refused (hoard and
// PGHoard never make one; it may lead out of the store, to /etc/shadow),
// and a FIFO, which someone who can write the storage directory may have
// put there, is refused as not a regular file without waiting for a
// writer.
func (l *Local) openFile(op, key string, d *os.Root, base string) (*os.File, os.FileInfo, error) {
	p := filepath.Join(d.Name(), base)
	// A socket, a device or a directory is not opened at all (a socket's
	// open fails with ENXIO, a device's may act on it); the file's own
	// Stat below catches one put there since.
	if fi, err := d.Lstat(base); err == nil && !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, notRegular(p, fi.Mode()))
	}
	f, err := openBeneath(d, base)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if _, serr := d.Lstat(base + sidecarSuffix); errors.Is(serr, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
			}
			return nil, nil, fmt.Errorf("%s %s: %w", op, key, errSidecarAlone(p, err))
		case errors.Is(err, syscall.ELOOP):
			return nil, nil, fmt.Errorf("%s %s: %w", op, key, &permanentError{
				msg: fmt.Sprintf("%s is a symbolic link, which hoard does not read: someone who can write the storage directory "+
					"planted it, or it was made by hand; replace it with the object's file", p),
				err:     err,
				damaged: true,
			})
		}
		return nil, nil, localErr(op, key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, localErr(op, key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, notRegular(p, fi.Mode()))
	}
	return f, fi, nil
}

// Open returns the object's file, advised for sequential reading, and
// its metadata: its sidecar's, or that of the sidecar temp file that
// completes an interrupted replace (see replace.go). The object's time is
// the later change time of the file and the sidecar actually read.
func (l *Local) Open(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	f, fi, md, sfi, err := l.openObject("open", key, true)
	if err != nil {
		return nil, Object{}, err
	}
	adviseSequential(f)
	return f, Object{Key: key, Size: fi.Size(), Modified: fi.ModTime(), Changed: later(changeTime(fi), changeTime(sfi)), Metadata: md}, nil
}

// OpenRange returns a section of the object's file.
func (l *Local) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	d, base, err := l.readDir("open", key, true)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if _, _, err := l.readSidecar("open", key, d, base, true); err != nil {
		return nil, err
	}
	f, _, err := l.openFile("open", key, d, base)
	if err != nil {
		return nil, err
	}
	if length < 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			_ = f.Close()
			return nil, localErr("open", key, err)
		}
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, offset, length), f}, nil
}

// Stat returns the file's size, the later change time of the file and the
// sidecar Open would read, and that sidecar's metadata.
func (l *Local) Stat(ctx context.Context, key string) (Object, error) {
	f, fi, md, sfi, err := l.openObject("stat", key, false)
	if err != nil {
		return Object{}, err
	}
	_ = f.Close()
	return Object{Key: key, Size: fi.Size(), Modified: fi.ModTime(), Changed: later(changeTime(fi), changeTime(sfi)), Metadata: md}, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// List walks the directory holding prefix and reports, in lexical key order,
// every file that has a sidecar. A sidecar whose object file is a FIFO,
// a socket, a device or a directory is reported too, with Object.Damaged
// saying so (oddObject), rather than left out in silence; a directory is
// still walked. A sidecar whose object file is missing names no object,
// as in PGHoard's listing: OnSkip hears of it (sidecarAlone). Keys are collected and sorted first:
// directory order differs from key order ("a-b" < "a/x" but "a" < "a-b").
// On the way it removes temp files that have not been written for
// StaleTempAge: what a killed Put or Create left behind, never an object.
//
// It walks through an os.Root of the storage directory and follows no
// link below the prefix's directory: an object file that is a link is no
// object (one whose sidecar is a link is listed, and refused when read),
// and a directory that is one is not entered (a link to / or a loop would
// have it walk the whole file system, /proc included).
// The prefix's directory may be reached through links that stay in the
// store (see objectDir); one that leads out fails the listing, naming it,
// rather than list what lies outside (retention deletes by what it lists)
// or nothing (an archive that looks empty).
func (l *Local) List(ctx context.Context, prefix string, fn func(Object) error) error {
	root, err := os.OpenRoot(l.root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return localErr("list", prefix, err)
	}
	defer root.Close()
	start := "."
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = prefix[:i]
		if _, err := root.Stat(filepath.FromSlash(start)); err != nil {
			if link := linkOut(root, filepath.FromSlash(start)); link != "" {
				return fmt.Errorf("list %s: %w", prefix, errLinkOut(l.root, link, err))
			}
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return localErr("list", prefix, err)
		}
	}
	var objs []Object
	now := time.Now()
	err = fs.WalkDir(root.FS(), start, func(key string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if key == start {
			return nil
		}
		if hidden(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			if tempFile(d.Name()) && d.Type().IsRegular() {
				removeStale(root, key, d, now)
			} else {
				l.sidecarAlone(root, key, prefix)
			}
			return nil
		}
		if d.IsDir() {
			if strings.HasPrefix(key, prefix) {
				if o, ok := l.oddObject(root, key, d); ok {
					objs = append(objs, o)
				}
			}
			if !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 && l.OnSkip != nil && (strings.HasPrefix(key, prefix) || strings.HasPrefix(prefix, key+"/")) {
			l.OnSkip(key, skippedLink(root, key))
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		if !d.Type().IsRegular() {
			if d.Type()&fs.ModeSymlink == 0 {
				if o, ok := l.oddObject(root, key, d); ok {
					objs = append(objs, o)
				}
			}
			return nil
		}
		// The sidecar is not followed, only looked for: one that is not a
		// regular file (a link, a FIFO) leaves the object listed, and
		// damaged, which reading it reports.
		sfi, err := root.Lstat(filepath.FromSlash(key + sidecarSuffix))
		if err != nil {
			return nil // no sidecar: not a complete object
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed while listing
		}
		objs = append(objs, Object{Key: key, Size: fi.Size(), Modified: fi.ModTime(), Changed: later(changeTime(fi), changeTime(sfi))})
		return nil
	})
	if err != nil {
		return localErr("list", prefix, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

// oddObject returns, for List, the object that the sidecar of key names
// when key, d in root, is a FIFO, a socket, a device or a directory: no
// writer leaves one under an object's name (someone who can write the
// storage directory, a mistake by hand or a damaged file system did), and
// no read returns it (openFile). It is listed, Damaged saying what is
// there, so that a listing shows it rather than leave it out in silence
// (hoard list, verify and retention name it); without a sidecar it is no
// object. Nothing is opened: a FIFO would wait for a writer.
func (l *Local) oddObject(root *os.Root, key string, d fs.DirEntry) (Object, bool) {
	sfi, err := root.Lstat(filepath.FromSlash(key + sidecarSuffix))
	if err != nil {
		return Object{}, false
	}
	fi, err := d.Info()
	if err != nil {
		return Object{}, false // removed while listing
	}
	return Object{Key: key, Modified: fi.ModTime(), Changed: later(changeTime(fi), changeTime(sfi)),
		Damaged: notRegular(filepath.Join(l.root, filepath.FromSlash(key)), fi.Mode())}, true
}

// sidecarAlone tells OnSkip of the sidecar key of root when its object
// file is missing. PGHoard's delete removes the object's file before its
// sidecar, so a PGHoard stopped between the two leaves that; so do a disk
// that lost the file and a removal by hand. hoard's Delete removes the
// sidecar first and its writers make the file before the sidecar. Such a
// sidecar names no object (PGHoard lists none there either), and a site
// that PGHoard once served must not stop listing, restoring or applying
// retention for one: List leaves it out and OnSkip says so. A read of its
// key still fails naming it (errSidecarAlone).
func (l *Local) sidecarAlone(root *os.Root, key, prefix string) {
	obj, ok := strings.CutSuffix(key, sidecarSuffix)
	if !ok || l.OnSkip == nil || hidden(path.Base(obj)) || !strings.HasPrefix(obj, prefix) {
		return
	}
	if _, err := root.Lstat(filepath.FromSlash(obj)); !errors.Is(err, fs.ErrNotExist) {
		return // listed by its own entry, or not known
	}
	if _, err := root.Lstat(filepath.FromSlash(key)); err != nil {
		return // deleted while listing
	}
	l.OnSkip(obj, "a .metadata sidecar without its object file, which is no object and is not listed: PGHoard leaves one when it "+
		"is stopped while deleting that object, and a disk that lost the file or a removal by hand leave one too. If the object "+
		"was deleted on purpose (retention), remove "+filepath.Join(l.root, filepath.FromSlash(key))+"; if it should be there, put its file back from another copy")
}

// notRegular is the error for the object file p that is not a regular
// file (mode m): it says what is there, and what to do.
func notRegular(p string, m fs.FileMode) error {
	kind := "a " + m.Type().String()
	switch {
	case m&fs.ModeNamedPipe != 0:
		kind = "a FIFO"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	case m&fs.ModeCharDevice != 0:
		kind = "a character device"
	case m&fs.ModeDevice != 0:
		kind = "a device"
	case m.IsDir():
		kind = "a directory"
	}
	return fmt.Errorf("%s is %s, not a regular file, which hoard and PGHoard never leave under an object's name: someone who "+
		"can write the storage directory put it there, it was made by hand, or the file system is damaged. hoard reads and "+
		"deletes nothing there: move it away and put the object's file back, or remove it with its .metadata sidecar: %w",
		p, kind, ErrObjectDamaged)
}

// errSidecarAlone is the error for the object file p that is missing
// beside its sidecar.
func errSidecarAlone(p string, err error) error {
	return &permanentError{
		msg:     fmt.Sprintf("%s has a metadata sidecar but no object file: the local storage is damaged", p),
		err:     err,
		damaged: true,
	}
}

// skippedLink says, for OnSkip, what List leaves out at the symbolic
// link key of root, why, and what the operator does about it. List
// enters no linked directory below the one it starts in (so that no link
// leads it out of the storage directory or round a loop), and takes no
// link for an object file; reads, and a listing that starts at or below a
// link to a directory inside the storage directory, follow that link
// (objectDir, os.Root). os.Root's Stat tells a link out, which it refuses
// to follow, from one inside.
func skippedLink(root *os.Root, key string) string {
	fi, err := root.Stat(filepath.FromSlash(key))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "a symbolic link to nothing: there is no object under this name; remove it (hoard and PGHoard make no links in a store)"
	case err != nil:
		return "a symbolic link out of the storage directory, where hoard lists, reads and writes nothing: nothing under this name is listed " +
			"or can be read. Made by hand (a directory moved to another disk)? Move what it names back under this name in the storage directory. " +
			"Nobody made it? Someone who can write the storage directory planted it: remove it"
	case fi.IsDir():
		return "a symbolic link to a directory inside the storage directory: a listing that starts above it, as this one did, does not " +
			"enter it and leaves out every object under this name (archive-sync copying the whole site copies none of them); " +
			"reads follow it, and so does a listing of the prefix " + strconv.Quote(key+"/") + ". Move the directory it names to " +
			"this name in place of the link, so that every listing sees them"
	default:
		return "a symbolic link where an object's file belongs: hoard reads no object through a link, so this is no object and is not " +
			"listed. Replace it with the file it names, or remove it if nobody made it"
	}
}

// removeStale removes the temp file name of root if it was last written
// StaleTempAge before now, unless it is the sidecar temp named for the
// object file now in place (replaceName), which completes an interrupted
// replace: the next Put of the key removes it. Errors are ignored: a
// reader without write access leaves the housekeeping to a writer.
func removeStale(root *os.Root, name string, d fs.DirEntry, now time.Time) {
	fi, err := d.Info()
	if err != nil || now.Sub(fi.ModTime()) <= StaleTempAge {
		return
	}
	if completes(d.Name(), func(base string) (os.FileInfo, error) {
		return root.Lstat(filepath.FromSlash(path.Join(path.Dir(name), base)))
	}) {
		return
	}
	_ = root.Remove(filepath.FromSlash(name))
}

// Delete removes the sidecar first (the object disappears at once), then
// the file, in the directory objectDir opens: never through a link out of
// the store. Missing files are fine. A directory below the storage
// directory's own that is left with nothing but its lock file goes too
// (removeEmptyDir): a deleted backup, or one abandoned halfway, leaves no
// basebackup_chunk/<name> folder behind.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := checkFileKey(key, "a local file"); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	d, base, err := l.objectDir(ctx, key, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return localErr("delete", key, err)
	}
	defer d.Close()
	// A FIFO, socket, device or directory under the object's name is no
	// object hoard stored (oddObject): it stays, with its sidecar, and
	// the operator is told. A directory is never entered.
	if fi, err := d.Lstat(base); err == nil && !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("delete %s: %w", key, notRegular(filepath.Join(d.Name(), base), fi.Mode()))
	}
	for _, name := range []string{base + sidecarSuffix, base} {
		if err := d.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return localErr("delete", key, err)
		}
	}
	if err := SyncRoot(d); err != nil {
		return localErr("delete", key, err)
	}
	// A directory another Delete removed meanwhile reads as missing.
	if err := l.removeEmptyDir(ctx, key, d); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return localErr("delete", key, err)
	}
	return nil
}

// removeEmptyDir removes d, the directory of key below the storage
// directory (never the storage directory itself), when it holds nothing
// but its lock file (createLockName): the folder of a backup whose chunks
// are all deleted. Only the first two names of d are read, so the
// directory of many WAL segments costs no full read per Delete.
//
// A writer may be about to store into d. It holds d's create lock from
// its first link or rename, and makes its temp file in d before that, so
// under the lock a d with no other entry has no writer between its links
// and its fsync: the lock file goes, then d (rmdir fails on a directory
// that is not empty: a writer's temp file made since is kept, with the
// directory). A writer that opened d before it went makes no entry in it
// (ENOENT) and makes the directory again (openTemp). A writer that opened
// the old lock file and waits for it finds, once it holds it, that the
// file is no longer d's (lockDir compares them) and takes d's new lock
// file instead, so no two writers ever hold d's lock at once. A Sync of a
// deleted object finds no directory (ErrNotFound), which is right.
func (l *Local) removeEmptyDir(ctx context.Context, key string, d *os.Root) error {
	dir := filepath.Dir(filepath.FromSlash(key))
	if dir == "." {
		return nil
	}
	if empty, err := onlyLockFile(d); err != nil || !empty {
		return err
	}
	unlock, err := l.lockDir(ctx, d)
	if err != nil {
		return err
	}
	defer unlock()
	if empty, err := onlyLockFile(d); err != nil || !empty {
		return err
	}
	root, err := os.OpenRoot(l.root)
	if err != nil {
		return err
	}
	defer root.Close()
	parent, err := root.OpenRoot(filepath.Dir(dir))
	if err != nil {
		return err
	}
	defer parent.Close()
	// Only the directory d itself goes, never a symbolic link that led
	// to it (a site's folder moved within the storage directory and
	// linked from its old name: the link stays).
	fi, err := parent.Lstat(filepath.Base(dir))
	if err != nil {
		return err
	}
	dfi, err := d.Stat(".")
	if err != nil {
		return err
	}
	if !fi.IsDir() || !os.SameFile(fi, dfi) {
		return nil
	}
	if err := d.Remove(createLockName); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	switch err := parent.Remove(filepath.Base(dir)); {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST):
		// Gone already, or a writer made a temp file since the check:
		// it stays, and the writer makes its lock file again.
		return nil
	case err != nil:
		return err
	}
	return SyncRoot(parent)
}

// onlyLockFile reports whether the directory d holds no entry but its
// lock file, reading at most two names.
func onlyLockFile(d *os.Root) (bool, error) {
	f, err := d.Open(".")
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return len(names) == 0 || len(names) == 1 && names[0] == createLockName, nil
}

// Close does nothing: Local holds no resources.
func (l *Local) Close() error { return nil }

// localErr maps file errors to the Store's errors.
func localErr(op, key string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	case errors.Is(err, ErrPermanent):
		return fmt.Errorf("%s %s: %w", op, key, err) // it says what to check
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %s: %w", op, key, &permanentError{msg: "permission denied: check the owner and mode of the storage directory", err: err})
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}
