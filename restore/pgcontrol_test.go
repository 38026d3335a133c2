package restore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// controlFiles are testdata/pg_control/<major>: the pg_control initdb of
// each major wrote (x86-64, 16 MiB segments). crcAt is where PostgreSQL's
// CRC of each lies, found by checking the CRC-32C of every prefix.
var controlFiles = []struct {
	major   string
	version uint32
	crcAt   int
}{
	{"13", 1300, 288}, {"14", 1300, 288}, {"15", 1300, 288},
	{"16", 1300, 288}, {"17", 1700, 288}, {"18", 1800, 292},
}

func readControlFile(t *testing.T, major string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "pg_control", major))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestGuardCheckpoint_OK: for every major, the checkpoint location becomes
// 0/DEAD, the CRC is PostgreSQL's over the new bytes, and nothing else
// changes (checkPointCopy's REDO, which archive.ReadClusterControl reads,
// included).
func TestGuardCheckpoint_OK(t *testing.T) {
	table := crc32.MakeTable(crc32.Castagnoli)
	for _, f := range controlFiles {
		t.Run(f.major, func(t *testing.T) {
			data := readControlFile(t, f.major)
			if got := binary.LittleEndian.Uint32(data[8:]); got != f.version {
				t.Fatalf("testdata pg_control_version %d, want %d", got, f.version)
			}
			if crc32.Checksum(data[:f.crcAt], table) != binary.LittleEndian.Uint32(data[f.crcAt:]) {
				t.Fatalf("testdata: no valid CRC at %d", f.crcAt)
			}
			orig := append([]byte(nil), data...)
			got, err := guardCheckpoint(data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, orig) {
				t.Error("guardCheckpoint changed its input")
			}
			if len(got) != len(data) {
				t.Fatalf("%d bytes, want %d", len(got), len(data))
			}
			if lsn := binary.LittleEndian.Uint64(got[32:]); lsn != 0xDEAD {
				t.Errorf("checkpoint location %X, want DEAD", lsn)
			}
			if crc32.Checksum(got[:f.crcAt], table) != binary.LittleEndian.Uint32(got[f.crcAt:]) {
				t.Error("CRC does not match the new contents")
			}
			for i := range got {
				if (i < 32 || i >= 40) && (i < f.crcAt || i >= f.crcAt+4) && got[i] != data[i] {
					t.Errorf("byte %d changed: %#x, was %#x", i, got[i], data[i])
				}
			}
		})
	}
}

// TestGuardCheckpoint_Controldata: PostgreSQL's own reader of pg_control
// (pg_controldata 15) accepts the CRC and shows the guard, with REDO as
// before.
func TestGuardCheckpoint_Controldata(t *testing.T) {
	data := readControlFile(t, "15")
	got, err := guardCheckpoint(data)
	if err != nil {
		t.Fatal(err)
	}
	tool := pgtest.Tool(t, "pg_controldata")
	run := func(control []byte) string {
		t.Helper()
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "global"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), control, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tool, "-D", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_controldata: %v\n%s", err, out)
		}
		return string(out)
	}
	before, after := run(data), run(got)
	if strings.Contains(after, "WARNING") || strings.Contains(after, "CRC") {
		t.Errorf("pg_controldata warns about the guarded pg_control:\n%s", after)
	}
	if !strings.Contains(after, "Latest checkpoint location:           0/DEAD\n") {
		t.Errorf("pg_controldata does not show checkpoint 0/DEAD:\n%s", after)
	}
	redo := func(out string) string {
		for line := range strings.Lines(out) {
			if strings.HasPrefix(line, "Latest checkpoint's REDO location:") {
				return line
			}
		}
		t.Fatalf("no REDO location in:\n%s", out)
		return ""
	}
	if redo(before) != redo(after) {
		t.Errorf("REDO changed: %q, was %q", redo(after), redo(before))
	}
}

// TestGuardCheckpoint_ErrLayout: a pg_control of a version whose layout
// is not known, or too short, is returned unchanged with errControlLayout.
func TestGuardCheckpoint_ErrLayout(t *testing.T) {
	other := readControlFile(t, "15")
	binary.LittleEndian.PutUint32(other[8:], 1201)
	for name, data := range map[string][]byte{
		"Version": other,
		"Short":   readControlFile(t, "18")[:290],
		"Tiny":    []byte("c"),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := guardCheckpoint(data)
			if !errors.Is(err, errControlLayout) {
				t.Errorf("error %v, want errControlLayout", err)
			}
			if !bytes.Equal(got, data) {
				t.Error("the data changed")
			}
		})
	}
}

// TestGuardCheckpoint_ErrCRC: a damaged pg_control is refused, never given
// a CRC that matches its damage.
func TestGuardCheckpoint_ErrCRC(t *testing.T) {
	data := readControlFile(t, "17")
	data[100] ^= 1
	if _, err := guardCheckpoint(data); !errors.Is(err, ErrControlCRC) {
		t.Errorf("error %v, want ErrControlCRC", err)
	}
}

// TestExtractor_WritePGControl: writePGControl writes the guarded
// pg_control when backup_label is in place, the backup's own for an
// unknown layout, and nothing without backup_label (or with a directory
// of that name) or for a damaged one.
func TestExtractor_WritePGControl(t *testing.T) {
	orig := readControlFile(t, "16")
	guarded, err := guardCheckpoint(orig)
	if err != nil {
		t.Fatal(err)
	}
	other := append([]byte(nil), orig...)
	binary.LittleEndian.PutUint32(other[8:], 1201)
	damaged := append([]byte(nil), orig...)
	damaged[200] ^= 1
	for _, tc := range []struct {
		name    string
		label   string // backup_label in the directory: "file", "dir" or "" (none)
		data    []byte
		want    []byte // nil: nothing written
		wantErr error
	}{
		{"OK", "file", orig, guarded, nil},
		{"ErrNoLabel", "", orig, nil, ErrNoBackupLabel},
		{"ErrLabelDir", "dir", orig, nil, ErrNoBackupLabel},
		{"OtherLayout", "file", other, other, nil},
		{"ErrCRC", "file", damaged, nil, ErrControlCRC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "global"), 0o700); err != nil {
				t.Fatal(err)
			}
			label := filepath.Join(dir, "backup_label")
			switch tc.label {
			case "file":
				if err := os.WriteFile(label, []byte("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			case "dir":
				if err := os.Mkdir(label, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			ex, err := newExtractor(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ex.close()
			if err := ex.writePGControl(tc.data); !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			got, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
			if tc.want == nil {
				if !errors.Is(err, os.ErrNotExist) {
					t.Errorf("pg_control written (%v)", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("pg_control written: %d bytes, %v; not the expected ones", len(got), err)
			}
		})
	}
}
