package archive

import (
	"errors"
	"strings"
	"testing"
)

func TestNameList_UnmarshalJSON(t *testing.T) {
	for _, tt := range []struct {
		name, json string
		has, not   []string
		none       bool // no set: nothing checked
	}{
		{name: "OK", json: `["pgdata/base", "pgdata/base/1/1259" ,"tablespaces/ts/PG_15/x"]`,
			has: []string{"pgdata/base", "pgdata/base/", "pgdata/base/1/1259", "tablespaces/ts/PG_15/x"},
			not: []string{"pgdata/base/1/1258", "pgdata", "base/1/1259"}},
		{name: "DirSlash", json: `["pgdata/global/"]`, has: []string{"pgdata/global", "pgdata/global/"}},
		{name: "Escaped", json: `["pgdata/a\"b", "pgdata/\u00e9t\u00e9,x"]`, has: []string{`pgdata/a"b`, "pgdata/été,x"},
			not: []string{"pgdata/a"}},
		{name: "Empty", json: `[]`, none: true},
		{name: "Null", json: `null`, none: true},
		{name: "NotStrings", json: `["a", 1]`, none: true},
		{name: "Nested", json: `["a", ["b"]]`, none: true},
		{name: "Objects", json: `[{"a": "b"}]`, none: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var l nameList
			if err := l.UnmarshalJSON([]byte(tt.json)); err != nil {
				t.Fatal(err)
			}
			if tt.none {
				if l.set != nil {
					t.Fatalf("a set of %d names", l.set.Len())
				}
				return
			}
			for _, n := range tt.has {
				if err := l.set.Check(n); err != nil {
					t.Errorf("Check(%q) = %v", n, err)
				}
			}
			for _, n := range tt.not {
				if err := l.set.Check(n); !errors.Is(err, ErrWrongObject) {
					t.Errorf("Check(%q) = %v, want ErrWrongObject", n, err)
				}
			}
		})
	}
}

// TestParseManifest_Names: each chunk keeps its file list as a NameSet,
// none past maxManifestNames in all.
func TestParseManifest_Names(t *testing.T) {
	data := []byte(`{"chunks":[{"chunk_filename":"b/1","input_size":1,"files":["pgdata/a","pgdata/b"]},
		{"chunk_filename":"b/2","input_size":1,"files":["pgdata/c"]},{"chunk_filename":"b/3","input_size":1}]}`)
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Chunks; c[0].Names.Len() != 2 || !c[0].Names.Has("pgdata/b") || c[0].Names.Has("pgdata/c") ||
		c[1].Names.Len() != 1 || c[2].Names != nil || c[0].Files != nil {
		t.Errorf("names %d %d %v", c[0].Names.Len(), c[1].Names.Len(), c[2].Names)
	}
	old := maxManifestNames
	maxManifestNames = 2
	defer func() { maxManifestNames = old }()
	if m, err = ParseManifest(data); err != nil {
		t.Fatal(err)
	}
	for i, c := range m.Chunks {
		if c.Names != nil {
			t.Errorf("over the limit: chunk %d keeps %d names", i, c.Names.Len())
		}
	}
}

// TestNameSet_CheckLongName: a member that is not in the list is named by
// the start of its name (a tar member's PAX name can be 1 MiB).
func TestNameSet_CheckLongName(t *testing.T) {
	var l nameList
	if err := l.UnmarshalJSON([]byte(`["pgdata/a"]`)); err != nil {
		t.Fatal(err)
	}
	err := l.set.Check("pgdata/" + strings.Repeat("n", 1<<19))
	if !errors.Is(err, ErrWrongObject) || !strings.Contains(err.Error(), "nnnnnnnn") || len(err.Error()) > 1024 {
		t.Errorf("Check of a 512 KiB name = %.300s (%d bytes), want ErrWrongObject naming its start", err, len(err.Error()))
	}
}
