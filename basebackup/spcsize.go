package basebackup

import "strings"

// spcSizes counts the bytes each tablespace takes in a backup's chunks, by
// name, as the chunks' tars hold them (headers and padding included, the
// unit of total-size-plain), for the manifest's tablespace_sizes: restore
// checks each file system against the part restored there, which the
// backup's total alone cannot tell when tablespaces live on other disks.
type spcSizes map[string]int64

// newSpcSizes returns the counts of the tablespaces spc, each at zero.
func newSpcSizes(spc []tablespace) spcSizes {
	s := spcSizes{}
	for _, ts := range spc {
		s[ts.name] = 0
	}
	return s
}

// add counts a member of the chunks: name is its member name
// (tablespaces/<name>/... for a tablespace's; the data directory's are
// not counted) and size its data's length.
func (s spcSizes) add(name string, size int64) {
	rest, ok := strings.CutPrefix(name, "tablespaces/")
	if !ok {
		return
	}
	spc, _, _ := strings.Cut(rest, "/")
	if _, ok := s[spc]; ok {
		s[spc] += tarSize(size)
	}
}
