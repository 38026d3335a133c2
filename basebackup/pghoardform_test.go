package basebackup

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRun_PGHoardForms checks what PGHoard's tools read in a backup of a
// cluster without tablespaces: the times in PGHoard's own forms (metadata
// and manifest), and no tablespace_map, which PGHoard's backups never
// hold; the extracted backup still passes pg_verifybackup.
func TestRun_PGHoardForms(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			c := pgtest.Start(t, pgtest.Options{Major: major})
			c.Exec(t, "create table t as select generate_series(1, 1000) as i")
			a := localArchive(t)
			info, err := Run(testContext(t), Options{
				ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true,
				ChunkSize: 1 << 20, Reason: ReasonRequested, BasebackupMode: "local-tar",
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			obj, err := a.Store.Stat(testContext(t), info.Key)
			if err != nil {
				t.Fatal(err)
			}
			// datetime.isoformat() and str(datetime), as PGHoard writes them.
			iso := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00`
			forms := map[string]string{
				archive.MetaStartTime:          `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$`, // backup_label's, whole seconds
				archive.MetaEndTime:            `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00$`,
				archive.MetaBackupDecisionTime: "^" + iso + "$",
			}
			for k, re := range forms {
				if v := obj.Metadata[k]; !regexp.MustCompile(re).MatchString(v) {
					t.Errorf("metadata %s = %q, want the form %s", k, v, re)
				}
			}

			names, files := readControl(t, a, info.Key)
			want := []string{archive.ManifestName, archive.ControlPGControl, archive.ControlBackupLabel, archive.ControlPGManifest}
			for _, d := range archive.ControlEmptyDirs {
				want = append(want, d+"/")
			}
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("control tar members\n got %v\nwant %v", names, want)
			}
			js := string(files[archive.ManifestName])
			for _, re := range []string{
				`"backup_start_time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"`,
				`"backup_end_time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z"`,
			} {
				if !regexp.MustCompile(re).MatchString(js) {
					t.Errorf("manifest lacks %s:\n%s", re, js)
				}
			}
			m, err := archive.ParseManifest(files[archive.ManifestName])
			if err != nil {
				t.Fatal(err)
			}
			if !m.BackupStartTime.Equal(info.StartTime) || !m.BackupEndTime.Equal(info.EndTime) {
				t.Errorf("manifest times %v, %v; backup %v, %v", m.BackupStartTime, m.BackupEndTime, info.StartTime, info.EndTime)
			}

			pgdata := filepath.Join(t.TempDir(), "pgdata")
			roots := map[string]string{"pgdata/": pgdata}
			for _, ch := range m.Chunks {
				extract(t, a, a.Layout.ChunkKey(ch.ChunkFilename), roots)
			}
			extract(t, a, info.Key, roots)
			checkManifestFiles(t, pgdata)
			if major > verifyBackupMaxMajor {
				return
			}
			if out, err := exec.Command(pgtest.Tool(t, "pg_verifybackup"), "-n", pgdata).CombinedOutput(); err != nil {
				t.Fatalf("pg_verifybackup: %v\n%s", err, out)
			}
		})
	}
}
