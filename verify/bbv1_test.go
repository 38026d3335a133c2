package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// putV1 stores members as a pghoard-bb-v1 backup (PGHoard's legacy
// format: one tar, its tablespace spc in the object metadata) starting in
// segment 2, and returns its key.
func putV1(t *testing.T, a *archive.Archive, name, spcPath string, members ...hostile.Member) string {
	t.Helper()
	js, err := json.Marshal(map[string]any{"pgdata": "/var/lib/pgsql/data", "pghoard_object": "basebackup",
		"tablespaces": map[string]any{"spc": map[string]any{"oid": 16390, "path": "/srv/spc"}}})
	if err != nil {
		t.Fatal(err)
	}
	all := append([]hostile.Member{{Name: archive.ManifestName, Body: string(js)},
		{Name: "pgdata/PG_VERSION", Body: "15\n"},
		{Name: "tablespaces/spc/PG_15_202209061/16384/16400", Body: strings.Repeat("s", 8192)}}, members...)
	all = append(all, hostile.Member{Name: archive.ControlPGControl, Body: strings.Repeat("c", 8192)},
		hostile.Member{Name: archive.ControlBackupLabel, Body: "START WAL LOCATION: 0/200028 (file " + seg(1, 2) + ")\n"})
	data := hostile.Tar(t, all...)
	md := storage.Metadata{archive.MetaFormat: archive.FormatBBv1, archive.MetaStartWALSegment: seg(1, 2),
		archive.MetaStartTime: "2026-01-02T03:00:00+00:00", archive.MetaWALSegmentSize: "1048576",
		"tablespace-name-16390": "spc", "tablespace-path-16390": spcPath}
	key := a.Layout.Dir(archive.BasebackupDir) + name
	if _, err := a.Codec.Put(context.Background(), a.Store, key, bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestRun_BBv1: a pghoard-bb-v1 backup verifies, quickly and in full, as
// one chunk; a byte flipped in its object, a member restore would refuse
// (a name with ".."), or object metadata naming another tablespace path
// than its manifest is reported by the full check, naming the object.
func TestRun_BBv1(t *testing.T) {
	a := testArchive(t)
	putSegments(t, a, 1, 2, 4)
	key := putV1(t, a, "2026-01-02_0", "/srv/spc")
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if len(rep.Backups) != 1 || rep.Backups[0].Status != StatusOK || rep.Backups[0].Chunks != 1 {
			t.Fatalf("full=%v: %+v\n%s", full, rep.Backups, problems(rep))
		}
	}
	storetest.Tamper(t, a.Store, key)
	if rep := run(t, a, true); rep.Backups[0].Status != StatusBroken || !strings.Contains(problems(rep), key) {
		t.Fatalf("damaged %s: status %s, problems:\n%s", key, rep.Backups[0].Status, problems(rep))
	}

	for _, c := range []struct {
		name, spcPath, want string
		members             []hostile.Member
	}{
		{name: "dotdot", spcPath: "/srv/spc", want: "pgdata/../x", members: []hostile.Member{{Name: "pgdata/../x", Body: "x"}}},
		{name: "link", spcPath: "/srv/spc", want: "symbolic link", members: []hostile.Member{{Name: "pgdata/x", Type: tar.TypeSymlink, Link: "/etc/passwd"}}},
		{name: "metadata", spcPath: "/srv/elsewhere", want: "tablespaces differ"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := testArchive(t)
			putSegments(t, a, 1, 2, 4)
			key := putV1(t, a, "2026-01-02_0", c.spcPath, c.members...)
			rep := run(t, a, true)
			if p := problems(rep); rep.Backups[0].Status != StatusBroken || !strings.Contains(p, key) || !strings.Contains(p, c.want) {
				t.Fatalf("status %s, problems:\n%s\nwant %s named with %q", rep.Backups[0].Status, p, key, c.want)
			}
		})
	}
}
