package verify

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// TestRun_ControlReadOnce: verify reads the control object of a backup
// that carries backup_manifest once (its manifest, backup_label and
// backup_manifest in one pass), and with --full twice: once with the
// others before any chunk, once when its first chunk is checked, for
// backup_manifest and the control tar's files, compared with it (so that
// verify holds the manifests of the backups whose chunks it checks, not
// of every backup). A control tar of more files than it keeps
// (restore.maxControlFiles: 64) is read a third time, and compared all
// the same: one of them changed is reported. Before, backup_manifest
// took a pass of its own, and with --full the control tar's files a
// third.
func TestRun_ControlReadOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		full  bool
		extra int  // more files in the control tar
		alter bool // the last of them differs from backup_manifest
		want  int
	}{
		{"Quick", false, 0, false, 1},
		{"Full", true, 0, false, 2},
		{"FullManyControlFiles", true, 70, false, 3},
		{"ErrFullManyControlFiles", true, 70, true, 3},
		{"ErrFullControlFile", true, 1, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := pgManifestRead()
			delete(files, "pg_tblspc/16400/PG_15_202209061/5/6666")
			var chunk []hostile.Member
			for _, p := range []string{"base/1/2222", "base/1/3333"} {
				chunk = append(chunk, hostile.Member{Name: "pgdata/" + p, Body: files[p]})
			}
			var control []hostile.Member
			for i := range tc.extra {
				p := fmt.Sprintf("base/1/%d", 7000+i)
				files[p] = fmt.Sprint(i)
				body := files[p]
				if tc.alter && i == tc.extra-1 {
					body = "altered"
				}
				control = append(control, hostile.Member{Name: "pgdata/" + p, Body: body})
			}
			control = append(control, hostile.Member{Name: archive.ControlPGManifest, Body: hostile.PGManifestJSON(t, files)})
			a := testArchive(t)
			st := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_03-00_0", PGManifest: true,
				Chunks: [][]hostile.Member{chunk}, PGControl: files["global/pg_control"], Control: control})
			log := &storetest.OpenLog{Store: a.Store, Match: func(key string) bool { return strings.Contains(key, "/basebackup/") }}
			a.Store = log
			rep := run(t, a, tc.full)
			if tc.alter {
				checkPGManifestReport(t, []string{fmt.Sprintf(`"base/1/%d"`, 7000+tc.extra-1), "control object"}, false, rep)
			} else if !rep.OK() {
				t.Fatalf("verify (full %v) of a sound backup: not ok:\n%s", tc.full, problems(rep))
			}
			if got := log.Count(st.ControlKey); got != tc.want {
				t.Errorf("control object of %s opened %d times, want %d: %v", st.Name, got, tc.want, log.Keys())
			}
		})
	}
}

// TestRun_ControlReadOnceChain: for an incremental chain, verify reads
// each backup's control object once, the parent's backup_manifest, which
// restore requires whatever its metadata says (readControl's parent),
// in the same pass; with --full twice, as any backup. Before, the
// parent's was read twice more (its own check and the parent's), and
// with --full each backup's a third time.
func TestRun_ControlReadOnceChain(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	for _, tc := range []struct {
		full bool
		want int
	}{{false, 1}, {true, 2}} {
		t.Run(fmt.Sprintf("full=%v", tc.full), func(t *testing.T) {
			a := testArchive(t)
			pst := putChainLevel(t, a, parent, "", chainFiles(false), chainFiles(false))
			cst := putChainLevel(t, a, child, parent, chainFiles(true), chainFiles(true))
			log := &storetest.OpenLog{Store: a.Store, Match: func(key string) bool { return strings.Contains(key, "/basebackup/") }}
			a.Store = log
			if rep := run(t, a, tc.full); !rep.OK() {
				t.Fatalf("verify of a sound chain: not ok:\n%s", problems(rep))
			}
			for _, st := range []hostile.Stored{pst, cst} {
				if got := log.Count(st.ControlKey); got != tc.want {
					t.Errorf("control object of %s opened %d times, want %d: %v", st.Name, got, tc.want, log.Keys())
				}
			}
		})
	}
}
