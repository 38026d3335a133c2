package command

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
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
