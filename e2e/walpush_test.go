package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestWALPush_PGVersion archives WAL through hoard wal-push as
// archive_command and reads the stored objects' sidecars as PGHoard would:
// pg-version is the server's full server_version_num when the site's node
// is the cluster that wrote the WAL, and only the major version from the
// page header when the node is another cluster; Content-Length is the
// stored size.
func TestWALPush_PGVersion(t *testing.T) {
	major := pgtest.Versions()[0]
	s := newSite(t, siteOptions{})
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	other := pgtest.Start(t, pgtest.Options{Major: major})

	for _, tc := range []struct {
		name string
		node *pgtest.Cluster
		want string
	}{
		{"OwnNode", src, src.QueryString(t, "show server_version_num")},
		{"ErrOtherCluster", other, strconv.Itoa(major * 10000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.setNode(tc.node)
			seg := switchAndWaitArchived(t, src)
			md := readSidecar(t, filepath.Join(s.storeDir, s.name, "xlog", seg))
			if md["pg-version"] != tc.want {
				t.Errorf("%s: pg-version %q, want %q", seg, md["pg-version"], tc.want)
			}
			fi, err := os.Stat(filepath.Join(s.storeDir, s.name, "xlog", seg))
			if err != nil {
				t.Fatal(err)
			}
			if md["Content-Length"] != strconv.FormatInt(fi.Size(), 10) {
				t.Errorf("%s: Content-Length %q, stored size %d", seg, md["Content-Length"], fi.Size())
			}
		})
	}
	if log := src.Log(); !strings.Contains(log, "pg-version records the major version only") || !strings.Contains(log, "belongs to cluster") {
		t.Errorf("no warning about the other cluster in the server log:\n%s", tailLines(log, 20))
	}
}

// setNode makes c the site's only node.
func (s *site) setNode(c *pgtest.Cluster) {
	s.t.Helper()
	s.setSiteKey("nodes", []any{map[string]any{"host": c.Host, "port": c.Port, "user": "postgres", "sslmode": "disable"}})
}

// readSidecar reads a local store's metadata sidecar for the object file.
func readSidecar(t testing.TB, object string) map[string]string {
	t.Helper()
	var md map[string]string
	if err := json.Unmarshal(readFile(t, object+".metadata"), &md); err != nil {
		t.Fatalf("%s.metadata: %v", object, err)
	}
	return md
}
