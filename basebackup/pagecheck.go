package basebackup

import (
	"encoding/binary"
	"path"
	"strconv"
	"strings"
)

// PostgreSQL's data page checksum (src/include/storage/checksum_impl.h):
// the page is read as a BLCKSZ/128 by 32 array of native-endian uint32,
// each of the 32 columns folded into its own FNV-1a-like hash
// (hash = (hash^v)*prime ^ ((hash^v)>>17)) from its own base offset, two
// more rounds of zeros mix the last values in, and the xor of the 32
// partial sums, xor the block number, reduced modulo 65535 plus one, is
// the 16-bit checksum. pd_checksum (bytes 8-9 of the page header) counts as
// zero while the page is summed.
const (
	checksumColumns = 32
	fnvPrime        = 16777619
)

var checksumBaseOffsets = [checksumColumns]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// Offsets in PostgreSQL's page header (PageHeaderData, bufpage.h).
const (
	pageLSNOffset      = 0  // pd_lsn: two uint32, xlogid then xrecoff
	pageChecksumOffset = 8  // pd_checksum, uint16
	pageUpperOffset    = 14 // pd_upper, uint16; 0 on a new (all-zero) page
)

// pageChecksum returns pg_checksum_page of page (len(page) is the block
// size, a multiple of 128) as block blkno: the block number within the
// relation, counting the blocks of earlier 1 GB segment files.
func pageChecksum(page []byte, blkno uint32) uint16 {
	sums := checksumBaseOffsets
	// The first row with pd_checksum, which shares a word with pd_flags,
	// summed as zero.
	var first [4 * checksumColumns]byte
	copy(first[:], page)
	first[pageChecksumOffset], first[pageChecksumOffset+1] = 0, 0
	checksumRow(&sums, &first)
	for off := 4 * checksumColumns; off+4*checksumColumns <= len(page); off += 4 * checksumColumns {
		checksumRow(&sums, (*[4 * checksumColumns]byte)(page[off:]))
	}
	var result uint32
	for j := 0; j < checksumColumns; j++ {
		t := sums[j]
		t = t*fnvPrime ^ t>>17
		t = t*fnvPrime ^ t>>17
		result ^= t
	}
	result ^= blkno
	return uint16(result%65535 + 1)
}

// checksumRow folds one row of 32 native-endian words into the column
// sums. The fixed-size arrays let the compiler drop every bounds check.
func checksumRow(sums *[checksumColumns]uint32, row *[4 * checksumColumns]byte) {
	for j := 0; j < checksumColumns; j++ {
		t := sums[j] ^ binary.NativeEndian.Uint32(row[4*j:])
		sums[j] = t*fnvPrime ^ t>>17
	}
}

// pageIsNew reports whether a page was never initialized: pd_upper is 0
// (PageIsNew). Such pages carry no checksum.
func pageIsNew(page []byte) bool {
	return binary.NativeEndian.Uint16(page[pageUpperOffset:]) == 0
}

// pageLSN returns pd_lsn.
func pageLSN(page []byte) uint64 {
	hi := binary.NativeEndian.Uint32(page[pageLSNOffset:])
	lo := binary.NativeEndian.Uint32(page[pageLSNOffset+4:])
	return uint64(hi)<<32 | uint64(lo)
}

// storedChecksum returns pd_checksum.
func storedChecksum(page []byte) uint16 {
	return binary.NativeEndian.Uint16(page[pageChecksumOffset:])
}

// noChecksumFiles are the files of a tablespace that are not relation
// data and carry no page checksums (noChecksumFiles in basebackup.c,
// kept in sync with pg_checksums).
var noChecksumFiles = map[string]bool{
	"pg_control": true, "pg_filenode.map": true, "PG_VERSION": true,
}

// checksummed reports whether a file holds checksummed data pages, as
// basebackup.c's is_checksummed_file decides: files under global/ and
// base/ of the data directory and every file of a tablespace (rel is the
// path relative to the data directory, or the tablespace's directory
// when inTablespace), except the noChecksumFiles and pg_internal.init*.
// It also returns the segment number of a relation's later 1 GB segment
// files (the ".N" suffix), which offsets its block numbers, and false for
// a suffix basebackup.c would refuse.
func checksummed(rel string, inTablespace bool) (segno uint32, ok bool) {
	if !inTablespace && !strings.HasPrefix(rel, "global/") && !strings.HasPrefix(rel, "base/") {
		return 0, false
	}
	base := path.Base(rel)
	if noChecksumFiles[base] || strings.HasPrefix(base, "pg_internal.init") {
		return 0, false
	}
	if _, suffix, found := strings.Cut(base, "."); found {
		n, err := strconv.ParseUint(suffix, 10, 32)
		if err != nil || n == 0 {
			// Not a relation segment (a temporary or foreign
			// file): basebackup.c would fail the backup on it;
			// hoard leaves its pages unchecked.
			return 0, false
		}
		return uint32(n), true
	}
	return 0, true
}
