package archive

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
)

// NameSet is a chunk's "files" list from the control object's manifest,
// which PGHoard and hoard write with every member of the chunk, so that
// restore and verify refuse a chunk moved under another chunk's name
// whose members differ (ManifestChunk.HMAC, which only hoard records for
// encrypted chunks, tells every other swap too). It is kept small: a
// sorted 32-bit hash of each name (its trailing "/" dropped: PGHoard lists
// directories without one, Python's tarfile writes them with one). The
// seed is random per process, so nobody can choose names that collide;
// a member of another chunk passes by chance with a probability of the
// list's length in 2^32, and a moved chunk is refused when any of its
// members does not.
type NameSet struct{ h []uint32 }

// nameSeed seeds every NameSet of the process.
var nameSeed = maphash.MakeSeed()

func nameHash(name []byte) uint32 {
	return uint32(maphash.Bytes(nameSeed, name))
}

// Has reports whether the list holds name (a tar member's name, a
// directory's with or without its trailing "/").
func (s *NameSet) Has(name string) bool {
	_, ok := slices.BinarySearch(s.h, nameHash([]byte(strings.TrimSuffix(name, "/"))))
	return ok
}

// Check returns an error wrapping ErrWrongObject when the set does not
// hold member name: the chunk holding it is not the one the manifest
// lists. A nil set (no list recorded) holds every name.
func (s *NameSet) Check(name string) error {
	if s == nil || s.Has(name) {
		return nil
	}
	return fmt.Errorf("member %s is not in the chunk's file list in the control object: %w", Quoted(name), ErrWrongObject)
}

// Len returns the number of distinct names in the set (0 for nil).
func (s *NameSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.h)
}

// nameList decodes a "files" list straight into a NameSet, without
// keeping the names: its JSON, already checked as valid by the decoder
// that hands it over, is scanned by hand, since decoding millions of
// names as strings would allocate several times the JSON. A list that
// is empty, or holds anything but strings, gives no set: nothing is
// checked against it.
type nameList struct{ set *NameSet }

func (l *nameList) UnmarshalJSON(data []byte) error {
	l.set = nil
	n := 0 // names: top-level commas + 1, counted first to allocate once
	inString := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && c == ',':
			n++
		case !inString && (c == '[' || c == '{') && i > firstNonSpace(data):
			return nil // nested values: not a list of names
		}
	}
	h := make([]uint32, 0, n+1)
	for i := firstNonSpace(data) + 1; i < len(data); i++ {
		switch data[i] {
		case ' ', '\t', '\r', '\n', ',', ']':
			continue
		case '"':
		default:
			return nil // null, a number, true or false
		}
		end := i + 1
		escaped := false
		for ; data[end] != '"'; end++ {
			if data[end] == '\\' {
				escaped = true
				end++
			}
		}
		name := data[i+1 : end]
		if escaped {
			var s string
			if err := json.Unmarshal(data[i:end+1], &s); err != nil {
				return err
			}
			name = []byte(s)
		}
		if len(name) > 0 && name[len(name)-1] == '/' {
			name = name[:len(name)-1]
		}
		h = append(h, nameHash(name))
		i = end
	}
	if len(h) == 0 {
		return nil
	}
	slices.Sort(h)
	l.set = &NameSet{h: slices.Compact(h)}
	return nil
}

// firstNonSpace returns the index of data's first byte that is not JSON
// white space.
func firstNonSpace(data []byte) int {
	i := 0
	for i < len(data) && strings.IndexByte(" \t\r\n", data[i]) >= 0 {
		i++
	}
	return i
}
