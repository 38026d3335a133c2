package wal

import (
	"testing"
)

// FuzzParseHistory checks that no history file makes ParseHistory panic,
// and that a history it accepts is what it promises: timelines increasing
// up to tli, switch points not going back, the first beginning at 0.
func FuzzParseHistory(f *testing.F) {
	f.Add(uint32(2), []byte("1\t0/3000000\tno recovery target specified\n"))
	f.Add(uint32(3), []byte("1\t0/3000000\tno recovery target specified\n\n2\t0/5000158\tat restore point \"x\"\n"))
	f.Add(uint32(2), []byte("# comment\n1 0/0\n"))
	f.Add(uint32(1), []byte("1\t0/3000000\n"))
	f.Add(uint32(5), []byte("3\t0/5\n2\t0/6\n"))
	f.Add(uint32(2), []byte("1\tFFFFFFFF/FFFFFFFF\n"))
	f.Fuzz(func(t *testing.T, tli uint32, data []byte) {
		h, err := ParseHistory(tli, data)
		if err != nil {
			return
		}
		if len(h) == 0 || h.Timeline() != tli || h[0].Begin != 0 {
			t.Fatalf("ParseHistory(%d) = %+v", tli, h)
		}
		for i := 1; i < len(h); i++ {
			if h[i].Timeline <= h[i-1].Timeline || h[i].Begin < h[i-1].Begin {
				t.Fatalf("ParseHistory(%d) = %+v: not increasing at %d", tli, h, i)
			}
		}
	})
}
