package restore

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExtractor_WriteFileStartsWriteBack: a file the extractor wrote has
// its pages under write-back or written already, not left dirty in the
// page cache for the final syncfs (cachestat(2), Linux 6.5 and later, on
// a disk file system; skipped elsewhere), and holds what was written.
func TestExtractor_WriteFileStartsWriteBack(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skip("the temporary directory is on tmpfs, which has no write-back")
	}
	ex, err := newExtractor(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.close()
	// Not a multiple of writebackEvery: the tail is started at the end.
	data := make([]byte, 3*writebackEvery+12345)
	rand.New(rand.NewSource(1)).Read(data)
	p := memberPlan{kind: memberFile, rel: "base/5/16384"}
	if err := ex.writeFile(p, "pgdata/base/5/16384", bytes.NewReader(data), 0o600, make([]byte, copyBufferSize), nil, nil); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "base", "5", "16384")
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Cachestat_t
	err = unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &st, 0)
	if errors.Is(err, unix.ENOSYS) {
		t.Skip("no cachestat(2) in this kernel")
	}
	if err != nil {
		t.Fatal(err)
	}
	pages := uint64((len(data) + os.Getpagesize() - 1) / os.Getpagesize())
	if st.Dirty != 0 {
		t.Errorf("%d of the file's %d pages are dirty (%d under write-back): write-back was not started for all", st.Dirty, pages, st.Writeback)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the file does not hold what was written")
	}
}
