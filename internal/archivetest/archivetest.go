// Package archivetest helps the tests of the packages that build on
// archive (basebackup, restore, verify, e2e) fill an archive as hoard's
// other commands would, and read its objects back.
package archivetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// New returns the archive of site "site", its objects under site/, in st
// with codec c; st is closed when the test ends.
func New(t testing.TB, st storage.Store, c *archive.Codec) *archive.Archive {
	t.Helper()
	t.Cleanup(func() { st.Close() })
	return &archive.Archive{Store: st, Codec: c, Layout: archive.Layout{Prefix: "site"}, Site: "site"}
}

// StoreArchivedWAL switches c to a new segment, waits until the server
// archived the one before into walDir (see pgtest.StartArchiving), and
// stores every segment and history file there in a, as wal-push would.
func StoreArchivedWAL(t testing.TB, c *pgtest.Cluster, walDir string, a *archive.Archive) {
	t.Helper()
	c.SwitchArchived(t, walDir)
	ents, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(walDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(e.Name()), f, -1, nil)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Local returns the archive of the site whose objects are under prefix in
// a local store at dir (made when missing), with codec c; the store is
// closed when the test ends.
func Local(t testing.TB, dir, prefix string, c *archive.Codec) *archive.Archive {
	t.Helper()
	st, err := storage.Open(context.Background(), storage.Config{Type: "local", Directory: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &archive.Archive{Store: st, Codec: c, Layout: archive.Layout{Prefix: prefix}}
}

// PutBackupInfo stores backup name's control object in a, the body
// "control" with info's metadata: a backup as listings see it, which no
// restore could read.
func PutBackupInfo(t testing.TB, a *archive.Archive, name string, info *archive.BackupInfo) {
	t.Helper()
	body := []byte("control")
	if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.BackupKey(name), bytes.NewReader(body), int64(len(body)), info.ToMetadata()); err != nil {
		t.Fatal(err)
	}
}

// SegmentBackupInfo is the metadata of a PostgreSQL 15 backup of system
// on timeline 1 (segments of segSize bytes) that starts in segment
// startNo at at and ends in the next segment a minute later.
func SegmentBackupInfo(startNo uint64, at time.Time, system, segSize uint64) *archive.BackupInfo {
	start, end := wal.Segment{Timeline: 1, No: startNo}, wal.Segment{Timeline: 1, No: startNo + 1}
	return &archive.BackupInfo{
		Format: archive.FormatBBv2, StartWALSegment: start.Name(segSize), EndWALSegment: end.Name(segSize),
		StartTime: at, EndTime: at.Add(time.Minute), StartLSN: start.StartLSN(segSize) + 0x28,
		EndLSN: end.StartLSN(segSize) + 0x100, StartTimeline: 1, EndTimeline: 1,
		WALSegmentSize: segSize, PGVersion: 150004, SystemID: fmt.Sprint(system),
	}
}
