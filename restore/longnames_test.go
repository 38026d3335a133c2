package restore

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

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

// TestRun_ErrLongOperatorPath: the target directory and a tablespace
// directory the caller maps are the operator's own paths, not names from
// the storage: an error names them whole, however long, so that the
// operator sees which directory failed. Here each lies under a regular
// file, 150 bytes into the path.
func TestRun_ErrLongOperatorPath(t *testing.T) {
	for _, tt := range []struct {
		name   string
		spc    bool
		backup hostile.Backup
	}{
		{"Target", false, hostile.Benign()},
		{"Tablespace", true, hostile.Backup{Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: "/nonexistent/ts", OID: 16400}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := hostile.NewEnv(t)
			file := filepath.Join(t.TempDir(), strings.Repeat("d", 150))
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(file, "data")
			var spcDirs map[string]string
			a := hostileArchive(t)
			tt.backup.Name = hostile.Benign().Name
			st := hostile.Put(t, a, tt.backup)
			o := Options{Archive: a, TargetDir: dir, Backup: st.Name, RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()}
			if tt.spc {
				o.TargetDir, spcDirs = e.Target(), map[string]string{"ts": dir}
			}
			o.TablespaceDirs = spcDirs
			_, err := Run(context.Background(), o)
			if err == nil {
				t.Fatal("restore succeeded, want the directory under a file refused")
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the directory %s whole", err, dir)
			}
		})
	}
}

// TestQuotedPath: an error of a file restored into a directory names the
// directory whole when the operator chose it, and quotes only the part
// below it, which the backup named; a planted directory is quoted too.
func TestQuotedPath(t *testing.T) {
	dir := "/" + strings.Repeat("o", 200) + "/data"
	long := "base/1/" + strings.Repeat("n", 1<<19)
	err := &fs.PathError{Op: "write", Path: dir + "/" + long, Err: syscall.ENOSPC}
	for _, tt := range []struct {
		name    string
		d       targetDir
		err     error
		want    string
		notWant string
	}{
		{"Chosen", targetDir{path: dir}, err, "write \"base/1/nnnn", ""},
		{"ChosenDir", targetDir{path: dir}, &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}, "mkdir " + dir + ": not a directory", ""},
		{"ChosenRelative", targetDir{path: dir}, &fs.PathError{Op: "openat", Path: long, Err: syscall.ENAMETOOLONG}, "openat \"base/1/nnnn", dir},
		{"Planted", targetDir{path: dir, planted: true}, err, "write \"/oooo", dir},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.d.pathErr(tt.err)
			if !errors.Is(got, tt.err.(*fs.PathError).Err) {
				t.Errorf("errors.Is(%v, %v) = false", got, tt.err.(*fs.PathError).Err)
			}
			msg := got.Error()
			if len(msg) > 1024 || !strings.Contains(msg, tt.want) || (tt.notWant != "" && strings.Contains(msg, tt.notWant)) {
				t.Errorf("error %.400q (%d bytes), want under 1 KiB with %q and without %.40q", msg, len(msg), tt.want, tt.notWant)
			}
			if !tt.d.planted && tt.name == "Chosen" && !strings.Contains(msg, " in "+dir+": ") {
				t.Errorf("error %.400q does not name %s whole", msg, dir)
			}
		})
	}
}
