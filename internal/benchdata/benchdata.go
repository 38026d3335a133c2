// Package benchdata makes data for benchmarks (bytes shaped like what
// hoard stores, so that compression costs and ratios are realistic) and
// measures their CPU time.
package benchdata

import (
	"encoding/binary"
	"fmt"
	"math/rand"
)

// ClusterLike returns n bytes shaped like a basebackup of the benchmark's
// cluster (scripts/bench-basebackup.sh): three quarters 8 kB heap pages of
// pgbench_accounts (61 tuples of increasing ids, small balances and 84
// blanks each, a page header, line pointers and free space in between),
// one quarter random bytes, as TOASTed random bytea stores them.
func ClusterLike(n int) []byte {
	const page = 8192
	rng := rand.New(rand.NewSource(1))
	b := make([]byte, n)
	aid := uint32(1)
	for off := 0; off+page <= n; off += page {
		p := b[off : off+page]
		if (off/page)%4 == 3 {
			rng.Read(p)
			continue
		}
		binary.LittleEndian.PutUint64(p[0:], uint64(rng.Int63n(1<<32))) // pd_lsn
		binary.LittleEndian.PutUint16(p[8:], uint16(rng.Intn(1<<16)))   // pd_checksum
		const tuples, tupLen = 61, 128
		lower := 24 + 4*tuples
		upper := page - tuples*tupLen
		binary.LittleEndian.PutUint16(p[12:], uint16(lower))
		binary.LittleEndian.PutUint16(p[14:], uint16(upper))
		binary.LittleEndian.PutUint16(p[16:], page)
		binary.LittleEndian.PutUint16(p[18:], 0x2004)
		for i := 0; i < tuples; i++ {
			t := upper + i*tupLen
			binary.LittleEndian.PutUint32(p[24+4*i:], uint32(t)|1<<15|121<<17)
			tup := p[t : t+tupLen]
			binary.LittleEndian.PutUint32(tup[0:], 2+uint32(rng.Intn(4)))  // xmin
			binary.LittleEndian.PutUint16(tup[18:], 3)                     // natts
			tup[22] = 24                                                   // t_hoff
			binary.LittleEndian.PutUint32(tup[24:], aid)                   // aid
			binary.LittleEndian.PutUint32(tup[28:], 1+aid/100000)          // bid
			binary.LittleEndian.PutUint32(tup[32:], uint32(rng.Intn(3))*7) // abalance
			tup[36] = 0xa9                                                 // 1-byte varlena header: 84 bytes
			for j := 37; j < 37+84; j++ {
				tup[j] = ' '
			}
			aid++
		}
	}
	return b
}

// TextRows returns n bytes of rows of text: names drawn from a small
// vocabulary, numbers and hex digests, as a table of customers holds
// them. zstd's fastest encoder stores it in several per cent more bytes
// than its default one.
func TextRows(n int) []byte {
	rng := rand.New(rand.NewSource(3))
	words := []string{"alpha", "brick", "cedar", "delta", "ember", "frost", "grove", "harbor", "indigo", "juniper",
		"kestrel", "lumen", "meadow", "nectar", "orchid", "pepper", "quartz", "raven", "saffron", "timber"}
	w := func() string { return words[rng.Intn(len(words))] }
	var b []byte
	for len(b) < n {
		b = fmt.Appendf(b, "%d|%s %s|%s-%s-%s|%x|%d\n", rng.Intn(1e6), w(), w(), w(), w(), w(), rng.Uint32(), rng.Intn(500))
	}
	return b[:n]
}
