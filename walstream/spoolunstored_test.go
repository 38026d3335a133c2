package walstream

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// TestSpoolUnstored: the files a spool holds that no run is known to
// have stored. Complete segments and .history files count; an ended
// timeline's .partial holding WAL counts (a Run stores it whole); the
// newest .partial that holds no WAL (zeros) is no leftover. A spool that
// does not exist holds nothing. The leftover holding valid WAL is shown
// with a real server's WAL by the daemon's tests (TestRun_OrphanSpool).
func TestSpoolUnstored(t *testing.T) {
	files, leftover, err := SpoolUnstored(filepath.Join(t.TempDir(), "none"), nil)
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
	files, leftover, err = SpoolUnstored(dir, nil)
	want := []string{"000000010000000000000003", "000000010000000000000004.partial", "00000002.history"}
	if err != nil || !slices.Equal(files, want) || leftover != "" {
		t.Errorf("SpoolUnstored: %v %q %v, want %v and no leftover", files, leftover, err, want)
	}
}

// TestSpoolUnstored_Marker: the leftover .partial does not count while
// the spool's marker of a stored copy (writeStoredMarker) names it, its
// valid WAL ends within the stored length and its first stored-length
// bytes have the marker's CRC-32C. A marker of a shorter copy (a later
// run fsynced more and died), of another file, of other bytes (another
// cluster's WAL under the same name), or one that cannot be parsed
// (passed to warn) counts for nothing.
func TestSpoolUnstored_Marker(t *testing.T) {
	z := waltest.ZeroEndedSegment(t, pgtest.Versions()[len(pgtest.Versions())-1])
	name := z.Name + wal.PartialSuffix
	otherBytes := bytes.Clone(z.Data)
	otherBytes[len(otherBytes)-1] ^= 0xff // past the WAL: only the CRC-32C tells
	for _, tc := range []struct {
		name   string
		data   []byte // the spool's file after the marker was written
		marker func(dir string) error
		want   string // the leftover
		warned bool
	}{
		{"OK", z.Data, func(dir string) error {
			return writeStoredMarker(dir, name, filepath.Join(dir, name), uint64(z.Aligned))
		}, "", false},
		{"OKWholeFile", z.Data, func(dir string) error {
			return writeStoredMarker(dir, name, filepath.Join(dir, name), uint64(len(z.Data)))
		}, "", false},
		{"ErrNone", z.Data, func(string) error { return nil }, name, false},
		{"ErrShorterCopy", z.Data, func(dir string) error {
			return writeStoredMarker(dir, name, filepath.Join(dir, name), uint64(z.Before))
		}, name, false},
		{"ErrOtherFile", z.Data, func(dir string) error {
			other := "000000010000000000000063" + wal.PartialSuffix
			if err := os.WriteFile(filepath.Join(dir, other), z.Data, 0o600); err != nil {
				return err
			}
			defer os.Remove(filepath.Join(dir, other))
			return writeStoredMarker(dir, other, filepath.Join(dir, other), uint64(z.Aligned))
		}, name, false},
		{"ErrOtherBytes", otherBytes, func(dir string) error {
			return writeStoredMarker(dir, name, filepath.Join(dir, name), uint64(len(z.Data)))
		}, name, false},
		{"ErrCorrupt", z.Data, func(dir string) error {
			return os.WriteFile(filepath.Join(dir, StoredMarkerName), []byte("hoard-stored-partial 1 "+name+" x 0\n"), 0o600)
		}, name, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, name), z.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := tc.marker(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			var warned error
			files, leftover, err := SpoolUnstored(dir, func(err error) { warned = err })
			if err != nil || len(files) != 0 || leftover != tc.want {
				t.Errorf("SpoolUnstored: %v %q %v, want no files and leftover %q", files, leftover, err, tc.want)
			}
			if (warned != nil) != tc.warned {
				t.Errorf("warned %v, want a warning: %v", warned, tc.warned)
			}
			if tc.warned && !strings.Contains(warned.Error(), StoredMarkerName) {
				t.Errorf("warning %v does not name the marker", warned)
			}
		})
	}
}
