package basebackup

import (
	"path"
	"strings"

	"github.com/hoardbackup/hoard/archive"
)

// Where a member of the server's tar streams goes.
type placement int

const (
	placeChunk   placement = iota // into a data chunk
	placeControl                  // into the control tar (pg_control, backup_label, tablespace_map)
	placeSkip                     // nowhere
)

// controlFiles are the top-level PGDATA files that go into the control tar
// instead of a chunk, by their name in the server's stream.
var controlFiles = map[string]bool{
	"global/pg_control": true,
	"backup_label":      true,
	"tablespace_map":    true,
}

// place decides where a member of a server tar goes. rel is its cleaned
// path relative to the archive's root; main is true for the main data
// directory's archive, false for a tablespace's. The control files go to
// the control tar; of the others, those archive.LeftOut names (the rule
// restore also applies to the backup's backup_manifest) go nowhere.
func place(rel string, main bool) placement {
	switch {
	case main && controlFiles[rel]:
		return placeControl
	case archive.LeftOut(rel, main):
		return placeSkip
	}
	return placeChunk
}

// cleanName turns a member name of a server tar into a clean relative
// path: no "./" prefix, no trailing slash; "" for the archive's root. ok
// is false for a name that would escape the archive's root.
func cleanName(name string) (rel string, ok bool) {
	if strings.HasPrefix(name, "/") {
		return "", false
	}
	c := path.Clean(name)
	if c == "." {
		return "", true
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	return c, true
}
