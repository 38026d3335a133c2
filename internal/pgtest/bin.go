package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
)

// DebianMajor is the major version of Debian's PostgreSQL packages, whose
// full toolset lives in DebianBinDir.
const DebianMajor = 15

// DebianBinDir holds Debian's PostgreSQL 15 binaries, client tools included.
const DebianBinDir = "/usr/lib/postgresql/15/bin"

// AllVersions are the PostgreSQL majors hoard supports, in order.
var AllVersions = []int{13, 14, 15, 16, 17, 18}

// defaultVersions are the majors tested when HOARD_PG_VERSIONS is unset:
// the oldest, Debian's and the newest.
var defaultVersions = []int{13, 15, 18}

// Unavailable is testio.Unavailable, for the tests that call it by this
// package's name.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	testio.Unavailable(t, format, args...)
}

// Versions returns the PostgreSQL majors under test, from HOARD_PG_VERSIONS:
// a comma-separated list such as "13,15,18", or "all" for 13 to 18. The
// default is 13, 15 and 18. An unparsable value panics: it is a mistake in
// the test environment, not a test failure.
func Versions() []int {
	return parseVersions(os.Getenv("HOARD_PG_VERSIONS"))
}

// ForEachVersion runs fn in a subtest per major under test (Versions),
// named by the major; fn calls t.Parallel for parallel subtests.
func ForEachVersion(t *testing.T, fn func(t *testing.T, major int)) {
	t.Helper()
	for _, major := range Versions() {
		t.Run(strconv.Itoa(major), func(t *testing.T) { fn(t, major) })
	}
}

func parseVersions(s string) []int {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return slices.Clone(defaultVersions)
	case "all":
		return slices.Clone(AllVersions)
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || !slices.Contains(AllVersions, v) {
			panic(fmt.Sprintf("HOARD_PG_VERSIONS: unsupported major %q (want a list of %v or \"all\")", f, AllVersions))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// BinDir returns the directory holding initdb, pg_ctl and postgres for the
// major version, or Debian's directory when debian is set (major must then
// be DebianMajor). It skips or fails the test when the binaries are missing.
func BinDir(t testing.TB, major int, debian bool) string {
	t.Helper()
	dir := filepath.Join(testio.CacheDir(), "pg", strconv.Itoa(major), "bin")
	if debian {
		if major != DebianMajor {
			t.Fatalf("pgtest: Debian ships PostgreSQL %d, not %d", DebianMajor, major)
		}
		dir = DebianBinDir
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			testio.Unavailable(t, "pgtest: PostgreSQL %d binaries not found (%v); run scripts/deps.sh", major, err)
		}
	}
	return dir
}

// Tool returns the path of a PostgreSQL client tool (pg_verifybackup,
// pg_waldump, pg_checksums, pgbench, psql, pg_controldata, pg_amcheck, ...)
// from Debian's PostgreSQL 15. It skips or fails the test when the tool is
// missing. Tools of one major are not guaranteed to understand another
// major's files: pg_verifybackup and pg_waldump only fit major 15 data.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(DebianBinDir, name)
	if _, err := os.Stat(p); err != nil {
		testio.Unavailable(t, "pgtest: %s not found (%v); install Debian's postgresql-15", name, err)
	}
	return p
}
