package command

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/pghoardtest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// TestCheck_PGHoardSystemFromWAL: a PGHoard archive's backups record no
// system identifier, but every WAL segment's first page does: check
// compares the node's with the one of the newest backup's first segment
// (read whole, authenticated), as it compares a hoard backup's recorded
// one, instead of saying that it is not checked. The archive is the
// real PGHoard's (internal/pghoardtest), its backup starting in segment
// 2: a node of another cluster fails; where that segment is the node's
// own (wal-push of the node's segment 2 in its place), the node is the
// backup's cluster.
func TestCheck_PGHoardSystemFromWAL(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true})
	var nodeID string
	c.Scan(t, "select system_identifier::text from pg_control_system()", &nodeID)
	const backup = "2026-12-02_03-56_0"
	const start = "000000010000000000000002" // its start-wal-segment
	for _, tc := range []struct {
		name string
		own  bool // the node's segment in place of the fixture's
	}{{"ErrOtherCluster", false}, {"SameCluster", true}} {
		t.Run(tc.name, func(t *testing.T) {
			store := storetest.Local(t)
			if out, err := exec.Command("cp", "-a", filepath.Join(pghoardtest.RealDir("basic"), "store", "site"), filepath.Join(store.Directory, "db")).CombinedOutput(); err != nil {
				t.Fatalf("copy the PGHoard archive: %v\n%s", err, out)
			}
			data, err := os.ReadFile(filepath.Join(pghoardtest.RealDir("basic"), "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var fixture struct {
				Sites map[string]map[string]any `json:"backup_sites"`
			}
			if err := json.Unmarshal(data, &fixture); err != nil {
				t.Fatal(err)
			}
			site := checkSite(t, store, "archive_command", clusterNode(c))
			for k, v := range fixture.Sites["site"] {
				site[k] = v
			}
			want := "FAILED   postgresql node 0: system identifier " + nodeID + " is not "
			if tc.own {
				for _, f := range []string{start, start + ".metadata"} {
					if err := os.Remove(filepath.Join(store.Directory, "db", "xlog", f)); err != nil {
						t.Fatal(err)
					}
				}
				for c.SwitchWAL(t) < start {
				}
				walPush(t, site, filepath.Join(c.DataDir, "pg_wal", start))
				want = "ok       postgresql node 0: same cluster as the newest backup " + backup
			}
			_, out := runCheckSite(t, site)
			wantLines(t, out, want)
		})
	}
}

// walPush runs hoard wal-push of path into site (the site "db" of
// checkSite).
func walPush(t *testing.T, site map[string]any, path string) {
	t.Helper()
	cfg := writeDBSiteConfig(t, site)
	app := App("test")
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, io.Discard
	if err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "--config", cfg, "wal-push", "--allow-root", path})); err != nil {
		t.Fatalf("wal-push %s: %v\n%s", path, ErrorMessage(err), out.String())
	}
}
