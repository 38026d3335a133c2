package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// writeControl writes the control object's tar into a spool in dir, in
// PGHoard's order: the manifest, pg_control, backup_label, then hoard's
// additions tablespace_map (when the cluster has tablespaces) and
// PostgreSQL's backup_manifest (oc.pgManifest, a spool), then the
// directories whose contents chunks leave out. Neither the manifest's JSON
// nor the tar is held whole in memory: both grow with the number of files.
// The caller closes the spool.
func writeControl(dir string, m *archive.Manifest, oc *outcome) (*spool, error) {
	endTime := oc.endTime
	js, err := newSpool(dir, "manifest of the control object")
	if err != nil {
		return nil, err
	}
	defer js.Close()
	if err := writeManifest(js, m, oc.chunkFiles); err != nil {
		return nil, err
	}
	ctl, err := newSpool(dir, "control tar")
	if err != nil {
		return nil, err
	}
	if err := writeControlTar(ctl, m, oc, endTime, js); err != nil {
		ctl.Close()
		return nil, err
	}
	return ctl, nil
}

func writeControlTar(ctl *spool, m *archive.Manifest, oc *outcome, endTime time.Time, js *spool) error {
	tw := tar.NewWriter(ctl)
	add := func(h *tar.Header, size int64, data io.Reader) error {
		h.Size = size
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("basebackup: control tar %s: %w", h.Name, err)
		}
		if _, err := io.Copy(tw, data); err != nil {
			return fmt.Errorf("basebackup: control tar %s: %w", h.Name, err)
		}
		return nil
	}
	addSpool := func(h *tar.Header, s *spool) error {
		r, err := s.reader()
		if err != nil {
			return err
		}
		return add(h, s.size(), r)
	}
	addBytes := func(h *tar.Header, data []byte) error {
		return add(h, int64(len(data)), bytes.NewReader(data))
	}
	file := func(name string, mem *member) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mem.h.Mode, Uid: mem.h.Uid, Gid: mem.h.Gid, ModTime: mem.h.ModTime}
	}
	if err := addSpool(&tar.Header{Typeflag: tar.TypeReg, Name: archive.ManifestName, Mode: 0o600, ModTime: endTime}, js); err != nil {
		return err
	}
	if err := addBytes(file(archive.ControlPGControl, oc.pgControl), oc.pgControl.data); err != nil {
		return err
	}
	if err := addBytes(file(archive.ControlBackupLabel, oc.backupLabel), oc.backupLabel.data); err != nil {
		return err
	}
	if oc.tablespaceMap != nil {
		if err := addBytes(file(archive.ControlTablespaceMap, oc.tablespaceMap), oc.tablespaceMap.data); err != nil {
			return err
		}
	}
	mh := &tar.Header{Typeflag: tar.TypeReg, Name: archive.ControlPGManifest, Mode: 0o600, ModTime: endTime}
	if oc.pgManifest == nil {
		// Only a test stores a control object without one: an empty member.
		if err := addBytes(mh, nil); err != nil {
			return err
		}
	} else if err := addSpool(mh, oc.pgManifest); err != nil {
		return err
	}
	for _, d := range archive.ControlEmptyDirs {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o700, ModTime: endTime}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("basebackup: control tar %s: %w", d, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("basebackup: control tar: %w", err)
	}
	return nil
}

// chunksField is how json.Marshal writes a Manifest's empty chunk list. A
// quote inside a JSON string is escaped, so only the field's own key
// matches it.
var chunksField = []byte(`"chunks":[]`)

// filesField is the same for a ManifestChunk's empty list of files.
var filesField = []byte(`"files":[]`)

// fileLister hands fn the names of the members of chunk i (an index of
// the manifest's chunks), in order, for a backup whose ManifestChunks do
// not hold their Files: the names are read from where the backup kept
// them (a spool, the scan's entries). writeManifest calls it once for
// each chunk, in order.
type fileLister func(i int, fn func(name string) error) error

// writeManifest writes m as m.Marshal (json.Marshal) does, byte for byte,
// without building it whole in memory: the chunks' lists of files, which
// grow with the number of files, are written a name at a time. With files
// set, the names come from it, as if each chunk's Files held them (nil
// for a chunk of none).
func writeManifest(w io.Writer, m *archive.Manifest, files fileLister) error {
	enc := newJSONWriter(w)
	if m.Chunks == nil {
		js, err := m.Marshal()
		if err != nil {
			return fmt.Errorf("basebackup: encode manifest: %w", err)
		}
		enc.raw(js)
		return enc.err
	}
	head := *m
	head.Chunks = []archive.ManifestChunk{}
	before, after, err := splitJSON(&head, chunksField)
	if err != nil {
		return err
	}
	enc.raw(before)
	for i := range m.Chunks {
		if i > 0 {
			enc.raw([]byte{','})
		}
		ch := m.Chunks[i]
		names := ch.Files
		if files == nil && names == nil {
			enc.value(&ch)
			continue
		}
		ch.Files = []string{}
		cb, ca, err := splitJSON(&ch, filesField)
		if err != nil {
			return err
		}
		if files == nil {
			enc.raw(cb)
			for j := range names {
				if j > 0 {
					enc.raw([]byte{','})
				}
				enc.value(&names[j])
			}
			enc.raw(ca)
			continue
		}
		n := 0
		err = files(i, func(name string) error {
			if n == 0 {
				enc.raw(cb)
			} else {
				enc.raw([]byte{','})
			}
			n++
			enc.value(&name)
			return enc.err
		})
		if err != nil {
			return err
		}
		if n == 0 {
			// A chunk of no names had a nil list: json.Marshal's null.
			ch.Files = nil
			enc.value(&ch)
			continue
		}
		enc.raw(ca)
	}
	enc.raw(after)
	return enc.err
}

// splitJSON marshals v, whose JSON holds field (a key and its empty
// list), and returns what comes before the list's closing bracket and
// from it on. The first match is the field: no key before it holds one.
func splitJSON(v any, field []byte) (before, after []byte, err error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, nil, fmt.Errorf("basebackup: encode manifest: %w", err)
	}
	i := bytes.Index(js, field)
	if i < 0 {
		return nil, nil, fmt.Errorf("basebackup: encode manifest: %s not found", field)
	}
	cut := i + len(field) - 1
	return js[:cut], js[cut:], nil
}

// jsonWriter writes JSON values one at a time into w through a buffer it
// reuses, encoded as json.Marshal encodes them (HTML-safe), and keeps the
// first error.
type jsonWriter struct {
	w   io.Writer
	buf bytes.Buffer
	enc *json.Encoder
	err error
}

func newJSONWriter(w io.Writer) *jsonWriter {
	j := &jsonWriter{w: w}
	j.enc = json.NewEncoder(&j.buf)
	return j
}

func (j *jsonWriter) raw(p []byte) {
	if j.err == nil {
		_, j.err = j.w.Write(p)
	}
}

// value writes v (a pointer, so that passing it allocates nothing).
func (j *jsonWriter) value(v any) {
	if j.err != nil {
		return
	}
	j.buf.Reset()
	if err := j.enc.Encode(v); err != nil {
		j.err = fmt.Errorf("basebackup: encode manifest: %w", err)
		return
	}
	// Encode ends each value with a newline that Marshal does not write.
	j.raw(bytes.TrimSuffix(j.buf.Bytes(), []byte{'\n'}))
}

// nameLayout is the backup name's time part: the UTC start time to the
// minute (PGHoard's YYYY-MM-DD_HH-MM_N).
const nameLayout = "2006-01-02_15-04"

// chooseName returns the name of a backup started at start, claimed in
// the store for it (archive.ClaimName; the caller deletes the claim, key
// archive.Layout.NameClaimKey, once the control object is stored or with
// the chunks of a failed backup): YYYY-MM-DD_HH-MM_N in UTC, PGHoard's
// form, with N counted from the start's milliseconds within the minute
// (seconds × 1000 + milliseconds) and raised past every number a listed
// backup of the site uses, under which chunks are stored (those of a
// backup that died before it could clean up), or that another writer
// claimed first. PGHoard counts N from 0, so a name came back once its
// backup was deleted, and a preservation request left for the deleted
// backup protected the new one; with N from the start time, a name
// recurs only if the clock goes back to the same millisecond.
func chooseName(ctx context.Context, a *archive.Archive, start time.Time) (string, error) {
	backups, err := a.ScanBackups(ctx)
	if err != nil {
		return "", fmt.Errorf("basebackup: %w", err)
	}
	used := map[string]bool{}
	for _, b := range backups.Sound {
		used[b.Name] = true
	}
	// A damaged backup's object is still stored: never write over it.
	for _, d := range backups.Damaged {
		used[d.Name] = true
	}
	base := start.UTC().Format(nameLayout)
	first := start.Second()*1000 + start.Nanosecond()/int(time.Millisecond)
	for n := first; ; n++ {
		name := fmt.Sprintf("%s_%d", base, n)
		if used[name] {
			continue
		}
		leftover, err := hasChunks(ctx, a, name)
		if err != nil {
			return "", err
		}
		if leftover {
			continue
		}
		claimed, err := a.ClaimName(ctx, name)
		if err != nil {
			return "", fmt.Errorf("basebackup: %w", err)
		}
		if claimed {
			return name, nil
		}
	}
}

// errFound stops a listing at its first object.
var errFound = fmt.Errorf("found")

// hasChunks reports whether any object is stored under the backup's chunk
// folder.
func hasChunks(ctx context.Context, a *archive.Archive, name string) (bool, error) {
	prefix := strings.TrimSuffix(a.Layout.ChunkKey(archive.ChunkFilename(name, 1)), archive.ChunkFilename(name, 1)) + name + "/"
	err := a.Store.List(ctx, prefix, func(storage.Object) error { return errFound })
	switch {
	case err == errFound:
		return true, nil
	case err != nil:
		return false, fmt.Errorf("basebackup: list %s: %w", prefix, err)
	}
	return false, nil
}
