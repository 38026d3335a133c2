package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Damage is what DamagePage and DamagePages write over a data page, at
// 4096 bytes into the block: in its tuple data, so that the page header
// (and its LSN) stay and only the page's checksum fails.
const Damage = "damaged!"

// DamageOffset is where DamagePage writes Damage in the table's file:
// block 3.
const DamageOffset = 3*8192 + 4096

// DamagePage is DamagePages for block 3.
func (c *Cluster) DamagePage(t testing.TB) string {
	t.Helper()
	return c.DamagePages(t, 3)
}

// DamagePages creates a table "victim" in c, a cluster with data
// checksums, stops c, writes Damage into each of blocks of the table's
// file, checks that pg_checksums reports block 3 when it is one of them
// (on DebianMajor only: Debian's pg_checksums reads no other major's
// pg_control), starts c again and returns the file's path in the data
// directory (pg_relation_filepath('victim')).
func (c *Cluster) DamagePages(t testing.TB, blocks ...int64) string {
	t.Helper()
	c.Exec(t, "create table victim as select g as i, repeat('x', 100) as pad from generate_series(1, 10000) g")
	c.Exec(t, "checkpoint")
	rel := c.QueryString(t, "select pg_relation_filepath('victim')")
	c.Stop(t)
	f, err := os.OpenFile(filepath.Join(c.DataDir, rel), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, blk := range blocks {
		if _, err := f.WriteAt([]byte(Damage), blk*8192+4096); err != nil {
			f.Close()
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if c.Major == DebianMajor && slices.Contains(blocks, 3) {
		out, err := exec.Command(Tool(t, "pg_checksums"), "--check", "-D", c.DataDir).CombinedOutput()
		if err == nil || !strings.Contains(string(out), `"`+filepath.Join(c.DataDir, rel)+`", block 3`) &&
			!strings.Contains(string(out), rel+`", block 3`) {
			t.Fatalf("pg_checksums does not report block 3 of %s: %v\n%s", rel, err, out)
		}
	}
	c.Start(t)
	return rel
}
