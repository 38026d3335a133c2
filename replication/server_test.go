package replication

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

func TestQueryServer(t *testing.T) {
	forEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major})
		// A role with no privileges: wal-push's node may be the
		// replication role.
		c.Exec(t, "create role plain login replication")
		conn := fmt.Sprintf("host=%s port=%d user=plain dbname=postgres sslmode=disable replication=true", c.Host, c.Port)
		s, err := QueryServer(testContext(t), conn)
		if err != nil {
			t.Fatalf("QueryServer: %v", err)
		}
		if want := c.QueryString(t, "show server_version_num"); strconv.Itoa(s.Version) != want {
			t.Errorf("Version = %d, want %s", s.Version, want)
		}
		if s.Version/10000 != major {
			t.Errorf("Version = %d, want major %d", s.Version, major)
		}
		if want := c.QueryString(t, "select system_identifier::text from pg_control_system()"); strconv.FormatUint(s.SystemID, 10) != want {
			t.Errorf("SystemID = %d, want %s", s.SystemID, want)
		}
		if s.Timeline != 1 {
			t.Errorf("Timeline = %d, want 1", s.Timeline)
		}
		// The primary's flush position: durable WAL, at most where the
		// server has flushed it to since.
		if s.InRecovery {
			t.Error("InRecovery = true on a primary")
		}
		if s.Flushed == 0 || c.QueryString(t, "select ($1::pg_lsn <= pg_current_wal_flush_lsn())::text", s.Flushed.String()) != "true" {
			t.Errorf("Flushed = %s, want the primary's flush position", s.Flushed)
		}
	})
}

func TestQueryServer_ErrUnreachable(t *testing.T) {
	if _, err := QueryServer(testContext(t), "host=127.0.0.1 port=1 user=x sslmode=disable connect_timeout=5"); err == nil {
		t.Fatal("QueryServer of a closed port succeeded")
	}
}
