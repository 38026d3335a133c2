package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_ErrNoBackupLabel: a backup whose control object holds no
// backup_label (restore refuses it: PostgreSQL would start from
// pg_control's checkpoint, one from during the backup) is broken, for
// the quick check and the full one, and the problem names backup_label.
// The same backup with it is not broken.
func TestRun_ErrNoBackupLabel(t *testing.T) {
	for _, b := range []hostile.Backup{
		{Name: "2026-01-02_03-00_1", NoLabel: true},
		{Name: "2026-01-02_03-00_2", NoLabel: true, DeltaDirs: []string{}},
	} {
		a := testArchive(t)
		hostile.Put(t, a, b)
		for _, full := range []bool{false, true} {
			rep := run(t, a, full)
			if len(rep.Backups) != 1 || rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), archive.ControlBackupLabel) {
				t.Errorf("%s (delta %v), full=%v: %+v\n%s", b.Name, b.IsDelta(), full, rep.Backups, problems(rep))
			}
		}
		b.NoLabel = false
		a = testArchive(t)
		hostile.Put(t, a, b)
		for _, full := range []bool{false, true} {
			if rep := run(t, a, full); len(rep.Backups) != 1 || rep.Backups[0].Status == StatusBroken {
				t.Errorf("%s (delta %v) with backup_label, full=%v: %+v\n%s", b.Name, b.IsDelta(), full, rep.Backups, problems(rep))
			}
		}
	}
}

// TestRun_ErrSingleTarNoBackupLabel: a backup held in one pg_basebackup
// tar (PGHoard's basic mode) without backup_label first, where
// pg_basebackup writes it, is broken for the quick check, which reads the
// tar's first member, naming backup_label; one without backup_label at all
// is broken for the full check too. With backup_label first both pass it.
func TestRun_ErrSingleTarNoBackupLabel(t *testing.T) {
	label := hostile.Member{Name: "backup_label", Body: "START WAL LOCATION: 0/200028 (file " + hostile.StartSegment + ")\n"}
	rest := []hostile.Member{
		{Name: "PG_VERSION", Body: "15\n"},
		{Name: "global/pg_control", Body: strings.Repeat("c", hostile.PGControlSize)},
	}
	for _, tc := range []struct {
		name        string
		members     []hostile.Member
		quick, full bool // broken
	}{
		{"OK", append([]hostile.Member{label}, rest...), false, false},
		{"ErrNoLabel", rest, true, true},
		{"ErrLabelNotFirst", append(slices.Clone(rest), label), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := singleTarArchive(t, tc.members...)
			for _, full := range []bool{false, true} {
				rep := run(t, a, full)
				if len(rep.Backups) != 1 {
					t.Fatalf("%d backups listed", len(rep.Backups))
				}
				want := tc.quick
				if full {
					want = tc.full
				}
				broken := rep.Backups[0].Status == StatusBroken && strings.Contains(problems(rep), "backup_label")
				if broken != want || (!want && rep.Backups[0].Status != StatusOK) {
					t.Errorf("full=%v: broken %v, want %v: %+v\n%s", full, broken, want, rep.Backups, problems(rep))
				}
			}
		})
	}
}

// singleTarArchive returns an archive holding one backup in one
// pg_basebackup tar (PGHoard's basic mode) of members, and its WAL.
func singleTarArchive(t *testing.T, members ...hostile.Member) *archive.Archive {
	t.Helper()
	a := testArchive(t)
	putSingleTar(t, a, members...)
	return a
}

// putSingleTar stores into a the backup and WAL of singleTarArchive.
func putSingleTar(t *testing.T, a *archive.Archive, members ...hostile.Member) {
	t.Helper()
	data := hostile.Tar(t, members...)
	md := storage.Metadata{
		archive.MetaStartTime: "2026-01-02T03:00:00+00:00", archive.MetaStartWALSegment: hostile.StartSegment,
		"basebackup-mode": "basic", archive.MetaPGVersion: "150004", archive.MetaOriginalFileSize: strconv.Itoa(len(data)),
		archive.MetaWALSegmentSize: strconv.Itoa(hostile.SegmentSize),
	}
	if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.BackupKey("2026-01-02_03-00_0"), bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
	for _, seg := range []string{hostile.StartSegment, hostile.EndSegment} {
		putSegment(t, a, seg, waltest.Segment(t, seg, hostile.SegmentSize, 1))
	}
}

// TestRun_ErrSingleTarLongFirstMember: the quick check names a first
// member that is not backup_label by the start of its name only: the tar
// is whatever its writer stored, and a PAX name can fill the 64 KiB of
// header the check reads.
func TestRun_ErrSingleTarLongFirstMember(t *testing.T) {
	a := singleTarArchive(t, hostile.Member{Name: strings.Repeat("n", 32<<10), Body: "x\n"})
	rep := run(t, a, false)
	if len(rep.Backups) != 1 || rep.Backups[0].Status != StatusBroken {
		t.Fatalf("backups %+v, want the one broken", rep.Backups)
	}
	if p := problems(rep); !strings.Contains(p, "nnnnnnnn") || len(p) > 2048 {
		t.Errorf("problems of %d bytes, want the member's name by its start: %.300s", len(p), p)
	}
}

// askStore is a store that records, by key, the stored bytes each read
// asks for: the object's size for Open, the length for OpenRange (the
// size when the length is negative: to the end).
type askStore struct {
	storage.Store
	mu    sync.Mutex
	asked map[string][]int64
}

func (s *askStore) ask(ctx context.Context, key string, n int64) {
	if n < 0 {
		if obj, err := s.Store.Stat(ctx, key); err == nil {
			n = obj.Size
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked[key] = append(s.asked[key], n)
}

func (s *askStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, obj, err := s.Store.Open(ctx, key)
	if err == nil {
		s.ask(ctx, key, obj.Size)
	}
	return rc, obj, err
}

func (s *askStore) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	s.ask(ctx, key, length)
	return s.Store.OpenRange(ctx, key, offset, length)
}

// TestRun_SingleTarLabelRange: the quick check of a single-tar backup
// whose stored object is far larger than the tar's first member header
// asks the storage for a bounded range of it (archive.FirstBlockRange),
// never the whole object, and still tells a tar with backup_label first
// from one with another member first.
func TestRun_SingleTarLabelRange(t *testing.T) {
	label := hostile.Member{Name: "backup_label", Body: "START WAL LOCATION: 0/200028 (file " + hostile.StartSegment + ")\n"}
	big := make([]byte, 4<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	data := hostile.Member{Name: "base/1/16384", Body: string(big)}
	for _, tc := range []struct {
		name      string
		members   []hostile.Member
		encrypted bool
		broken    bool
	}{
		{"OK", []hostile.Member{label, data}, false, false},
		{"OKEncrypted", []hostile.Member{label, data}, true, false},
		{"ErrLabelNotFirst", []hostile.Member{data, label}, false, true},
		{"ErrLabelNotFirstEncrypted", []hostile.Member{data, label}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testArchive(t)
			if tc.encrypted {
				archivetest.AddKeys(t, a.Codec)
			}
			putSingleTar(t, a, tc.members...)
			st := &askStore{Store: a.Store, asked: map[string][]int64{}}
			a.Store = st
			key := a.Layout.BackupKey("2026-01-02_03-00_0")
			obj, err := st.Stat(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			rep := run(t, a, false)
			if len(rep.Backups) != 1 {
				t.Fatalf("%d backups listed", len(rep.Backups))
			}
			broken := rep.Backups[0].Status == StatusBroken && strings.Contains(problems(rep), "backup_label")
			if broken != tc.broken || (!tc.broken && rep.Backups[0].Status != StatusOK) {
				t.Errorf("broken %v, want %v: %+v\n%s", broken, tc.broken, rep.Backups, problems(rep))
			}
			asked := st.asked[key]
			if len(asked) == 0 {
				t.Fatalf("the quick check read nothing of %s", key)
			}
			for _, n := range asked {
				if n > archive.FirstBlockRange || n >= obj.Size {
					t.Errorf("a read of %s (%d stored bytes) asked for %d bytes, want at most %d", key, obj.Size, n, int64(archive.FirstBlockRange))
				}
			}
		})
	}
}
