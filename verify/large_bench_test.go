package verify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/storage"
)

// largeArchive returns a site in a mem store holding backups backups an
// hour apart and segments small stand-ins for WAL segments from segment 2
// on (their bytes are not read by the quick check), the backups' starts
// spread evenly over them: an archive as it looks after months of hourly
// backups with long retention.
func largeArchive(b *testing.B, backups, segments int) *archive.Archive {
	b.Helper()
	a := archivetest.New(b, storage.NewMem(), &archive.Codec{})
	for no := uint64(2); no < uint64(2+segments); no++ {
		putSegment(b, a, seg(1, no), []byte("x"))
	}
	per := segments / backups
	for i := range backups {
		start := uint64(2 + i*per)
		putBackup(b, a, fmt.Sprintf("b%04d", i), 1, start, start+1, t0.Add(time.Duration(i)*time.Hour))
	}
	return a
}

// BenchmarkVerify_LargeArchive times hoard verify's quick check (Run) of
// a site of 300 backups and 20 000 WAL segments, and
// BenchmarkCheckContinuityOf the daemon's periodic check of the same
// backups' WAL (daemon/walgaps.go): each follows every backup's WAL
// through the archive's end.
func BenchmarkVerify_LargeArchive(b *testing.B) {
	a := largeArchive(b, 300, 20000)
	b.ResetTimer()
	for b.Loop() {
		rep, err := Run(context.Background(), Options{Archive: a, Logger: zerolog.Nop()})
		if err != nil || !rep.OK() {
			b.Fatal(err, problems(rep))
		}
	}
}

// BenchmarkCheckContinuityOf: see BenchmarkVerify_LargeArchive.
func BenchmarkCheckContinuityOf(b *testing.B) {
	a := largeArchive(b, 300, 20000)
	bs, err := a.ListBackups(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		chains, err := CheckContinuityOf(context.Background(), a, bs)
		if err != nil || len(chains) != 300 || !chains[0].Restorable {
			b.Fatal(err)
		}
	}
}
