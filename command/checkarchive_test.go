package command

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/verify"
)

// TestCheckSystemID_OnlyForeignAuthenticated: where the only backups whose
// metadata authenticates are another system's, an unsigned backup planted
// beside them, recording no system, does not stand for the node's
// cluster: check fails naming the other system's backup, as it does
// without the planted one. Before, the planted backup was the newest of
// the node's system and check said nothing.
func TestCheckSystemID_OnlyForeignAuthenticated(t *testing.T) {
	other := &archive.BackupInfo{Name: "2024-05-01_0", Auth: archive.AuthOK, SystemID: "7000000000000000001"}
	planted := &archive.BackupInfo{Name: "2099-01-01_0", Auth: archive.AuthNone}
	var out bytes.Buffer
	r := &checkReport{w: &out}
	checkSystemID(r, "node", "7000000000000000002", []*archive.BackupInfo{other, planted})
	if r.failed != 1 || !strings.Contains(out.String(), "the newest backup "+other.Name) {
		t.Errorf("check of a node of another system: %d failed\n%s", r.failed, out.String())
	}
	if b := newestBackup([]*archive.BackupInfo{other, planted}, "7000000000000000002"); b != other {
		t.Errorf("newestBackup = %v, want %s", b, other.Name)
	}
}

// TestCheckSystemID_Unrecorded: where the newest backup records no
// system identifier (PGHoard's), check says that the node was not
// compared with it and how to compare by hand, as an info line; it said
// nothing, so a PGHoard user's configuration pointed at another cluster
// read as checked.
func TestCheckSystemID_Unrecorded(t *testing.T) {
	pghoard := &archive.BackupInfo{Name: "2026-12-02_03-56_0", Auth: archive.AuthNone}
	var out bytes.Buffer
	r := &checkReport{w: &out}
	checkSystemID(r, "node", "7000000000000000002", []*archive.BackupInfo{pghoard})
	want := "info     node: the newest backup 2026-12-02_03-56_0 records no system identifier"
	if r.failed != 0 || r.warnings != 0 || !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), "7000000000000000002") {
		t.Errorf("check against a backup without a system identifier: %d failed, %d warned\n%s\nwant a line starting %q naming the node's", r.failed, r.warnings, out.String(), want)
	}
}

// TestCheckChain_SystemEnd: where the newest backup's WAL ends in a
// .partial that another system's WAL follows (pg_upgrade into the same
// prefix), check says so, naming both systems and the WAL that follows,
// and warns, instead of reporting plain continuity.
func TestCheckChain_SystemEnd(t *testing.T) {
	b := &archive.BackupInfo{Name: "2024-05-01_0"}
	chain := &verify.Chain{Start: "000000010000000000000002", Newest: "000000010000000000000005.partial", Restorable: true}
	var out bytes.Buffer
	r := &checkReport{w: &out}
	checkChain(r, b, chain, nil)
	if r.warnings != 0 || !strings.Contains(out.String(), "through 000000010000000000000005.partial") {
		t.Errorf("check of a continuous chain: %d warned\n%s", r.warnings, out.String())
	}
	chain.SystemEnd = &archive.SystemEnd{
		Partial: archive.WALFile{Key: "site/xlog/000000010000000000000005.partial"}, System: 7000000000000000001,
		Next: archive.WALFile{Key: "site/xlog/000000010000000000000007"}, NextSystem: 7000000000000000002,
	}
	out.Reset()
	r = &checkReport{w: &out}
	checkChain(r, b, chain, nil)
	for _, want := range []string{"000000010000000000000005.partial", "7000000000000000001", "7000000000000000002", "site/xlog/000000010000000000000007", "pg_upgrade", "prefix"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check does not say %s:\n%s", want, out.String())
		}
	}
	if r.warnings != 1 {
		t.Errorf("check of a chain that ends its system's WAL: %d warned, want 1\n%s", r.warnings, out.String())
	}
}
