package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// chainOf makes backups started a day apart from 2024-03-01, parents[i]
// naming backup i's parent as "b<index>" ("" for a full one).
func chainOf(t *testing.T, parents ...string) []*BackupInfo {
	t.Helper()
	names := []string{"2024-03-01_00-00_0", "2024-03-02_00-00_0", "2024-03-03_00-00_0", "2024-03-04_00-00_0", "2024-03-05_00-00_0", "2024-03-06_00-00_0"}
	var out []*BackupInfo
	for i, p := range parents {
		b := pghoardBackup(t, names[i], segs(1, uint64(i+1), uint64(i+1))[0])
		if p != "" {
			if len(p) != 2 || p[0] != 'b' || p[1] < '0' || int(p[1]-'0') >= i {
				t.Fatalf("bad parent reference %q", p)
			}
			b.Parent = names[p[1]-'0']
		}
		out = append(out, b)
	}
	return out
}

func names(ds []BackupDecision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Backup.Name[:10])
	}
	return out
}

// TestPlanRetention_KeepsParents: a kept incremental backup keeps its
// whole chain, whatever basebackup_count says; backups no kept one needs
// go.
func TestPlanRetention_KeepsParents(t *testing.T) {
	// b0 full, b1 incremental on it, b2 on b1; b3 and b4 full; b5
	// incremental on b2.
	bs := chainOf(t, "", "b0", "b1", "", "", "b2")
	plan := PlanRetention(bs, segs(1, 1, 8), RetentionPolicy{MaxCount: 2}, retentionNow)
	if got, want := strings.Join(names(plan.Keep), " "), "2024-03-01 2024-03-02 2024-03-03 2024-03-05 2024-03-06"; got != want {
		t.Fatalf("kept %s, want %s", got, want)
	}
	if got, want := strings.Join(names(plan.Delete), " "), "2024-03-04"; got != want {
		t.Errorf("deleted %s, want %s", got, want)
	}
	for _, k := range plan.Keep[:3] {
		if !strings.Contains(k.Reason, "2024-03-06_00-00_0 needs it") {
			t.Errorf("%s kept because %q", k.Backup.Name, k.Reason)
		}
	}
	// WAL from the oldest kept backup's start stays.
	if plan.WALHorizonBackup != "2024-03-01_00-00_0" || len(plan.WAL) != 0 {
		t.Errorf("WAL horizon %s, %d segments deleted", plan.WALHorizonBackup, len(plan.WAL))
	}
}

func TestChain(t *testing.T) {
	bs := chainOf(t, "", "b0", "b1")
	c, err := Chain(bs, bs[2])
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 3 || c[0] != bs[0] || c[1] != bs[1] || c[2] != bs[2] {
		t.Errorf("chain of %d backups, not full first", len(c))
	}
	_, err = Chain(bs[1:], bs[2])
	if !errors.Is(err, ErrNoParent) || !strings.Contains(err.Error(), bs[0].Name) {
		t.Errorf("chain without its full backup: %v", err)
	}
	bs[0].Parent = bs[2].Name
	if _, err := Chain(bs, bs[2]); !errors.Is(err, ErrNoParent) || !strings.Contains(err.Error(), "loops") {
		t.Errorf("looping chain: %v, want ErrNoParent saying it loops (the daemon then takes a full backup)", err)
	}
}

// TestArchive_ReadControlMember_ErrLongName: the names in a control tar
// are the writer's (PAX lets one be 1 MiB); an error quoting one quotes
// its start and length only, as security.md says of every planted name.
func TestArchive_ReadControlMember_ErrLongName(t *testing.T) {
	long := strings.Repeat("n", 1<<19)
	for _, tt := range []struct {
		name    string
		members []string
	}{
		{"FirstMember", []string{long}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, name := range tt.members {
				if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: 2, Typeflag: tar.TypeReg}); err != nil {
					t.Fatal(err)
				}
				if _, err := tw.Write([]byte("{}")); err != nil {
					t.Fatal(err)
				}
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			a := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "s"}, Site: "s"}
			key := a.Layout.BackupKey("2024-03-01_00-00_0")
			if _, err := a.Codec.Put(context.Background(), a.Store, key, &buf, -1, nil); err != nil {
				t.Fatal(err)
			}
			_, _, err := a.ReadControlMember(context.Background(), key, ControlPGManifest)
			if err == nil {
				t.Fatal("read a control tar whose first member is no manifest")
			}
			if n := len(err.Error()); n > 2048 || !strings.Contains(err.Error(), "nnnnnnnn") {
				t.Errorf("error of %d bytes, want the name's start only: %.300s", n, err)
			}
		})
	}
}
