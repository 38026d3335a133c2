package restore

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/hostile"
)

// twoFiles is a tar of two files, each holding its own name.
func twoFiles(t *testing.T) []byte {
	return hostile.Tar(t, hostile.Member{Name: "pgdata/a", Body: "pgdata/a"}, hostile.Member{Name: "pgdata/b", Body: "pgdata/b"})
}

// Members yields every member with its data readable, and nothing after
// the end-of-archive marker.
func TestMembers_OK(t *testing.T) {
	tr := tar.NewReader(bytes.NewReader(twoFiles(t)))
	var got []string
	for h, err := range Members(tr) {
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != h.Name {
			t.Errorf("member %s holds %q", h.Name, data)
		}
		got = append(got, h.Name)
	}
	if want := "pgdata/a pgdata/b"; strings.Join(got, " ") != want {
		t.Errorf("members %q, want %s", got, want)
	}
}

// A tar cut in a header is an error, yielded once and last, never a
// silent end.
func TestMembers_ErrTruncated(t *testing.T) {
	data := twoFiles(t)
	tr := tar.NewReader(bytes.NewReader(data[:512+512+100]))
	var names []string
	var errs []error
	for h, err := range Members(tr) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		names = append(names, h.Name)
	}
	if len(names) != 1 || len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "read tar: ") {
		t.Fatalf("members %q, errors %v: want pgdata/a, then one read tar error", names, errs)
	}
}

// Leaving the loop early stops reading.
func TestMembers_Break(t *testing.T) {
	tr := tar.NewReader(bytes.NewReader(twoFiles(t)))
	n := 0
	for range Members(tr) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("%d members after break, want 1", n)
	}
}
