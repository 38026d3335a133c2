package archivetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
)

// PutChecksumFailuresBackup stores the control object of backup name (no
// chunks: its metadata is what list and the daemon read) recording
// failures data page checksum failures, signed as basebackup signs it,
// and returns its key.
func PutChecksumFailuresBackup(t testing.TB, a *archive.Archive, name, failures string) string {
	t.Helper()
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	b := &archive.BackupInfo{
		Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000004", EndWALSegment: "000000010000000000000005",
		StartTime: start, EndTime: start.Add(time.Minute), StartLSN: 0x4000028, EndLSN: 0x5000100,
		StartTimeline: 1, EndTimeline: 1, PGVersion: 150004,
	}
	md := b.ToMetadata()
	md[archive.MetaChecksumFailures] = failures
	if err := a.Codec.SignBackup(name, md); err != nil {
		t.Fatal(err)
	}
	if err := a.Codec.SignChecksumFailures(name, md); err != nil {
		t.Fatal(err)
	}
	key := a.Layout.BackupKey(name)
	if _, err := a.Codec.Put(context.Background(), a.Store, key, strings.NewReader("control"), 7, md); err != nil {
		t.Fatal(err)
	}
	return key
}
