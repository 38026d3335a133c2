package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/sftp"
)

// Replacing an object of the local or SFTP store takes two renames, the
// file's and the sidecar's: no file system renames two names at once. Put
// renames the new file over the old one first, then the new sidecar over
// the old one. Between the two, after a crash there or when the second
// rename fails, the key holds the new bytes and the old sidecar, and the
// new sidecar is still under its temp name. That name is the replace's
// name (replaceName): it is derived from the new file's size and
// modification time, which the rename keeps, so a reader finds it with one
// lookup from the file it opened, and then uses it when it describes that
// file (describes: its Content-Length and "_hash" are the file's). The
// interrupted replace is rolled forward: the key always holds a complete
// copy, the old one until the new file is in place, then the new one.
//
// PGHoard reads the sidecar only, so it sees such a key with the old
// metadata until the next Put of the key.

// maxReplaceNames bounds the seconds a Put moves its file's modification
// time on to find a free replace name; past it the Put fails.
const maxReplaceNames = 16

// errReplaceNamesTaken is a Put's error when every replace name its
// file could take (maxReplaceNames seconds) is held by others.
func errReplaceNamesTaken(base string) error {
	return fmt.Errorf("the sidecar temp names of %s for %d seconds are taken: %w", base, maxReplaceNames, fs.ErrExist)
}

// replaceSep separates the base name in a replace's sidecar temp name from
// the size and time of the file it describes.
const replaceSep = sidecarTemp + "-r"

// replaceName is the name of the sidecar temp file that describes a file
// base of size bytes modified at mtime: "."+base+".metadata_tmp-r<size>-
// <mtime in whole seconds>". Like every sidecar temp it is hidden from
// PGHoard's and hoard's listings. Whole seconds are what SFTP reports, so
// the local store and an SFTP store over the same directory name it alike.
// Two Puts of one key in flight at once whose files have the same size and
// second would want the same name, as would a Put whose file matches the
// one an interrupted Put left: the later Put moves its file's modification
// time on a second (fsynced) until the name is free, up to maxReplaceNames
// times, so that every file under the key has its own replace name. A
// shared or random name would lose the roll forward: the Put whose file
// stays under the key may be the one that did not rename its sidecar,
// and the reader would pair its bytes with the other Put's metadata or
// the old one.
func replaceName(base string, size int64, mtime time.Time) string {
	return "." + base + replaceSep + strconv.FormatInt(size, 10) + "-" + strconv.FormatInt(mtime.Unix(), 10)
}

// replaceBase returns the base name of the file a replace's sidecar temp
// name is for.
func replaceBase(name string) (string, bool) {
	i := strings.LastIndex(name, replaceSep)
	if i < 1 || name[0] != '.' {
		return "", false
	}
	return name[1:i], true
}

// describes reports whether sidecar, a sidecar's bytes, records size and
// the SHA-256 sum as the stored bytes' count and hash.
func describes(sidecar []byte, size int64, sum []byte) bool {
	var raw map[string]any
	if err := json.Unmarshal(sidecar, &raw); err != nil {
		return false
	}
	n, _ := raw[contentLengthKey].(string)
	h, _ := raw[hashKey].(string)
	return n == strconv.FormatInt(size, 10) && h == hex.EncodeToString(sum)
}

// completedSidecar returns the metadata and FileInfo of the sidecar temp
// that completes the object file f, base in d (size and time in fi), found
// by its replace name; ok is false when there is none or it does not
// describe f, and the object is read with its sidecar, as it is. Only then
// is f's content hashed, from its start whatever its offset.
func (l *Local) completedSidecar(d *os.Root, base string, f *os.File, fi os.FileInfo) (md Metadata, sfi os.FileInfo, ok bool) {
	data, sfi, err := readRegular(d, replaceName(base, fi.Size(), fi.ModTime()))
	if err != nil {
		return nil, nil, false
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size())); err != nil || !describes(data, fi.Size(), h.Sum(nil)) {
		return nil, nil, false
	}
	if md, err = parseSidecar(data); err != nil {
		return nil, nil, false
	}
	return md, sfi, true
}

// completedSidecar is Local's completedSidecar for the SFTP store: the
// metadata of the sidecar temp that completes the object file p (size and
// time in fi), when there is one and it describes p.
func (s *SFTP) completedSidecar(c *sftp.Client, p string, fi os.FileInfo) (Metadata, bool) {
	dir, base := path.Split(p)
	name := dir + replaceName(base, fi.Size(), fi.ModTime())
	if tfi, err := c.Lstat(name); err != nil || !tfi.Mode().IsRegular() || tfi.Size() > maxSidecar {
		return nil, false
	}
	data, err := readAllRemote(c, name, maxSidecar)
	if err != nil {
		return nil, false
	}
	f, err := c.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := f.WriteTo(h); err != nil || !describes(data, fi.Size(), h.Sum(nil)) {
		return nil, false
	}
	md, err := parseSidecar(data)
	return md, err == nil
}

// readAllRemote reads at most limit bytes of the file name.
func readAllRemote(c *sftp.Client, name string, limit int64) ([]byte, error) {
	f, err := c.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// completes reports whether the temp file name is the sidecar temp named
// for the file it would complete; stat returns that file's FileInfo from
// its base name (an error when there is none).
func completes(name string, stat func(base string) (os.FileInfo, error)) bool {
	base, ok := replaceBase(name)
	if !ok {
		return false
	}
	fi, err := stat(base)
	return err == nil && replaceName(base, fi.Size(), fi.ModTime()) == name
}

// readAttempts bounds how often openObject reads a key again that Puts
// keep replacing under it.
const readAttempts = 5

// openObject opens the object file of key with the metadata that belongs
// to it and the FileInfo of both (see readSidecar and completedSidecar).
// The sidecar is read before the file is opened: a Put of the key that
// completes between the two would pair the new bytes with the old
// metadata. So, unless the metadata came from a sidecar temp that was
// checked against the file's bytes, both names must still name the files
// read once the file is open; when either changed, the key is read again.
func (l *Local) openObject(op, key string, mounted bool) (f *os.File, fi os.FileInfo, md Metadata, sfi os.FileInfo, err error) {
	d, base, err := l.readDir(op, key, mounted)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer d.Close()
	for range readAttempts {
		if md, sfi, err = l.readSidecar(op, key, d, base, mounted); err != nil {
			return nil, nil, nil, nil, err
		}
		if l.beforeOpen != nil {
			l.beforeOpen()
		}
		if f, fi, err = l.openFile(op, key, d, base); err != nil {
			return nil, nil, nil, nil, err
		}
		if cmd, cfi, ok := l.completedSidecar(d, base, f, fi); ok {
			return f, fi, cmd, cfi, nil
		}
		if unchanged(d, base+sidecarSuffix, sfi) && unchanged(d, base, fi) {
			return f, fi, md, sfi, nil
		}
		_ = f.Close()
	}
	return nil, nil, nil, nil, fmt.Errorf("%s %s: replaced while read, %d times in a row", op, key, readAttempts)
}

// unchanged reports whether name in d still names the file fi describes
// (a link there does not: the files read were opened without following
// one). The size and modification time guard against the inode number of
// a file renamed away being reused at once.
func unchanged(d *os.Root, name string, fi os.FileInfo) bool {
	now, err := d.Lstat(name)
	return err == nil && os.SameFile(now, fi) && now.Size() == fi.Size() && now.ModTime().Equal(fi.ModTime())
}
