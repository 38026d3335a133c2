package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRetentionSafety runs hoard retention against a real cluster's
// archive with basebackup_count 1 and two backups.
//
// A site "n" that moved from the cluster's site, which the configuration
// marks inactive, must delete nothing there (the policy would delete the
// older backup and its WAL), and a restore through "n" must recover every
// row. Then, with the newest backup's chunk damaged so that only a full
// decode sees it, the site's own retention must keep the older, intact
// backup, name the damaged one, and a restore of the kept backup must
// recover every row.
func TestRetentionSafety(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	src, older, newest := s.twoBackups(t)
	want := tableRows(t, src)

	t.Run("AgeWithCountMin0", func(t *testing.T) {
		// Both backups are past basebackup_age_days_max (a second), with
		// no schedule adding an interval: as in PGHoard, age deletes
		// nothing while basebackup_count_min is 0, and deletes the older
		// backup with a minimum of 1.
		s.setSiteKey("basebackup_interval_hours", nil)
		s.setSiteKey("basebackup_age_days_max", 1.0/86400)
		defer func() {
			cfg, site := s.readConfig()
			delete(site, "basebackup_interval_hours")
			delete(site, "basebackup_age_days_max")
			delete(site, "basebackup_count_min")
			s.writeConfig("", cfg)
		}()
		time.Sleep(1100 * time.Millisecond) // both backups older than the limit
		for _, tc := range []struct {
			min     int
			deletes []string
		}{{0, nil}, {1, []string{older}}} {
			s.setSiteKey("basebackup_count_min", tc.min)
			var plan struct {
				Delete []struct{ Name string } `json:"delete"`
			}
			out := s.mustHoard("retention", "--dry-run", "--json")
			if err := json.Unmarshal([]byte(out), &plan); err != nil {
				t.Fatalf("retention --json: %v\n%s", err, out)
			}
			var got []string
			for _, d := range plan.Delete {
				got = append(got, d.Name)
			}
			if strings.Join(got, ",") != strings.Join(tc.deletes, ",") {
				t.Errorf("basebackup_count_min %d: plan deletes %v, want %v\n%s", tc.min, got, tc.deletes, out)
			}
		}
	})

	t.Run("MovedFromInactive", func(t *testing.T) {
		cfg, old := s.readConfig()
		sites := cfg["backup_sites"].(map[string]any)
		old["active"] = false
		sites["n"] = map[string]any{
			"active_backup_mode": "archive_command",
			"basebackup_count":   1,
			"moved_from":         []string{s.name},
			"object_storage":     map[string]any{"storage_type": "local", "directory": filepath.Join(s.dir, "store-n")},
		}
		s.writeConfig("", cfg)
		// The new site's store is in use (its WAL folder exists, as after
		// its first upload): a local store whose directory is missing or
		// empty may be an unmounted volume, and wal-fetch refuses to answer
		// "not in the archive" from it.
		if err := os.MkdirAll(filepath.Join(s.dir, "store-n", "n", "xlog"), 0o755); err != nil {
			t.Fatal(err)
		}
		defer func() {
			old["active"] = true
			delete(sites, "n")
			s.writeConfig("", cfg)
		}()
		before := listTree(t, s.storeDir)
		out := s.mustHoard("--site", "n", "retention")
		if !strings.Contains(out, "read-only") {
			t.Errorf("retention output does not say the moved_from site is read-only:\n%s", out)
		}
		if diff := strings.Join(diffLists(before, listTree(t, s.storeDir)), "\n"); diff != "" {
			t.Errorf("retention of site n changed site %s's store:\n%s", s.name, diff)
		}
		_, errOut, err := s.hoard("--site", s.name, "retention")
		if exitCode(err) != 2 || !strings.Contains(errOut, "inactive") {
			t.Errorf("retention of the inactive site: exit %d\n%s", exitCode(err), errOut)
		}
		dir := filepath.Join(pgtest.TempDir(t), "data")
		s.mustHoard("--site", "n", "restore", "--target-dir", dir)
		restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
		restored.WaitRecoveryDone(t, 3*time.Minute)
		if got := tableRows(t, restored); got != want {
			t.Errorf("restored through site n: rows %q, want %q", got, want)
		}
		restored.Stop(t)

		// hoard verify through site n checks the backups that restore
		// reads, both stored in the old site, and names that site; a
		// chunk of one damaged there fails it (it checked n's own
		// backups only, and found none).
		var rep struct {
			Backups []struct{ Name, Site, Status string }
		}
		out = s.mustHoard("--site", "n", "verify", "--full", "--json")
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("verify --json: %v\n%s", err, out)
		}
		var got []string
		for _, b := range rep.Backups {
			got = append(got, b.Name+"@"+b.Site+":"+b.Status)
		}
		if w := older + "@" + s.name + ":ok " + newest + "@" + s.name + ":ok"; strings.Join(got, " ") != w {
			t.Errorf("verify of site n reports %v, want %s", got, w)
		}
		// The test restore chooses as restore does: the newest backup,
		// stored in the old site (it looked at n's own backups only).
		if out := s.mustHoard("--site", "n", "verify", "--restore"); !strings.Contains(out, "restore test PASSED: backup "+newest+",") {
			t.Errorf("verify --restore of site n did not test %s:\n%s", newest, out)
		}
		chunks, err := filepath.Glob(filepath.Join(s.storeDir, s.name, "basebackup_chunk", older, "*.pghoard"))
		if err != nil || len(chunks) == 0 {
			t.Fatalf("chunks of %s: %v %v", older, chunks, err)
		}
		data := readFile(t, chunks[0])
		damaged := slices.Clone(data)
		damaged[len(damaged)/2] ^= 1
		s.writeFile(chunks[0], damaged)
		out, _, err = s.hoard("--site", "n", "verify", "--full")
		s.writeFile(chunks[0], data)
		if exitCode(err) != 1 || !strings.Contains(out, older+" (site "+s.name+"): chunk ") {
			t.Errorf("verify of site n with a chunk of %s damaged: exit %d\n%s", older, exitCode(err), out)
		}
	})

	t.Run("KeepsKnownGood", func(t *testing.T) {
		s.setSiteKey("basebackup_count", 1)
		chunks, err := filepath.Glob(filepath.Join(s.storeDir, s.name, "basebackup_chunk", newest, "*.pghoard"))
		if err != nil || len(chunks) == 0 {
			t.Fatalf("chunks of %s: %v %v", newest, chunks, err)
		}
		victim := chunks[len(chunks)/2]
		data := readFile(t, victim)
		data[len(data)/2] ^= 1
		s.writeFile(victim, data)

		out := s.mustHoard("retention")
		if !strings.Contains(out, "DAMAGED") || !strings.Contains(out, newest) {
			t.Errorf("retention output does not name the damaged backup %s:\n%s", newest, out)
		}
		if got := s.listBackups(); len(got) != 2 || got[0].Name != older {
			t.Fatalf("backups after retention: %+v, want %s kept", got, older)
		}
		dir := filepath.Join(pgtest.TempDir(t), "data")
		s.mustHoard("restore", "--target-dir", dir, "--basebackup", older)
		restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
		restored.WaitRecoveryDone(t, 3*time.Minute)
		if got := tableRows(t, restored); got != want {
			t.Errorf("restored from the kept backup: rows %q, want %q", got, want)
		}
	})
}

// listTree lists the files under dir with their sizes.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, fmt.Sprintf("%s %d bytes, modified %s", rel, fi.Size(), fi.ModTime()))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// diffLists returns the lines only in a (prefixed -) or only in b (+).
func diffLists(a, b []string) []string {
	in := map[string]int{}
	for _, x := range a {
		in[x]--
	}
	for _, x := range b {
		in[x]++
	}
	var out []string
	for x, n := range in {
		switch {
		case n < 0:
			out = append(out, "- "+x)
		case n > 0:
			out = append(out, "+ "+x)
		}
	}
	sort.Strings(out)
	return out
}

// twoBackups starts the site's cluster with a table, takes two backups,
// each followed by a row and an archived WAL switch, and returns the
// cluster and the backups' names.
func (s *site) twoBackups(t *testing.T) (src *pgtest.Cluster, older, newest string) {
	t.Helper()
	src = s.startWithTable(t)
	s.mustHoard("basebackup", "--fast")
	src.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, src)
	s.mustHoard("basebackup", "--fast")
	src.Exec(t, "insert into t values (3)")
	switchAndWaitArchived(t, src)
	bs := s.listBackups()
	if len(bs) != 2 {
		t.Fatalf("%d backups, want 2", len(bs))
	}
	return src, bs[0].Name, bs[1].Name
}
