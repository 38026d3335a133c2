package pgtest

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StartArchiving is Start with archive_mode on and an archive_command
// that copies each WAL file into the returned directory.
func StartArchiving(t testing.TB, opts Options) (*Cluster, string) {
	t.Helper()
	walDir := TempDir(t)
	conf := map[string]string{"archive_mode": "on", "archive_command": "cp %p " + walDir + "/%f"}
	maps.Copy(conf, opts.Conf)
	opts.Conf = conf
	return Start(t, opts), walDir
}

// SwitchArchived ends the current WAL segment and waits until
// archive_command copied it into walDir (a cluster of StartArchiving).
// It writes a record first: on an idle server the switch does nothing.
func (c *Cluster) SwitchArchived(t testing.TB, walDir string) {
	t.Helper()
	c.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'switch')")
	last := c.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "select pg_switch_wal()")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(walDir, last)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s was not archived", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
