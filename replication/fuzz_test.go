package replication

import "testing"

func FuzzParseStreamMessage(f *testing.F) {
	f.Add([]byte("w\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00WAL"))
	f.Add([]byte("k\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseStreamMessage(data)
		if err != nil {
			return
		}
		if m.Kind == MessageXLogData && len(m.XLogData.WALData) != len(data)-25 {
			t.Errorf("WALData of %d bytes from a %d-byte message", len(m.XLogData.WALData), len(data))
		}
	})
}

func FuzzNewArchive(f *testing.F) {
	f.Add([]byte("base.tar\x00\x00"))
	f.Add([]byte("16384.tar\x00/srv/ts\x00"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := &BaseBackup{Tablespaces: []Tablespace{{OID: 16384, Location: "/srv/ts"}, {Size: -1}}}
		a, err := b.newArchive(data)
		if err == nil && a.Kind != ArchiveTablespace {
			t.Errorf("archive kind %d", a.Kind)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"16MB", "1GB", "8192", "64kB", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseSize(s)
	})
}
