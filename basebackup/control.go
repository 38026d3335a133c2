package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// controlTar builds the control object's tar, in PGHoard's order: the
// manifest, pg_control, backup_label, then hoard's additions
// tablespace_map (when the cluster has tablespaces) and PostgreSQL's
// backup_manifest, then the directories whose contents chunks leave out.
func controlTar(m *archive.Manifest, oc *outcome) ([]byte, error) {
	endTime := oc.endTime
	js, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("basebackup: encode manifest: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data []byte) error {
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("basebackup: control tar %s: %w", h.Name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("basebackup: control tar %s: %w", h.Name, err)
		}
		return nil
	}
	file := func(name string, mem *member) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mem.h.Mode, Uid: mem.h.Uid, Gid: mem.h.Gid, ModTime: mem.h.ModTime}
	}
	if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: archive.ManifestName, Mode: 0o600, ModTime: endTime}, js); err != nil {
		return nil, err
	}
	if err := add(file(archive.ControlPGControl, oc.pgControl), oc.pgControl.data); err != nil {
		return nil, err
	}
	if err := add(file(archive.ControlBackupLabel, oc.backupLabel), oc.backupLabel.data); err != nil {
		return nil, err
	}
	if oc.tablespaceMap != nil {
		if err := add(file(archive.ControlTablespaceMap, oc.tablespaceMap), oc.tablespaceMap.data); err != nil {
			return nil, err
		}
	}
	mh := &tar.Header{Typeflag: tar.TypeReg, Name: archive.ControlPGManifest, Mode: 0o600, ModTime: endTime}
	if err := add(mh, oc.pgManifest); err != nil {
		return nil, err
	}
	for _, d := range archive.ControlEmptyDirs {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o700, ModTime: endTime}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("basebackup: control tar %s: %w", d, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("basebackup: control tar: %w", err)
	}
	return buf.Bytes(), nil
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
