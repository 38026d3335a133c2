package walstream

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSpoolUnstored: the files a spool holds that no run is known to
// have stored. Complete segments and .history files count; an ended
// timeline's .partial holding WAL counts (a Run stores it whole); the
// newest .partial that holds no WAL (zeros) is no leftover. A spool that
// does not exist holds nothing. The leftover holding valid WAL is shown
// with a real server's WAL by the daemon's tests (TestRun_OrphanSpool).
func TestSpoolUnstored(t *testing.T) {
	files, leftover, err := SpoolUnstored(filepath.Join(t.TempDir(), "none"))
	if err != nil || files != nil || leftover != "" {
		t.Errorf("missing spool: %v %q %v", files, leftover, err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("000000010000000000000003", []byte("wal"))
	write("000000010000000000000004.partial", []byte{0x10, 0xd1, 1})
	write("00000002.history", []byte("1\t0/4000000\tno recovery target specified\n"))
	write("000000020000000000000004.partial", make([]byte, 8192))
	write(".hoard-daemon.lock", []byte("1\n"))
	files, leftover, err = SpoolUnstored(dir)
	want := []string{"000000010000000000000003", "000000010000000000000004.partial", "00000002.history"}
	if err != nil || !slices.Equal(files, want) || leftover != "" {
		t.Errorf("SpoolUnstored: %v %q %v, want %v and no leftover", files, leftover, err, want)
	}
}
