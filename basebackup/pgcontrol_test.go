package basebackup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/wal"
)

// TestReadControl_TornRead: pg_control read while the server rewrites it
// (a checkpoint, a standby's minimum recovery point) can come back torn,
// half old and half new, with a CRC that matches neither. readPGControlFile
// reads it again until the CRC matches, and fails the backup, naming the
// file, when it never does: a torn pg_control in a backup makes PostgreSQL
// refuse to start on the restored directory.
func TestReadControl_TornRead(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("..", "restore", "testdata", "pg_control", "16"))
	if err != nil {
		t.Fatal(err)
	}
	torn := append([]byte(nil), good...)
	torn[200] ^= 0xff
	unknown := append([]byte(nil), torn...)
	unknown[8] = 0 // pg_control_version 1300 becomes 1280
	cases := []struct {
		name  string
		reads [][]byte
		want  []byte // nil: an error
	}{
		{"Whole", [][]byte{good}, good},
		{"TornOnce", [][]byte{torn, torn, good}, good},
		{"TornAlways", [][]byte{torn}, nil},
		// A layout hoard does not know cannot be checked: taken as read.
		{"UnknownLayout", [][]byte{unknown}, unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			read := func(string) ([]byte, error) {
				b := tc.reads[min(n, len(tc.reads)-1)]
				n++
				return append([]byte(nil), b...), nil
			}
			got, err := readPGControlFile("/pgdata/global/pg_control", read)
			switch {
			case tc.want == nil && (err == nil || !errors.Is(err, wal.ErrControlCRC) || !strings.Contains(err.Error(), "/pgdata/global/pg_control")):
				t.Errorf("after %d reads: %v, want an error naming the file and wrapping wal.ErrControlCRC", n, err)
			case tc.want != nil && err != nil:
				t.Errorf("after %d reads: %v", n, err)
			case tc.want != nil && !bytes.Equal(got, tc.want):
				t.Errorf("after %d reads: not the pg_control wanted", n)
			}
		})
	}
}
