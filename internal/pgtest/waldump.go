package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ControlField returns the value of field ("Latest checkpoint location",
// ...) in Debian's pg_controldata of the stopped cluster at dataDir.
func ControlField(t testing.TB, dataDir, field string) string {
	t.Helper()
	cmd := exec.Command(Tool(t, "pg_controldata"), "-D", dataDir)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(field) + `:\s*(\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("pg_controldata has no %q:\n%s", field, out)
	}
	return string(m[1])
}

// WaldumpShutdownCheckpoint runs Debian's pg_waldump (PostgreSQL 15 WAL
// only) on data, the contents of WAL segment segment (a .partial's,
// padded here with zeros to segSize bytes), and reports whether it
// decodes a shutdown checkpoint record at checkpoint (pg_controldata's
// "Latest checkpoint location"), with the end of pg_waldump's output
// for the failure message.
func WaldumpShutdownCheckpoint(t testing.TB, segment string, data []byte, segSize int, checkpoint string) (bool, string) {
	t.Helper()
	out := Waldump(t, segment, data, segSize)
	// pg_waldump writes an LSN's low half with 8 digits, pg_controldata
	// without leading zeros.
	hi, lo, _ := strings.Cut(checkpoint, "/")
	lsn := hi + "/" + strings.Repeat("0", max(0, 8-len(lo))) + lo
	found := regexp.MustCompile(`lsn: ` + regexp.QuoteMeta(lsn) + `, .*CHECKPOINT_SHUTDOWN`).MatchString(out)
	return found, tail(out, 10)
}

// Waldump returns what Debian's pg_waldump (PostgreSQL 15 WAL only)
// prints for data, the contents of WAL segment segment (a .partial's,
// padded here with zeros to segSize bytes): one line per record it
// decodes, then why it stopped.
func Waldump(t testing.TB, segment string, data []byte, segSize int) string {
	t.Helper()
	dir := TempDir(t)
	data = append(data, make([]byte, max(0, segSize-len(data)))...)
	if err := os.WriteFile(filepath.Join(dir, segment), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Its exit status is not looked at: pg_waldump fails at the zeros
	// after the last record of a .partial.
	out, _ := exec.Command(Tool(t, "pg_waldump"), "--path", dir, segment, segment).CombinedOutput()
	return string(out)
}
