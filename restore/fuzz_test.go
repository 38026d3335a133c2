package restore

import (
	"archive/tar"
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/jackc/pglogrepl"
)

// FuzzPlanMember checks the tar-member-to-filesystem decision: it never
// panics, and whatever it accepts is a directory or a regular file (never a
// link, device, FIFO or sparse file) at a clean relative path of the data
// directory or of a tablespace the manifest names, which joined to its
// directory stays inside it.
func FuzzPlanMember(f *testing.F) {
	for _, s := range []struct {
		name string
		typ  byte
		link string
	}{
		{"pgdata/base/1/1259", tar.TypeReg, ""},
		{"pgdata/base/", tar.TypeDir, ""},
		{"tablespaces/ts1/PG_15_1/5/16384", tar.TypeReg, ""},
		{"tablespaces/ts1/crontab", tar.TypeReg, ""},
		{"tablespaces/ts1", tar.TypeDir, ""},
		{"pgdata/../../etc/passwd", tar.TypeReg, ""},
		{"/etc/passwd", tar.TypeReg, ""},
		{"pgdata/recovery.signal", tar.TypeSymlink, "/etc/passwd"},
		{"pgdata/x", tar.TypeLink, "pgdata/y"},
		{"pgdata/pg_tblspc/16384", tar.TypeDir, ""},
		{"pgdata/global/pg_control", tar.TypeReg, ""},
		{".pghoard_tar_metadata.json", tar.TypeReg, ""},
		{"pgdata/./a//b/", tar.TypeDir, ""},
		{"pgdata/a\x00b", tar.TypeReg, ""},
		{"pgdata/null", tar.TypeChar, ""},
		{"pgdata/s", tar.TypeGNUSparse, ""},
	} {
		f.Add(s.name, s.typ, s.link, "", false)
		f.Add(s.name, s.typ, s.link, "GNU.sparse.map", true)
	}
	spcs := map[string]bool{"ts1": true}
	f.Fuzz(func(t *testing.T, name string, typ byte, link, pax string, control bool) {
		h := &tar.Header{Name: name, Typeflag: typ, Linkname: link}
		if pax != "" {
			h.PAXRecords = map[string]string{pax: "1"}
		}
		p, err := planMember(h, spcs, control)
		if err != nil {
			if !strings.Contains(err.Error(), "member") {
				t.Fatalf("error %v does not name the member", err)
			}
			return
		}
		switch p.kind {
		case memberSkip:
			return
		case memberDir:
			if typ != tar.TypeDir {
				t.Fatalf("type %q planned as a directory", typ)
			}
		case memberFile:
			if typ != tar.TypeReg || sparse(h) {
				t.Fatalf("type %q (PAX %q) planned as a regular file", typ, pax)
			}
		}
		if p.spc != "" && !spcs[p.spc] {
			t.Fatalf("tablespace %q is not in the manifest", p.spc)
		}
		if top, _, _ := strings.Cut(p.rel, "/"); p.spc != "" && !tablespaceVersionDir.MatchString(top) {
			t.Fatalf("tablespace member %q planned at %q, outside its version directory", name, p.rel)
		}
		if !filepath.IsLocal(p.rel) || strings.Contains(p.rel, "\x00") {
			t.Fatalf("%q planned at %q, not a local path", name, p.rel)
		}
		for _, part := range strings.Split(p.rel, "/") {
			if part == ".." || part == "" || part == "." {
				t.Fatalf("%q planned at %q", name, p.rel)
			}
		}
		if j := filepath.Join("/root", p.rel); !strings.HasPrefix(j, "/root/") {
			t.Fatalf("%q planned at %q, joined %q", name, p.rel, j)
		}
		if !control && controlOnly[p.rel] {
			t.Fatalf("chunk member %q writes %q", name, p.rel)
		}
		if strings.HasPrefix(p.rel, "pg_tblspc/") {
			t.Fatalf("%q planned under pg_tblspc", name)
		}
	})
}

// FuzzPlanTar reads arbitrary tar streams as restore does and plans each
// member (the decisions of FuzzPlanMember, on the headers archive/tar
// makes of hostile bytes: PAX and GNU long names, sparse maps, base-256
// sizes): no panic, and no accepted member is a link, device, FIFO or
// sparse file, or lies outside its directory.
func FuzzPlanTar(f *testing.F) {
	add := func(members ...hostile.Member) { f.Add(hostile.Tar(f, members...)) }
	add(hostile.Member{Name: "pgdata/base/1/1259", Body: "heap"}, hostile.Member{Name: "tablespaces/ts1/x", Body: "spc"})
	add(hostile.Member{Name: "pgdata/evil", Type: tar.TypeSymlink, Link: "/tmp"}, hostile.Member{Name: "pgdata/evil/x", Body: "x"})
	add(hostile.Member{Name: "pgdata/" + strings.Repeat("long/", 40) + "x", Body: "x"})
	add(hostile.Member{Name: "pgdata/p", Body: "x", PAX: map[string]string{"path": "pgdata/../../escape"}})
	f.Add(hostile.Tar(f, hostile.GNUSparse("pgdata/s", 1<<20)))
	f.Add(hostile.Tar(f, hostile.PAXSparse("pgdata/s", 1<<20)))
	spcs := map[string]bool{"ts1": true}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := tar.NewReader(bytes.NewReader(data))
		for range 64 {
			h, err := tr.Next()
			if err != nil {
				return
			}
			p, err := planMember(h, spcs, false)
			if err != nil || p.kind == memberSkip {
				continue
			}
			if (p.kind == memberFile && (h.Typeflag != tar.TypeReg || sparse(h))) || (p.kind == memberDir && h.Typeflag != tar.TypeDir) {
				t.Fatalf("%q of type %q planned as %v", h.Name, h.Typeflag, p.kind)
			}
			if !filepath.IsLocal(p.rel) || !strings.HasPrefix(filepath.Join("/root", p.rel), "/root/") {
				t.Fatalf("%q planned at %q", h.Name, p.rel)
			}
		}
	})
}

// setting is one line of hoard's block in postgresql.auto.conf, as
// guc-file.l reads it: a name, "=", and a quoted string of anything but a
// quote, backslash or line break, or doubled quotes and escaped characters.
var setting = regexp.MustCompile(`^([a-z_]+) = '((?:[^'\\\n\r]|''|\\.)*)'$`)

// FuzzRecoveryConfig checks recovery target validation and the rendering
// of the recovery settings: no panic, and every accepted configuration
// renders to one line per setting that reads back to the value given, so
// no value can add or change a setting.
func FuzzRecoveryConfig(f *testing.F) {
	f.Add("before 'the' upgrade", "latest", "hoard --config /etc/hoard.json wal-fetch %f %p", "host=db1 password='x'", uint64(0), uint64(0), false, false, "")
	f.Add("x'\nrestore_command = 'sh -c evil", "2", "cp /a/%f %p", "", uint64(1234), uint64(0), false, true, "pause")
	f.Add("", "current", "a\\'b", "c:\\dir", uint64(0), uint64(0x3000060), false, false, "shutdown")
	f.Add("", "", "x\ry", "", uint64(0), uint64(0), true, false, "promote")
	f.Fuzz(func(t *testing.T, name, timeline, restoreCmd, conninfo string, xid, lsn uint64, immediate, standby bool, action string) {
		c := RecoveryConfig{
			RestoreCommand: restoreCmd, PrimaryConnInfo: conninfo, Standby: standby, TargetAction: action,
			Target: Target{Name: name, Timeline: timeline, XID: xid, LSN: pglogrepl.LSN(lsn), Immediate: immediate},
		}
		if c.Target.Validate() != nil || validateAction(action) != nil || c.checkValues() != nil {
			return
		}
		want := map[string]string{}
		if restoreCmd != "" {
			want["restore_command"] = restoreCmd
		}
		if conninfo != "" {
			want["primary_conninfo"] = conninfo
		}
		if name != "" {
			want["recovery_target_name"] = name
		}
		lines := strings.Split(strings.TrimSuffix(c.block(), "\n"), "\n")
		if lines[0] != confHeader || lines[len(lines)-1] != confFooter {
			t.Fatalf("block not between the markers:\n%s", c.block())
		}
		seen := map[string]bool{}
		for _, line := range lines[1 : len(lines)-1] {
			m := setting.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %q is not one setting", line)
			}
			if seen[m[1]] {
				t.Fatalf("%s set twice", m[1])
			}
			seen[m[1]] = true
			got := strings.NewReplacer("''", "'", `\\`, `\`).Replace(m[2])
			if w, ok := want[m[1]]; ok && got != w {
				t.Fatalf("%s reads back as %q, want %q", m[1], got, w)
			}
		}
		for k := range want {
			if !seen[k] && !(k == "recovery_target_name" && (xid != 0 || lsn != 0 || immediate)) {
				t.Fatalf("%s not written", k)
			}
		}
	})
}
