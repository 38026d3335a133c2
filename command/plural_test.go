package command

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
)

func TestPlural(t *testing.T) {
	cases := []struct {
		n    int64
		want string
	}{
		{0, "0 warnings"},
		{1, "1 warning"},
		{2, "2 warnings"},
		{-1, "-1 warnings"},
	}
	for _, tc := range cases {
		if got := plural(tc.n, "warning", "warnings"); got != tc.want {
			t.Errorf("plural(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestPlural_Summaries: a count of one reads "1 object", not "1 objects",
// in the summaries people read (archive-copy, archive-sync).
func TestPlural_Summaries(t *testing.T) {
	var b strings.Builder
	writeCopyResult(&b, "a", "b", archive.CopyResult{Objects: 1, Bytes: 10, Copied: 1, CopiedBytes: 10})
	if got, want := firstLine(b.String()), "site a -> b: 1 object (10 bytes): 1 copied (10 bytes), 0 already there"; got != want {
		t.Errorf("archive-copy summary:\n got %q\nwant %q", got, want)
	}
	b.Reset()
	writeSyncResult(&b, &archive.SyncResult{Oldest: "x", Newest: "y", Pushed: []string{"y"}, HashChecked: 1}, nil, "")
	if got, want := firstLine(b.String()), "local WAL x..y: stored 1 missing file, compared 1 hash, 0 differ"; got != want {
		t.Errorf("archive-sync summary:\n got %q\nwant %q", got, want)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
