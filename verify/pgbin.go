package verify

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// ErrNoBinaries is returned (wrapped) when no PostgreSQL binaries of the
// backup's major version are found.
var ErrNoBinaries = errors.New("no PostgreSQL binaries of the backup's major version")

// binDirCandidates returns the directories searched for a major's
// binaries, in order: explicit (when set, the only one), the directory of
// postgres on PATH, the site's pg_bin_directory, Debian's and the PGDG RPMs'
// install folders, and hoard's test cache.
func binDirCandidates(explicit, site string, major int) []string {
	if explicit != "" {
		return []string{explicit}
	}
	var dirs []string
	if p, err := exec.LookPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	if site != "" {
		dirs = append(dirs, site)
	}
	m := strconv.Itoa(major)
	cache := os.Getenv("HOARD_CACHE")
	if cache == "" {
		cache = "/var/cache/hoard"
	}
	return append(dirs,
		filepath.Join("/usr/lib/postgresql", m, "bin"),
		"/usr/pgsql-"+m+"/bin",
		filepath.Join(cache, "pg", m, "bin"),
	)
}

// versionRE matches `postgres --version`: "postgres (PostgreSQL) 15.4 ...".
var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// binaryMajor returns the major version of dir/postgres.
func binaryMajor(dir string) (int, error) {
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return 0, err
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("unexpected version %q", strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(string(m[1]))
}

// findBinDir returns the first candidate directory holding postgres and
// pg_ctl of major.
func findBinDir(explicit, site string, major int) (string, error) {
	var tried []string
	for _, d := range binDirCandidates(explicit, site, major) {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err != nil {
			tried = append(tried, d+" (no pg_ctl)")
			continue
		}
		got, err := binaryMajor(d)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", d, err))
			continue
		}
		if got != major {
			tried = append(tried, fmt.Sprintf("%s (PostgreSQL %d)", d, got))
			continue
		}
		return d, nil
	}
	return "", fmt.Errorf("%w %d; tried %s (set pg_bin_directory, HOARD_PG_BIN_DIRECTORY, or pass --pg-bin-dir)", ErrNoBinaries, major, strings.Join(tried, ", "))
}
