package verify

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// TestRun_ControlReadOnce: verify reads the control object of a backup
// that carries backup_manifest once (its manifest, backup_label and
// backup_manifest in one pass). Before, backup_manifest took a pass of
// its own.
func TestRun_ControlReadOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		full bool
		want int
	}{{"Quick", false, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			files := pgManifestRead()
			delete(files, "pg_tblspc/16400/PG_15_202209061/5/6666")
			var chunk []hostile.Member
			for _, p := range []string{"base/1/2222", "base/1/3333"} {
				chunk = append(chunk, hostile.Member{Name: "pgdata/" + p, Body: files[p]})
			}
			a := testArchive(t)
			st := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_03-00_0", PGManifest: true,
				Chunks: [][]hostile.Member{chunk}, PGControl: files["global/pg_control"],
				Control: []hostile.Member{{Name: archive.ControlPGManifest, Body: hostile.PGManifestJSON(t, files)}}})
			log := &storetest.OpenLog{Store: a.Store, Match: func(key string) bool { return strings.Contains(key, "/basebackup/") }}
			a.Store = log
			if rep := run(t, a, tc.full); !rep.OK() {
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
// in the same pass. Before, the parent's was read twice more (its own
// check and the parent's).
func TestRun_ControlReadOnceChain(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	a := testArchive(t)
	pst := putChainLevel(t, a, parent, "", chainFiles(false), chainFiles(false))
	cst := putChainLevel(t, a, child, parent, chainFiles(true), chainFiles(true))
	log := &storetest.OpenLog{Store: a.Store, Match: func(key string) bool { return strings.Contains(key, "/basebackup/") }}
	a.Store = log
	if rep := run(t, a, false); !rep.OK() {
		t.Fatalf("verify of a sound chain: not ok:\n%s", problems(rep))
	}
	for _, st := range []hostile.Stored{pst, cst} {
		if got, want := log.Count(st.ControlKey), 1; got != want {
			t.Errorf("control object of %s opened %d times, want %d: %v", st.Name, got, want, log.Keys())
		}
	}
}
