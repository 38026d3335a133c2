package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestVerify runs hoard verify, verify --full, verify --restore and
// archive-sync against a real cluster's archive, good and damaged: a
// flipped byte in a chunk passes the quick check but not --full nor a test
// restore; a WAL segment deleted from the archive is named by verify, makes
// the test restore fail, and archive-sync stores it again from pg_wal.
func TestVerify(t *testing.T) {
	onMajors(t, testVerify)
}

func testVerify(t *testing.T, major int) {
	s := newSite(t, siteOptions{Encrypt: true})
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf(), DataChecksums: true})
	s.use(src)
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")
	s.mustHoard("basebackup", "--fast")
	b := s.listBackups()[0]
	var segs []string
	for range 3 {
		src.Exec(t, "insert into pgbench_history (tid, bid, aid, delta) values (1, 1, 1, 1)")
		segs = append(segs, switchAndWaitArchived(t, src))
	}

	t.Run("Good", func(t *testing.T) {
		out := s.mustHoard("verify")
		if !strings.Contains(out, "OK:") || !strings.Contains(out, b.Name) {
			t.Errorf("verify output:\n%s", out)
		}
		var rep struct {
			Backups []struct {
				Name, Status, ReachSegment string
			}
		}
		js := s.mustHoard("verify", "--full", "--json")
		if err := json.Unmarshal([]byte(strings.ReplaceAll(js, "reach_wal_segment", "ReachSegment")), &rep); err != nil {
			t.Fatalf("verify --json: %v\n%s", err, js)
		}
		if len(rep.Backups) != 1 || rep.Backups[0].Status != "ok" || rep.Backups[0].ReachSegment < segs[2] {
			t.Errorf("verify --full --json: %+v, want ok reaching %s", rep.Backups, segs[2])
		}
		out = s.mustHoard("verify", "--restore")
		if !strings.Contains(out, "restore test PASSED") || !strings.Contains(out, "amcheck") {
			t.Errorf("verify --restore output:\n%s", out)
		}
		t.Logf("verify --restore:\n%s", out)
	})

	t.Run("TamperedChunk", func(t *testing.T) {
		victim, undo := s.tamperChunk(t, b.Name)
		defer undo()

		s.mustHoard("verify") // same size: the quick check cannot see it
		for _, args := range [][]string{{"verify", "--full"}, {"verify", "--restore"}} {
			out, errOut, err := s.hoard(args...)
			if code := exitCode(err); code != 1 {
				t.Fatalf("hoard %s on a tampered chunk: exit %d, want 1\n%s\n%s", strings.Join(args, " "), code, out, errOut)
			}
			if key := filepath.Base(victim); !strings.Contains(out+errOut, key) {
				t.Errorf("hoard %s does not name the tampered object %s:\n%s\n%s", strings.Join(args, " "), key, out, errOut)
			}
		}
	})

	t.Run("MissingWAL", func(t *testing.T) {
		victim := segs[1]
		if victim <= b.EndWALSegment {
			t.Fatalf("segment %s is not after the backup's end %s", victim, b.EndWALSegment)
		}
		if _, err := os.Stat(filepath.Join(src.DataDir, "pg_wal", victim)); err != nil {
			t.Fatalf("%s is no longer in pg_wal: %v", victim, err)
		}
		seg := filepath.Join(s.storeDir, s.name, "xlog", victim)
		for _, p := range []string{seg, seg + ".metadata"} {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}

		for _, args := range [][]string{{"verify"}, {"verify", "--restore"}} {
			out, errOut, err := s.hoard(args...)
			if code := exitCode(err); code != 1 {
				t.Fatalf("hoard %s with %s missing: exit %d, want 1\n%s\n%s", strings.Join(args, " "), victim, code, out, errOut)
			}
			if !strings.Contains(out, victim) {
				t.Errorf("hoard %s does not name the missing segment %s:\n%s", strings.Join(args, " "), victim, out)
			}
		}

		// archive-sync on the database host stores it again from pg_wal.
		s.setSiteKey("pg_data_directory", src.DataDir)
		out := s.mustHoard("archive-sync")
		if !strings.Contains(out, "stored "+victim) || !strings.Contains(out, "archive continuous") {
			t.Errorf("archive-sync output:\n%s", out)
		}
		// The node (PGHOST) is the cluster whose pg_wal was read: its full
		// version, as wal-push records it.
		if got, want := readSidecar(t, seg)["pg-version"], src.QueryString(t, "show server_version_num"); got != want {
			t.Errorf("%s stored again by archive-sync: pg-version %q, want %q", victim, got, want)
		}
		s.mustHoard("verify", "--full")
	})
}
