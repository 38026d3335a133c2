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

// TestArchive_ReadBackupControl_ErrLongName: the names in a control tar
// are the writer's (PAX lets one be 1 MiB); an error quoting one quotes
// its start and length only, as security.md says of every planted name.
func TestArchive_ReadBackupControl_ErrLongName(t *testing.T) {
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
			b := &BackupInfo{Name: "2024-03-01_00-00_0", Key: a.Layout.BackupKey("2024-03-01_00-00_0")}
			if _, err := a.Codec.Put(context.Background(), a.Store, b.Key, &buf, -1, nil); err != nil {
				t.Fatal(err)
			}
			pgm := &ControlMember{Name: ControlPGManifest, Max: MaxPGManifest}
			_, err := a.ReadBackupControl(context.Background(), b, pgm.Check)
			if err == nil {
				t.Fatal("read a control tar whose first member is no manifest")
			}
			if n := len(err.Error()); n > 2048 || !strings.Contains(err.Error(), "nnnnnnnn") {
				t.Errorf("error of %d bytes, want the name's start only: %.300s", n, err)
			}
		})
	}
}

// TestControlMember_Check: a ControlMember keeps its member's data from
// the pass that reads the control object (ReadControl), and reports a
// member missing, twice, over its limit or not a regular file from Data,
// after the object was read to its end, without stopping the read.
func TestControlMember_Check(t *testing.T) {
	js, err := (&Manifest{Chunks: []ManifestChunk{{ChunkFilename: "b/b.00000001.pghoard", InputSize: 10240}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	member := func(name string, typ byte, body string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Mode: 0o600, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := tw.Flush(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	control := func(members ...[]byte) []byte {
		return bytes.Join(append([][]byte{member(ManifestName, tar.TypeReg, string(js))}, append(members, make([]byte, 1024))...), nil)
	}
	label := member(ControlBackupLabel, tar.TypeReg, "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n")
	for _, tt := range []struct {
		name string
		data []byte
		want string // the data kept, or Data's error
		err  bool
	}{
		{"OK", control(member("./"+ControlPGManifest, tar.TypeReg, "pgm"), label), "pgm", false},
		{"ErrMissing", control(label), "holds no " + ControlPGManifest, true},
		{"ErrTwice", control(member(ControlPGManifest, tar.TypeReg, "pgm"), member(ControlPGManifest, tar.TypeReg, "other"), label), "twice", true},
		{"ErrOverLimit", control(member(ControlPGManifest, tar.TypeReg, "12345"), label), "within 4 bytes", true},
		{"ErrNotFile", control(member(ControlPGManifest, tar.TypeSymlink, ""), label), "not a regular file", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &ControlMember{Name: ControlPGManifest, Max: 4}
			c, err := ReadControl(bytes.NewReader(tt.data), m.Check)
			if err != nil {
				t.Fatalf("ReadControl: %v", err)
			}
			if c.Label == nil {
				t.Errorf("backup_label not read: the read stopped before the end")
			}
			data, err := m.Data()
			switch {
			case tt.err && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Data = %q, %v; want an error with %q", data, err, tt.want)
			case !tt.err && (err != nil || string(data) != tt.want):
				t.Errorf("Data = %q, %v; want %q", data, err, tt.want)
			}
		})
	}
}
