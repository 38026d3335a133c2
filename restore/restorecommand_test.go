package restore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

func TestWALFetchCommand(t *testing.T) {
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	got, err := WALFetchCommand("", "default")
	if err != nil || got != ShellQuote(exe)+" --site default wal-fetch %f %p" {
		t.Errorf("env-only: %q, %v", got, err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	got, err = WALFetchCommand("my hoard.json", "s1")
	want := ShellQuote(exe) + " --config '" + filepath.Join(dir, "my hoard.json") + "' --site s1 wal-fetch %f %p"
	if err != nil || got != want {
		t.Errorf("with config: %q, want %q (%v)", got, want, err)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/hoard": "/usr/bin/hoard",
		"/a b/hoard":     "'/a b/hoard'",
		"it's":           `'it'\''s'`,
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestWALFetch_Command(t *testing.T) {
	f, err := NewWALFetch("", "")
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	at := &archive.ArchivedThrough{Last: wal.Segment{Timeline: 2, No: 0x1FF}, SegmentSize: 1 << 24}
	if got, want := f.Command(at), ShellQuote(exe)+" wal-fetch --archived-through 0000000200000001000000FF --wal-segment-size 16777216 %f %p"; got != want {
		t.Errorf("Command = %q, want %q", got, want)
	}
	if got, want := f.Command(nil), ShellQuote(exe)+" wal-fetch %f %p"; got != want {
		t.Errorf("Command(nil) = %q, want %q", got, want)
	}
}

// TestWALFetch_CommandAcceptTruncated: the segments the operator accepts
// as truncated go into every restore_command written, standby or not.
func TestWALFetch_CommandAcceptTruncated(t *testing.T) {
	f, err := NewWALFetch("", "")
	if err != nil {
		t.Fatal(err)
	}
	f.AcceptTruncated([]string{"000000010000000000000004", "000000020000000000000007"})
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	accept := " --accept-truncated 000000010000000000000004 --accept-truncated 000000020000000000000007"
	at := &archive.ArchivedThrough{Last: wal.Segment{Timeline: 2, No: 0x1FF}, SegmentSize: 1 << 24}
	if got, want := f.Command(at), ShellQuote(exe)+" wal-fetch"+accept+" --archived-through 0000000200000001000000FF --wal-segment-size 16777216 %f %p"; got != want {
		t.Errorf("Command = %q, want %q", got, want)
	}
	if got, want := f.Command(nil), ShellQuote(exe)+" wal-fetch"+accept+" %f %p"; got != want {
		t.Errorf("Command(nil) = %q, want %q", got, want)
	}
}
