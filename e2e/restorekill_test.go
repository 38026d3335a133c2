package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// TestRestore_Killed kills hoard restore with SIGKILL at three points of
// the restore of a backup with a tablespace (1 MiB chunks): at its first
// chunk download (every chunk held: nothing written yet, so the same
// command then restores without --overwrite), then, over that complete
// restore with --overwrite, in the middle of the chunks (--parallel 1,
// the fourth held), and with every chunk extracted, when it reads the
// control object again for backup_label and pg_control. After the last
// two, the operator's obvious next steps: pg_ctl start on what is there
// must fail, since global/pg_control is missing (PostgreSQL starting on a
// directory with relation files missing would serve it without them), and
// hoard restore into the same directories without --overwrite must
// refuse, naming --overwrite. The states no storage request separates, a kill after
// pg_control but before the recovery configuration (none of it, or
// postgresql.auto.conf's block without recovery.signal), are made from a
// whole restore: PostgreSQL must refuse those too (crash recovery from the
// backup_label finds no WAL in the restored pg_wal). Finally --overwrite
// over what the kills left restores every row of both tables.
func TestRestore_Killed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hoard against PostgreSQL and MinIO")
	}
	const major = 15
	minio := storetest.MinIO(t)
	proxy := newStallProxy(t, minio)
	s := newS3Site(t, proxy.config(minio))
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	s.use(src)
	spcDir := pgtest.TempDir(t)
	src.Exec(t, "create tablespace ts1 location '"+spcDir+"'")
	src.Exec(t, "create table in_ts (id int primary key, note text) tablespace ts1")
	src.Exec(t, "insert into in_ts select g, md5(g::text) from generate_series(1, 40000) g")
	src.Exec(t, "create table t (id int primary key, note text)")
	src.Exec(t, "insert into t select g, md5((g * 3)::text) from generate_series(1, 40000) g")
	s.mustHoard("basebackup", "--fast")
	switchAndWaitArchived(t, src)
	rows := func(c *pgtest.Cluster) string {
		return c.QueryString(t, "select (select count(*) || ' ' || md5(string_agg(id || note, ',' order by id)) from t) || ' / ' || "+
			"(select count(*) || ' ' || md5(string_agg(id || note, ',' order by id)) from in_ts)")
	}
	want := rows(src)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	spc := filepath.Join(pgtest.TempDir(t), "ts1")
	args := []string{"restore", "--target-dir", dir, "--tablespace-dir", "ts1=" + spc}

	isChunk := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/basebackup_chunk/")
	}
	isControl := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/basebackup/")
	}
	cases := []struct {
		name  string
		extra []string
		// stall is called for each request, with the proxy's lock held.
		stall func() func(*http.Request) bool
	}{
		{"FirstChunk", nil, func() func(*http.Request) bool { return isChunk }},
		{"MidChunks", []string{"--parallel", "1"}, func() func(*http.Request) bool {
			n := 0
			return func(r *http.Request) bool {
				if isChunk(r) {
					n++
				}
				return isChunk(r) && n >= 4
			}
		}},
		// The control object is read once before the chunks (its
		// manifest) and once after all of them.
		{"ControlAfterChunks", nil, func() func(*http.Request) bool {
			chunks := false
			return func(r *http.Request) bool {
				chunks = chunks || isChunk(r)
				return chunks && isControl(r)
			}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			restoreArgs := args
			if i > 0 {
				restoreArgs = append(restoreArgs, "--overwrite") // over the previous case's remains
			}
			proxy.stallOn(tc.stall())
			code, stderr := s.interrupt(proxy, syscall.SIGKILL, append(restoreArgs, tc.extra...)...)
			proxy.stallOn(nil)
			if code == 0 {
				t.Fatalf("hoard restore killed with SIGKILL exited 0:\n%s", stderr)
			}
			inDir, inSpc := countFiles(t, dir), countFiles(t, spc)
			t.Logf("killed: %d files in the target, %d in the tablespace directory", inDir, inSpc)
			for _, f := range []string{"global/pg_control", "recovery.signal", "backup_label"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					t.Errorf("the killed restore left %s", f)
				}
			}
			if tc.name == "FirstChunk" {
				// Nothing of the backup written yet: the directories are
				// empty but for the backup's WAL the restore checked and
				// kept for wal-fetch (pg_wal/hoard-prefetch), and the same
				// command restores without --overwrite.
				spooled := countFiles(t, filepath.Join(dir, "pg_wal", archive.SpoolDirName))
				if inDir-spooled+inSpc != 0 {
					t.Fatalf("killed at the first chunk, the restore left %d files (%d of them in the prefetch spool)", inDir+inSpc, spooled)
				}
				s.mustHoard(args...)
				return
			}
			if inDir == 0 || (tc.name == "ControlAfterChunks" && inSpc == 0) {
				t.Fatalf("the kill came before the point this case tests: %d files in the target, %d in the tablespace directory", inDir, inSpc)
			}
			wantNoRerun(t, s, args)
			wantNoStart(t, major, dir)
		})
	}

	// A kill after pg_control: with hoard's postgresql.auto.conf block
	// and no recovery.signal (between WriteRecoveryConfig's two files),
	// and with neither.
	for _, tc := range []struct {
		name     string
		keepConf bool
	}{{"NoRecoverySignal", true}, {"NoRecoveryConfig", false}} {
		t.Run(tc.name, func(t *testing.T) {
			s.mustHoard(append(args, "--overwrite")...)
			if err := os.Remove(filepath.Join(dir, "recovery.signal")); err != nil {
				t.Fatal(err)
			}
			if !tc.keepConf {
				stripRecoveryBlock(t, filepath.Join(dir, "postgresql.auto.conf"))
			}
			wantNoRerun(t, s, args)
			wantNoStart(t, major, dir)
		})
	}

	s.mustHoard(append(args, "--overwrite")...)
	c := pgtest.StartDataDir(t, major, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := rows(c); got != want {
		t.Errorf("restored rows %q, want %q", got, want)
	}
}

// TestRestore_NoRecoveryConfigRefused: the states a restore killed after
// pg_control and before its recovery configuration leaves (hoard's
// postgresql.auto.conf block without recovery.signal, or neither) are
// refused by the oldest and the newest PostgreSQL hoard restores as by 15
// (TestRestore_Killed): crash recovery from the backup_label finds no WAL
// in the restored pg_wal. So is the directory once backup_label is
// removed too, as PostgreSQL's hint then suggests: crash recovery from
// pg_control's checkpoint finds no WAL either.
func TestRestore_NoRecoveryConfigRefused(t *testing.T) {
	for _, major := range []int{13, 18} {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			s := backedUpSite(t, major, "create table t as select generate_series(1, 1000) as id")
			dir := filepath.Join(pgtest.TempDir(t), "data")
			// The last state is the second after the operator followed
			// PostgreSQL's hint to remove backup_label "if you are not
			// restoring from a backup".
			for _, remove := range [][]string{{"recovery.signal"}, {"recovery.signal", "conf"}, {"recovery.signal", "conf", "backup_label"}} {
				s.mustHoard("restore", "--target-dir", dir, "--overwrite")
				for _, f := range remove {
					if f == "conf" {
						stripRecoveryBlock(t, filepath.Join(dir, "postgresql.auto.conf"))
					} else if err := os.Remove(filepath.Join(dir, f)); err != nil {
						t.Fatal(err)
					}
				}
				wantNoStart(t, major, dir)
			}
			s.mustHoard("restore", "--target-dir", dir, "--overwrite")
			c := pgtest.StartDataDir(t, major, dir, noArchiving)
			c.WaitRecoveryDone(t, 3*time.Minute)
			if got := c.QueryString(t, "select count(*) from t"); got != "1000" {
				t.Errorf("restored rows = %s, want 1000", got)
			}
		})
	}
}

// wantNoRerun runs hoard restore with args (no --overwrite) over a failed
// restore's remains: it must refuse, naming --overwrite.
func wantNoRerun(t *testing.T, s *site, args []string) {
	t.Helper()
	_, stderr, err := s.hoard(args...)
	if code := exitCode(err); code == 0 || !strings.Contains(stderr, "--overwrite") {
		t.Errorf("hoard restore over a failed restore without --overwrite: exit %d, want a refusal naming --overwrite:\n%s", code, tailLines(stderr, 5))
	}
}

// wantNoStart starts PostgreSQL on dir, a failed restore's remains: it
// must not come up.
func wantNoStart(t *testing.T, major int, dir string) {
	t.Helper()
	c, err := pgtest.TryStartDataDir(t, major, dir, noArchiving)
	if err == nil && waitRecoveryEnd(t, c, 3*time.Minute) {
		t.Fatalf("PostgreSQL started on a failed restore's remains:\n%s", tailLines(c.Log(), 20))
	}
	why := c.Log()
	if err != nil {
		why = err.Error()
	}
	t.Logf("PostgreSQL refused, as it must:\n%s", tailLines(why, 6))
}

// countFiles counts the regular files under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return n
}

// stripRecoveryBlock removes hoard's recovery configuration block from
// the postgresql.auto.conf at path.
func stripRecoveryBlock(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(data)
	i := strings.Index(conf, "# hoard created recovery configuration")
	if i < 0 {
		t.Fatalf("%s holds no hoard block:\n%s", path, conf)
	}
	if err := os.WriteFile(path, []byte(conf[:i]), 0o600); err != nil {
		t.Fatal(err)
	}
}
