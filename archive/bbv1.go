package archive

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hoardbackup/hoard/storage"
)

// Metadata key prefixes of a pghoard-bb-v1 backup's tablespaces: PGHoard
// wrote tablespace-name-<oid> and tablespace-path-<oid> on the one object
// (pghoard-format.md c.3).
const (
	MetaV1TablespaceName = "tablespace-name-"
	MetaV1TablespacePath = "tablespace-path-"
)

// V1Tablespaces returns the tablespaces a pghoard-bb-v1 backup's object
// metadata md records, by name. Each name must be a single path element
// (its members are tablespaces/<name>/...) with a path that is absolute
// (PostgreSQL's tablespace locations are), under a decimal OID; a name
// without its path, a path without its name, or two tablespaces of one
// name is an error.
func V1Tablespaces(md storage.Metadata) (map[string]ManifestTablespace, error) {
	out := map[string]ManifestTablespace{}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var oidText string
		switch {
		case strings.HasPrefix(k, MetaV1TablespaceName):
			oidText = strings.TrimPrefix(k, MetaV1TablespaceName)
		case strings.HasPrefix(k, MetaV1TablespacePath):
			oidText = strings.TrimPrefix(k, MetaV1TablespacePath)
			if _, ok := md[MetaV1TablespaceName+oidText]; !ok {
				return nil, fmt.Errorf("metadata %s has no %s%s", k, MetaV1TablespaceName, oidText)
			}
			continue
		default:
			continue
		}
		oid, err := strconv.ParseUint(oidText, 10, 32)
		if err != nil || oid == 0 || strconv.FormatUint(oid, 10) != oidText {
			return nil, fmt.Errorf("metadata %s: %q is not a tablespace OID", k, oidText)
		}
		name := md[k]
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return nil, fmt.Errorf("metadata %s=%q: not a tablespace name", k, name)
		}
		p, ok := md[MetaV1TablespacePath+oidText]
		if !ok {
			return nil, fmt.Errorf("metadata %s=%q has no %s%s", k, name, MetaV1TablespacePath, oidText)
		}
		if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
			return nil, fmt.Errorf("metadata %s%s=%q: not an absolute path", MetaV1TablespacePath, oidText, p)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("metadata names tablespace %q twice", name)
		}
		out[name] = ManifestTablespace{Path: p, OID: uint32(oid)}
	}
	return out, nil
}
