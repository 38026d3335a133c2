package restore

import (
	"archive/tar"
	"bytes"
	"fmt"
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

// FuzzPlanTar reads tar streams as restore does and plans each member (the
// decisions of FuzzPlanMember, on the headers archive/tar makes of hostile
// bytes: PAX records and path overrides, GNU long names, the ustar prefix,
// old GNU and PAX sparse maps, base-256 sizes): no panic, and no accepted
// member is a link, device, FIFO or sparse file, or lies outside its
// directory.
//
// The stream is built from a few short fields, not fuzzed as raw bytes:
// each header gets a valid checksum (a mutated raw header almost always
// fails archive/tar's checksum, so its fields went unexplored), and an
// input is tens of bytes, not the kilobytes of 512-byte blocks. Go's fuzz
// coordinator minimizes every input that finds new coverage, in time
// quadratic in its size: a raw tar of a few kilobytes kept both workers
// minimizing for the whole -fuzztime (10-26 executions in 10 s in CI), and
// a minimization still running at the deadline is how the run failed with
// a bare "context deadline exceeded".
func FuzzPlanTar(f *testing.F) {
	sparseTail := func(offset, length, realsize int64) string {
		// From the ustar prefix field (345): GNU's atime, ctime, offset,
		// longnames and unused fields, then the first sparse entry at 386
		// and the real size at 483.
		tail := make([]byte, 483-345+12)
		copy(tail[386-345:], fmt.Sprintf("%011o\x00%011o\x00", offset, length))
		copy(tail[483-345:], fmt.Sprintf("%011o\x00", realsize))
		return string(tail)
	}
	paxSparse := hostile.PAXRecords("GNU.sparse.numblocks", "1", "GNU.sparse.map", fmt.Sprint(1<<20-1)+",1", "GNU.sparse.name", "pgdata/s", "GNU.sparse.size", fmt.Sprint(1<<20))
	for _, s := range []struct {
		paxType        byte
		pax            string
		longType       byte
		long           string
		name           string
		typ            byte
		tail           string
		size           int64
		body           string
		ustar, trailer bool
	}{
		{name: "pgdata/base/1/1259", typ: tar.TypeReg, size: 4, body: "heap", ustar: true, trailer: true},
		{name: "tablespaces/ts1/x", typ: tar.TypeReg, size: 3, body: "spc", ustar: true},
		{name: "pgdata/evil", typ: tar.TypeSymlink, ustar: true, trailer: true},
		{longType: tar.TypeGNULongName, long: "pgdata/" + strings.Repeat("long/", 20) + "x", name: "x", typ: tar.TypeReg, size: 1, body: "x", trailer: true},
		{name: "x", typ: tar.TypeReg, tail: "pgdata/" + strings.Repeat("p/", 4), size: 1, body: "x", ustar: true, trailer: true},
		{paxType: tar.TypeXHeader, pax: hostile.PAXRecords("path", "pgdata/../../escape"), name: "pgdata/p", typ: tar.TypeReg, size: 1, body: "x", ustar: true, trailer: true},
		{paxType: tar.TypeXGlobalHeader, pax: hostile.PAXRecords("path", "/etc/passwd"), name: "pgdata/p", typ: tar.TypeReg, size: 1, body: "x", ustar: true, trailer: true},
		{name: "pgdata/s", typ: tar.TypeGNUSparse, tail: sparseTail(1<<20-1, 1, 1<<20), size: 1, body: "x", trailer: true},
		{paxType: tar.TypeXHeader, pax: paxSparse, name: "GNUSparseFile.0/sparse", typ: tar.TypeReg, size: 1, body: "x", ustar: true, trailer: true},
		{paxType: tar.TypeXHeader, pax: hostile.PAXRecords("GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.name", "pgdata/s", "GNU.sparse.realsize", "1048576"), name: "pgdata/s", typ: tar.TypeReg, size: 513, body: "1\n1048575\n1\n" + strings.Repeat("\x00", 512-12) + "x", ustar: true, trailer: true},
		{name: "pgdata/big", typ: tar.TypeReg, size: 1 << 40, body: "x", ustar: true, trailer: true},
	} {
		f.Add(s.paxType, s.pax, s.longType, s.long, s.name, s.typ, s.tail, s.size, s.body, s.ustar, s.trailer)
	}
	spcs := map[string]bool{"ts1": true}
	f.Fuzz(func(t *testing.T, paxType byte, pax string, longType byte, long, name string, typ byte, tail string, size int64, body string, ustar, trailer bool) {
		var data []byte
		if pax != "" {
			data = append(data, hostile.RawHeader("PaxHeaders/m", paxType, int64(len(pax)), true, nil)...)
			data = append(data, blocks(pax)...)
		}
		if long != "" {
			data = append(data, hostile.RawHeader("././@LongLink", longType, int64(len(long)), false, nil)...)
			data = append(data, blocks(long)...)
		}
		data = append(data, hostile.RawHeader(name, typ, size, ustar, func(h []byte) { copy(h[345:500], tail) })...)
		data = append(data, blocks(body)...)
		if trailer {
			data = append(data, make([]byte, 1024)...)
		}
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

// blocks is s padded with NULs to whole 512-byte tar blocks.
func blocks(s string) []byte {
	return append([]byte(s), make([]byte, (512-len(s)%512)%512)...)
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
