package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

func TestListAllBackups(t *testing.T) {
	ctx := context.Background()
	shared := storage.NewMem()
	a := &Archive{Store: shared, Codec: &Codec{}, Layout: Layout{Prefix: "new"}, Site: "new"}
	old := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "old"}, Site: "old"}
	// A moved_from site no longer configured: this site's store, its own prefix.
	older := &Archive{Store: shared, Codec: &Codec{}, Layout: Layout{Prefix: "older"}, Site: "older"}
	a.MovedFrom = []*Archive{old, older}
	putBackup(t, old, "2024-03-03_10-00_0", "000000010000000000000004", 1, 0)
	putBackup(t, a, "2024-03-04_10-00_0", "000000010000000000000006", 1, 0)
	putBackup(t, old, "2024-03-02_10-00_0", "000000010000000000000002", 1, 0)
	putBackup(t, older, "2024-03-01_10-00_0", "000000010000000000000001", 1, 0)
	putBackup(t, a, "2024-03-05_10-00_0", "000000010000000000000008", 1, 0)

	bs, err := a.ListAllBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		site *Archive
	}{
		{"2024-03-01_10-00_0", older}, {"2024-03-02_10-00_0", old}, {"2024-03-03_10-00_0", old},
		{"2024-03-04_10-00_0", a}, {"2024-03-05_10-00_0", a},
	}
	if len(bs) != len(want) {
		t.Fatalf("ListAllBackups returned %d backups, want %d", len(bs), len(want))
	}
	for i, w := range want {
		if bs[i].Name != w.name || a.ArchiveOf(bs[i]) != w.site || bs[i].Archive != w.site {
			t.Errorf("backup %d = %s of site %s, want %s of site %s", i, bs[i].Name, a.ArchiveOf(bs[i]).Site, w.name, w.site.Site)
		}
	}

	// ListBackups keeps to the site itself and leaves Archive unset.
	own, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(own) != 2 {
		t.Fatalf("ListBackups returned %d backups, want 2", len(own))
	}
	if own[0].Archive != nil || a.ArchiveOf(own[0]) != a {
		t.Errorf("ListBackups: first backup held by %v, want a with Archive unset", own[0].Archive)
	}
}

// damageBackup rewrites the metadata of backup name's main object in a's
// store: key=value is set in it.
func damageBackup(t testing.TB, a *Archive, name, key, value string) {
	t.Helper()
	storetest.Rewrite(t, a.Store, a.Layout.BackupKey(name), func(data []byte, md storage.Metadata) []byte {
		md[key] = value
		return data
	})
}

// TestScanBackups_Damaged: one backup with an unparsable start time, one
// with a bad LSN, one whose local sidecar was cut short and one whose
// sidecar is a FIFO (read, it would never end) are listed as damaged, each
// with its reason; the sound ones stay listed and usable.
func TestScanBackups_Damaged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := &Archive{Store: storage.NewLocal(dir), Codec: &Codec{}, Layout: Layout{Prefix: "s"}, Site: "s"}
	for i, name := range []string{"2024-03-01_10-00_0", "2024-03-02_10-00_0", "2024-03-03_10-00_0", "2024-03-04_10-00_0", "2024-03-05_10-00_0", "2024-03-06_10-00_0"} {
		putBackup(t, a, name, fmt.Sprintf("00000001000000000000000%d", i+1), 1, 0)
	}
	damageBackup(t, a, "2024-03-02_10-00_0", MetaStartTime, "yesterday")
	damageBackup(t, a, "2024-03-03_10-00_0", MetaEndLSN, "0/zz")
	sidecar := filepath.Join(dir, filepath.FromSlash(a.Layout.BackupKey("2024-03-05_10-00_0"))+".metadata")
	js, err := os.ReadFile(sidecar)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sidecar, js[:len(js)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, filepath.FromSlash(a.Layout.BackupKey("2024-03-06_10-00_0"))+".metadata")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	bs, err := a.ScanBackups(ctx)
	if err != nil {
		t.Fatalf("ScanBackups = %v, want the damaged backups listed, not an error", err)
	}
	var sound []string
	for _, b := range bs.Sound {
		sound = append(sound, b.Name)
	}
	if want := []string{"2024-03-01_10-00_0", "2024-03-04_10-00_0"}; !slices.Equal(sound, want) {
		t.Errorf("sound backups %v, want %v", sound, want)
	}
	want := map[string]string{
		"2024-03-02_10-00_0": MetaStartTime,
		"2024-03-03_10-00_0": MetaEndLSN,
		"2024-03-05_10-00_0": ".metadata",
		"2024-03-06_10-00_0": "not a regular file",
	}
	if len(bs.Damaged) != len(want) {
		t.Fatalf("damaged %v, want %v", bs.Damaged, want)
	}
	for _, d := range bs.Damaged {
		if why, ok := want[d.Name]; !ok || !strings.Contains(d.Err.Error(), why) || d.Key != a.Layout.BackupKey(d.Name) {
			t.Errorf("damaged %s (%s): %v; want the reason to name %q", d.Name, d.Key, d.Err, want[d.Name])
		}
	}
	if !errors.Is(bs.Damaged[2].Err, storage.ErrBadMetadata) {
		t.Errorf("cut sidecar: %v, want ErrBadMetadata", bs.Damaged[2].Err)
	}

	// ListBackups and ListAllBackups keep to the sound ones.
	if l, err := a.ListAllBackups(ctx); err != nil || len(l) != 2 {
		t.Errorf("ListAllBackups = %d backups, %v; want 2", len(l), err)
	}
	all, err := a.ScanAllBackups(ctx)
	if err != nil || len(all.Damaged) != 4 || all.Damaged[0].Archive != a {
		t.Errorf("ScanAllBackups = %+v, %v; want 4 damaged held by a", all, err)
	}
}

// statFailing is a Store whose Stat of key fails with err.
type statFailing struct {
	storage.Store
	key string
	err error
}

func (s statFailing) Stat(ctx context.Context, key string) (storage.Object, error) {
	if key == s.key {
		return storage.Object{}, fmt.Errorf("stat %s: %w", key, s.err)
	}
	return s.Store.Stat(ctx, key)
}

// TestScanAllBackups_ErrUnreadable: a backup whose main object the
// storage refuses to read (storage.ErrPermanent: permission denied), in
// the site or a moved_from site, is listed in Unreadable, held by its
// site, the others as usual, and the scan ends with an UnreadableError
// naming it, which wraps the storage's error; ListAllBackups fails on it
// as before. A storage failing past its retries (not permanent) still
// ends the scan at once with its error, no backup listed.
func TestScanAllBackups_ErrUnreadable(t *testing.T) {
	ctx := context.Background()
	a := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "new"}, Site: "new"}
	old := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "old"}, Site: "old"}
	a.MovedFrom = []*Archive{old}
	putBackup(t, old, "2024-03-01_10-00_0", "000000010000000000000001", 1, 0)
	putBackup(t, old, "2024-03-02_10-00_0", "000000010000000000000002", 1, 0)
	putBackup(t, a, "2024-03-03_10-00_0", "000000010000000000000003", 1, 0)
	key := old.Layout.BackupKey("2024-03-01_10-00_0")
	denied := fmt.Errorf("access denied: %w", storage.ErrPermanent)
	old.Store = statFailing{Store: old.Store, key: key, err: denied}

	bs, err := a.ScanAllBackups(ctx)
	var ue *UnreadableError
	if !errors.As(err, &ue) || !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), key) {
		t.Fatalf("ScanAllBackups: %v, want an UnreadableError naming %s", err, key)
	}
	if len(bs.Unreadable) != 1 || bs.Unreadable[0].Key != key || bs.Unreadable[0].Archive != old || len(ue.Backups) != 1 {
		t.Errorf("unreadable %+v, want %s held by old", bs.Unreadable, key)
	}
	var sound []string
	for _, b := range bs.Sound {
		sound = append(sound, b.Name)
	}
	if want := []string{"2024-03-02_10-00_0", "2024-03-03_10-00_0"}; !slices.Equal(sound, want) || len(bs.Damaged) != 0 {
		t.Errorf("sound %v, damaged %v; want %v and none damaged", sound, bs.Damaged, want)
	}
	if _, err := a.ListAllBackups(ctx); !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("ListAllBackups: %v, want the error", err)
	}

	unavailable := errors.New("503 SlowDown")
	old.Store = statFailing{Store: old.Store.(statFailing).Store, key: key, err: unavailable}
	bs, err = a.ScanAllBackups(ctx)
	if !errors.Is(err, unavailable) || errors.As(err, &ue) || len(bs.Sound)+len(bs.Unreadable) != 0 {
		t.Errorf("ScanAllBackups with the storage failing: %+v, %v; want its error alone", bs, err)
	}
}
