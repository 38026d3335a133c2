package archive

import (
	"fmt"
	"path"
	"strings"

	"github.com/hoardbackup/hoard/wal"
)

// Folders of a site's archive, as PGHoard names them (pghoard-format.md c.1).
const (
	XLogDir            = "xlog"
	TimelineDir        = "timeline"
	BasebackupDir      = "basebackup"
	BasebackupChunkDir = "basebackup_chunk"
)

// SiteDirs are the folders directly under a site's prefix that hold its
// objects, PGHoard's (pghoard-format.md c.1) and hoard's own (hoard/:
// signed markers, check probes). Everything a site stores is in one of
// them; what lies elsewhere under its prefix is not the site's (another
// site's, whose prefix is below this one's). Retention lists and deletes
// inside them as the site's own: another site's objects there would be
// taken for chunk folders of interrupted backups and deleted.
var SiteDirs = []string{XLogDir, TimelineDir, BasebackupDir, BasebackupChunkDir,
	DeltaDir, basebackupDeltaChunkDir, PreservationDir, "hoard"}

// ControlSuffix ends the key of a pghoard-bb-v2 control object:
// basebackup/<name>.00000000.pghoard.
const ControlSuffix = ".00000000.pghoard"

// Layout maps the names of a site's files to storage keys. Prefix is the
// site's prefix (PGHoard's site "prefix", by default the site name); the
// storage-wide object_storage prefix is the Store's business.
type Layout struct {
	Prefix string
}

func (l Layout) join(dir, name string) string {
	if l.Prefix == "" {
		return dir + "/" + name
	}
	return strings.TrimSuffix(l.Prefix, "/") + "/" + dir + "/" + name
}

// Dir returns the key prefix of one of the site's folders, ending in "/".
func (l Layout) Dir(dir string) string { return l.join(dir, "") }

// WALKey returns the key of a WAL file: segments, .partial and .backup files
// go under xlog/, .history files under timeline/.
func (l Layout) WALKey(name string) string {
	if wal.IsHistoryFile(name) {
		return l.join(TimelineDir, name)
	}
	return l.join(XLogDir, name)
}

// BackupKey returns the key of a backup's main (control) object. name is the
// backup name with or without the ".00000000.pghoard" suffix.
func (l Layout) BackupKey(name string) string {
	return l.join(BasebackupDir, BackupName(name)+ControlSuffix)
}

// ChunkFilename returns a chunk's name relative to basebackup_chunk/, as the
// control object's JSON records it: <bb>/<bb>.%08d.pghoard, numbered from 1.
func ChunkFilename(backup string, n int) string {
	b := BackupName(backup)
	return fmt.Sprintf("%s/%s.%08d.pghoard", b, b, n)
}

// ChunkKey returns the key of a chunk given its chunk_filename.
func (l Layout) ChunkKey(chunkFilename string) string {
	return l.join(BasebackupChunkDir, chunkFilename)
}

// BackupName strips the control suffix and any folder from a backup key or
// name: "site/basebackup/2024-01-01_10-00_0.00000000.pghoard" and
// "2024-01-01_10-00_0" both give "2024-01-01_10-00_0".
func BackupName(s string) string {
	return strings.TrimSuffix(path.Base(s), ControlSuffix)
}
