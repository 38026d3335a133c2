package basebackup

import (
	"archive/tar"
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestStoreControl_ChecksumFailuresSigned: in a site with keys, a backup
// stored with checksum failures records its count with an HMAC of its
// own (archive.MetaChecksumFailuresMAC), which list and the daemon
// need to take the count for fact: the metadata HMAC does not bind it.
// Without keys, the count is stored unsigned, as all metadata there.
func TestStoreControl_ChecksumFailuresSigned(t *testing.T) {
	for _, keys := range []bool{false, true} {
		c := &archive.Codec{}
		if keys {
			archivetest.AddKeys(t, c)
		}
		a := archivetest.New(t, storage.NewMem(), c)
		hdr := func() *tar.Header { return &tar.Header{Mode: 0o600, ModTime: time.Unix(1, 0)} }
		oc := &outcome{
			name: "2026-01-02_03-00_0", source: SourceBaseBackup, segSize: 16 << 20, version: 180000,
			start: 0x3000028, end: 0x3000100, startTLI: 1, endTLI: 1, startTime: time.Unix(1, 0), endTime: time.Unix(2, 0),
			pgControl: &member{h: hdr(), data: make([]byte, 8192)}, backupLabel: &member{h: hdr(), data: []byte("START WAL LOCATION: 0/3000028\n")},
			checksums: &checksumReport{blocks: 2, files: []archive.ChecksumFailure{{File: "pgdata/base/5/16384", Count: 2, Blocks: []uint32{3, 4}}}},
		}
		info, err := storeControl(context.Background(), Options{Archive: a}, zerolog.Nop(), oc)
		if err != nil {
			t.Fatal(err)
		}
		_, hasMAC := info.Metadata[archive.MetaChecksumFailuresMAC]
		if hasMAC != keys {
			t.Errorf("keys %v: %s stored %v", keys, archive.MetaChecksumFailuresMAC, hasMAC)
		}
		bs, err := a.ScanBackups(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(bs.Sound) != 1 {
			t.Fatalf("keys %v: listed %d backups, want 1", keys, len(bs.Sound))
		}
		if n, recorded, trusted := a.Codec.ChecksumFailures(bs.Sound[0]); n != 2 || !recorded || !trusted {
			t.Errorf("keys %v: ChecksumFailures = %d, %v, %v; want 2, recorded, trusted", keys, n, recorded, trusted)
		}
	}
}
