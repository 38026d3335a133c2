package archive

import (
	"context"
	"testing"

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
