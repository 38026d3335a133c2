package basebackup

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// TestStagedReader: a staging file reads back whole through its checked
// reader, again after a rewind (a retried upload); one that changed,
// lost its end or grew fails at its end with a permanent error naming
// the file, instead of io.EOF.
func TestStagedReader(t *testing.T) {
	want := bytes.Repeat([]byte("staged delta object "), 1000)
	var sum stageSum
	sum.add(want[:7])
	sum.add(want[7:])
	for _, tc := range []struct {
		name   string
		change func(f *os.File) error
	}{
		{"OK", func(*os.File) error { return nil }},
		{"ErrByte", func(f *os.File) error { _, err := f.WriteAt([]byte{'X'}, 3000); return err }},
		{"ErrTruncated", func(f *os.File) error { return f.Truncate(int64(len(want) - 1)) }},
		{"ErrGrown", func(f *os.File) error { _, err := f.WriteAt([]byte{'X'}, int64(len(want))); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := os.Create(filepath.Join(dir, "staged"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			if _, err := f.Write(want); err != nil {
				t.Fatal(err)
			}
			if err := tc.change(f); err != nil {
				t.Fatal(err)
			}
			st := &staged{r: &deltaFileResult{e: &entry{root: &root{dir: "/pgdata"}, rel: "base/1/1"}}, tmp: f, sum: sum}
			r, err := st.upload(dir)
			if err != nil {
				t.Fatal(err)
			}
			for pass := range 2 {
				got, err := io.ReadAll(r)
				if tc.name == "OK" {
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("pass %d: %d bytes, %v; want the staged bytes", pass, len(got), err)
					}
				} else if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), "changed on the local disk") || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "/pgdata/base/1/1") {
					t.Fatalf("pass %d: %v, want a permanent error saying the staged copy in %s changed", pass, err, dir)
				}
				if _, err := r.(io.Seeker).Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
