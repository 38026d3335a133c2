package restore

import (
	"archive/tar"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
)

// TestRun_ErrLongNames: whoever stores a backup chooses the names in its
// tars (PAX lets a member's name or link target be up to 1 MiB, as Go's reader takes it) and in its
// manifests. Each hostile backup here holds such a name where restore
// refuses it: the error names it by its start and its length only (it is
// logged, printed and kept in the daemon's status), not the whole name.
func TestRun_ErrLongNames(t *testing.T) {
	long := strings.Repeat("n", 1<<19) // archive/tar reads PAX headers of up to 1 MiB
	link := func(name, to string) hostile.Member {
		return hostile.Member{Name: name, Type: tar.TypeSymlink, Link: to}
	}
	file := func(name string) hostile.Member { return hostile.Member{Name: name, Body: "x\n"} }
	chunk := func(ms ...hostile.Member) [][]hostile.Member { return [][]hostile.Member{ms} }
	b64 := base64.StdEncoding.EncodeToString([]byte("x\n"))
	for _, tt := range []struct {
		name string
		b    hostile.Backup
	}{
		{"MemberDotDot", hostile.Backup{Chunks: chunk(file("pgdata/../" + long))}},
		{"MemberOutsidePGData", hostile.Backup{Chunks: chunk(file(long))}},
		{"MemberTooLongToCreate", hostile.Backup{Chunks: chunk(file("pgdata/base/1/" + long))}},
		{"MemberUnknownTablespace", hostile.Backup{Chunks: chunk(file("tablespaces/" + long + "/x"))}},
		{"SymlinkTarget", hostile.Backup{Chunks: chunk(link("pgdata/x", long))}},
		{"HardLinkTarget", hostile.Backup{Chunks: chunk(hostile.Member{Name: "pgdata/x", Type: tar.TypeLink, Link: long})}},
		{"ControlMember", hostile.Backup{Control: []hostile.Member{file("pgdata/../" + long)}}},
		{"ControlFirstMember", hostile.Backup{ControlTar: hostile.Tar(t, file(long))}},
		{"ChunkFilename", hostile.Backup{Manifest: func(m *archive.Manifest) { m.Chunks[0].ChunkFilename = "../" + long }}},
		{"TablespacePath", hostile.Backup{Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: "/" + long, OID: 16400}}}},
		{"TablespaceName", hostile.Backup{Tablespaces: map[string]archive.ManifestTablespace{long: {Path: "rel", OID: 16400}}}},
		{"DeltaPath", hostile.Backup{Delta: []archive.DeltaFile{{RelativePath: "../" + long, FileSize: 2, ContentB64: &b64}}}},
		{"DeltaDigest", hostile.Backup{Delta: []archive.DeltaFile{{RelativePath: "base/1/2601", FileSize: 8192, Hexdigest: long}}}},
		{"DeltaDir", hostile.Backup{DeltaDirs: []string{"../" + long}}},
		{"BundleMember", hostile.Backup{Chunks: chunk(file("../" + long)), DeltaDirs: []string{}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := hostile.NewEnv(t)
			tt.b.Name = hostile.Benign().Name
			_, _, err := restoreHostile(t, e, tt.b, nil)
			if err == nil {
				t.Fatal("restore succeeded, want the long name refused")
			}
			if n := len(err.Error()); n > 2048 {
				t.Errorf("error of %d bytes, want the name's start only: %.300s", n, err)
			}
			if !strings.Contains(err.Error(), "nnnnnnnn") {
				t.Errorf("error %.300s does not name the long name", err)
			}
		})
	}
}
