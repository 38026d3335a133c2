package basebackup

import (
	"encoding/binary"
	"math/rand"
	"testing"
)

// referenceChecksum is pg_checksum_page written as checksum_impl.h reads,
// word by word with pd_checksum zeroed: the oracle of pageChecksum.
func referenceChecksum(page []byte, blkno uint32) uint16 {
	p := append([]byte(nil), page...)
	p[pageChecksumOffset], p[pageChecksumOffset+1] = 0, 0
	sums := checksumBaseOffsets
	for i := 0; i < len(p)/(4*checksumColumns); i++ {
		for j := 0; j < checksumColumns; j++ {
			v := binary.NativeEndian.Uint32(p[(i*checksumColumns+j)*4:])
			t := sums[j] ^ v
			sums[j] = t*fnvPrime ^ t>>17
		}
	}
	var result uint32
	for j := 0; j < checksumColumns; j++ {
		t := sums[j]
		for range 2 {
			t = t*fnvPrime ^ t>>17
		}
		result ^= t
	}
	return uint16((result^blkno)%65535 + 1)
}

// TestPageChecksum compares pageChecksum with the reference on random
// pages of PostgreSQL's block sizes, whatever pd_checksum holds. (The
// local-tar tests check it against real clusters' pages too: none may
// fail.)
func TestPageChecksum(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, size := range []int{1024, 2048, 4096, 8192, 16384, 32768} {
		for range 50 {
			page := make([]byte, size)
			rng.Read(page)
			blk := rng.Uint32()
			want := referenceChecksum(page, blk)
			if got := pageChecksum(page, blk); got != want {
				t.Fatalf("block size %d, block %d: checksum %04X, want %04X", size, blk, got, want)
			}
			page[pageChecksumOffset] ^= 0xff // pd_checksum does not count
			if got := pageChecksum(page, blk); got != want {
				t.Fatalf("block size %d: pd_checksum changed the checksum", size)
			}
		}
	}
}
