package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// pushFile pushes a WAL file called name holding data to a for the
// cluster of database system system.
func pushFile(t *testing.T, a *archive.Archive, name string, data []byte, system uint64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PushWAL(context.Background(), path, archive.PushOptions{SystemID: system}); err != nil {
		t.Fatal(err)
	}
}

// TestLatestFor: after a pg_upgrade into the same site with keys (the
// old system's 00000002.history and WAL on timeline 2), the latest
// timeline from 1 is 2 for the old system and 1 for the upgraded one,
// whose recovery wal-fetch shows the old file as absent, and a restore of
// an upgraded cluster's backup may promote (checkPromotion). Once the
// archive holds the upgraded system's WAL on timeline 2, the old file is
// refused to it: latestFor reports the refusal and checkPromotion refuses
// the restore. The same in a site without keys, by the system the
// history file's metadata claims.
func TestLatestFor(t *testing.T) {
	testio.WithAndWithoutKeys(t, testLatestFor)
}

func testLatestFor(t *testing.T, keys bool) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	a := memArchive(t, keys)
	pushFile(t, a, "00000002.history", []byte("1\t0/300000\tno recovery target specified\n"), sysOld)
	pushFile(t, a, "000000020000000000000003", waltest.SegmentOf(t, "000000020000000000000003", 1<<20, 1, sysOld), sysOld)

	b := hoardBackup("b1", 1, 0x9000100, 0)
	b.SystemID = strconv.FormatUint(sysNew, 10)
	o := Options{WALFetch: &WALFetch{}}
	latest := func(system uint64, wantTLI uint32, wantRefused bool) {
		t.Helper()
		h, _, err := listHistories(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		tli, refused, err := latestFor(ctx, a, &Histories{h: h}, 1, system, archive.ReplayStart{})
		if err != nil || tli != wantTLI || (refused != nil) != wantRefused || (refused != nil && !errors.Is(refused, archive.ErrOtherSystem)) {
			t.Errorf("latestFor(1, %d) = %d, %v, %v; want %d, refused %v", system, tli, refused, err, wantTLI, wantRefused)
		}
	}
	latest(sysOld, 2, false)
	latest(sysNew, 1, false)
	if err := o.checkPromotion(ctx, a, b, 1); err != nil {
		t.Errorf("checkPromotion of the upgraded cluster's backup, none of its WAL on timeline 2: %v", err)
	}

	pushFile(t, a, "000000020000000000000009", waltest.SegmentOf(t, "000000020000000000000009", 1<<20, 1, sysNew), sysNew)
	latest(sysNew, 2, true)
	if err := o.checkPromotion(ctx, a, b, 1); !errors.Is(err, archive.ErrOtherSystem) {
		t.Errorf("checkPromotion with the upgraded system's WAL on timeline 2: %v; want the refusal (ErrOtherSystem)", err)
	}
}

// TestLatestPaths_ReplayStart: after a pg_upgrade into the same site, the
// old system's 00000002.history and its WAL on timeline 2 (8 segments)
// stay; the upgraded system's backups start on timeline 1 beyond all of
// it. The automatic choice's latest timeline for the upgraded system
// (LatestPaths) is 1, and it reads none of the old segments' first
// pages: its own WAL on timeline 2 can only lie at or after where its
// backups' recovery starts (archive.ReplayStart), above them. Before,
// LatestPaths searched with no bound and read all 8 on every restore.
func TestLatestPaths_ReplayStart(t *testing.T) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	log := &storetest.OpenLog{Store: storage.NewMem(), Match: func(key string) bool { return strings.Contains(key, "/xlog/00000002") }}
	a := archivetest.New(t, log, &archive.Codec{Compression: compress.Snappy, Host: "test"})
	pushFile(t, a, "00000002.history", []byte("1\t0/300000\tno recovery target specified\n"), sysOld)
	for no := 3; no <= 10; no++ {
		name := fmt.Sprintf("%08X%016X", 2, no)
		pushFile(t, a, name, waltest.SegmentOf(t, name, 1<<20, 1, sysOld), sysOld)
	}
	var backups []*archive.BackupInfo
	for i, end := range []pglogrepl.LSN{0x2000100, 0x3000100} {
		b := hoardBackup(fmt.Sprint("new", i), i+1, end, 0)
		b.SystemID, b.WALSegmentSize = strconv.FormatUint(sysNew, 10), 1<<20
		backups = append(backups, b)
	}
	paths, err := LatestPaths(ctx, a, backups, sysNew)
	if err != nil {
		t.Fatal(err)
	}
	if p := paths[1]; p.Timeline() != 1 {
		t.Errorf("latest timeline from 1 for the upgraded system: %d, want 1", p.Timeline())
	}
	if keys := log.Keys(); len(keys) != 0 {
		t.Errorf("LatestPaths read %d of the old system's segments on timeline 2, below every backup's start: %v", len(keys), keys)
	}
}

// memArchive is an archive in memory with snappy, and with keys when
// keys is set.
func memArchive(t testing.TB, keys bool) *archive.Archive {
	t.Helper()
	c := &archive.Codec{Compression: compress.Snappy, Host: "test"}
	if keys {
		archivetest.AddKeys(t, c)
	}
	return archivetest.New(t, storage.NewMem(), c)
}
