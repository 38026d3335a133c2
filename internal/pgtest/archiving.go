package pgtest

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
)

// StartArchiving is Start with archive_mode on and an archive_command
// that copies each WAL file into the returned directory. It copies into
// a directory of its own, then renames the copy into place: a file in
// the returned directory is whole (a 64 MiB segment being copied into
// place was read half-written by a test that saw its name).
func StartArchiving(t testing.TB, opts Options) (*Cluster, string) {
	t.Helper()
	walDir, tmpDir := TempDir(t), TempDir(t)
	conf := map[string]string{"archive_mode": "on", "archive_command": "cp %p " + tmpDir + "/%f && mv " + tmpDir + "/%f " + walDir + "/%f"}
	maps.Copy(conf, opts.Conf)
	opts.Conf = conf
	return Start(t, opts), walDir
}

// SwitchWAL writes a WAL record, closes the segment that holds its end
// with pg_switch_wal and returns that segment's name. The segment holds
// the record, so every WAL written before the call is in it or in an
// earlier segment: once it is archived, so is everything the caller
// wrote. Neither the write position (pg_current_wal_lsn) nor an insert
// position read apart from the record names it for sure: right after a
// switch the write position is the start of the next segment, which
// pg_walfile_name names as the previous, already archived, segment. The
// end of the record, which pg_logical_emit_message returns, names it even
// when the record ends a segment exactly (pg_walfile_name takes the
// segment holding the byte before an LSN). The record also makes the
// switch happen: pg_switch_wal does nothing when no WAL was written since
// the last switch.
func (c *Cluster) SwitchWAL(t testing.TB) string {
	t.Helper()
	seg := c.QueryString(t, "select pg_walfile_name(pg_logical_emit_message(false, 'hoard-test', 'switch'))")
	c.Exec(t, "select pg_switch_wal()")
	return seg
}

// SwitchArchived ends the current WAL segment (SwitchWAL) and waits
// until archive_command copied it into walDir (a cluster of
// StartArchiving).
func (c *Cluster) SwitchArchived(t testing.TB, walDir string) {
	t.Helper()
	last := c.SwitchWAL(t)
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

// MountTmpfs mounts a tmpfs of sizeMB MiB for the test, owned by the
// server's user, and unmounts it when the test ends. Without root the
// test skips (fails under HOARD_TEST_STRICT=1).
func MountTmpfs(t testing.TB, sizeMB int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testio.Unavailable(t, "mounting a tmpfs needs root")
	}
	dir := filepath.Join(TempDir(t), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(sizeMB)+"m", "tmpfs", dir).CombinedOutput(); err != nil {
		testio.Unavailable(t, "mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	Chown(t, dir)
	return dir
}
