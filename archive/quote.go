package archive

import (
	"fmt"
	"strconv"
)

// maxQuoted is how many bytes of a name read from storage an error or a
// log line quotes.
const maxQuoted = 72

// Quoted returns s quoted for an error or a log line: whole when it is at
// most 72 bytes, else its first 72 bytes and its length. s is a name read
// from storage (a tar member's name or link target, a path or name in a
// manifest, a key a listing returned), which whoever can write the storage
// chooses: PAX lets a tar member's name be up to 1 MiB, and an error is
// logged, printed and kept in the daemon's status.
func Quoted(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:maxQuoted], len(s))
}
