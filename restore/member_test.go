package restore

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
)

func tarOf(t *testing.T, names ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(n)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Members yields every member with its data readable, and nothing after
// the end-of-archive marker.
func TestMembers_OK(t *testing.T) {
	tr := tar.NewReader(bytes.NewReader(tarOf(t, "pgdata/a", "pgdata/b")))
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
	data := tarOf(t, "pgdata/a", "pgdata/b")
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
	tr := tar.NewReader(bytes.NewReader(tarOf(t, "pgdata/a", "pgdata/b")))
	n := 0
	for range Members(tr) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("%d members after break, want 1", n)
	}
}
