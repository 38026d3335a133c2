package command

import (
	"bytes"
	"errors"
	"fmt"
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
	checkSystemID(r, "node", "7000000000000000002", []*archive.BackupInfo{other, planted}, nil)
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
	checkSystemID(r, "node", "7000000000000000002", []*archive.BackupInfo{pghoard}, nil)
	want := "info     node: the newest backup 2026-12-02_03-56_0 records no system identifier"
	if r.failed != 0 || r.warnings != 0 || !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), "7000000000000000002") {
		t.Errorf("check against a backup without a system identifier: %d failed, %d warned\n%s\nwant a line starting %q naming the node's", r.failed, r.warnings, out.String(), want)
	}
}

// TestCheckSystemID_UnrecordedWAL: where the newest backup records no
// system identifier, the one its first WAL segment names is compared
// (TestCheck_PGHoardSystemFromWAL reads it from a real PGHoard archive);
// a segment that does not read (tampered with, damaged) is a warning,
// one the archive lacks an info line, each saying why nothing was
// compared.
func TestCheckSystemID_UnrecordedWAL(t *testing.T) {
	pghoard := &archive.BackupInfo{Name: "2026-12-02_03-56_0", Auth: archive.AuthNone}
	seg := "000000010000000000000002"
	for _, tc := range []struct {
		name           string
		system         string
		err            error
		failed, warned int
		want           string
	}{
		{"OK", "7000000000000000002", nil, 0, 0, "ok       node: same cluster as the newest backup 2026-12-02_03-56_0: its first WAL segment " + seg},
		{"ErrOther", "7000000000000000001", nil, 1, 0, "FAILED   node: system identifier 7000000000000000002 is not 7000000000000000001, the one the first WAL segment " + seg},
		{"Unread", "", errors.New("its first segment " + seg + ": tampered"), 0, 1, "warning  node: the newest backup 2026-12-02_03-56_0 records no system identifier (PGHoard's backups do not), and its WAL does not say: its first segment " + seg + ": tampered"},
		{"NotStored", "", fmt.Errorf("%w: its first segment %s is not in the archive", errNoWALSystem, seg), 0, 0, "info     node: the newest backup 2026-12-02_03-56_0 records no system identifier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			r := &checkReport{w: &out}
			checkSystemID(r, "node", "7000000000000000002", []*archive.BackupInfo{pghoard}, func(b *archive.BackupInfo) (string, string, error) {
				if b != pghoard {
					t.Errorf("WAL system of %s, want of %s", b.Name, pghoard.Name)
				}
				return tc.system, seg, tc.err
			})
			if r.failed != tc.failed || r.warnings != tc.warned || !strings.HasPrefix(out.String(), tc.want) {
				t.Errorf("%d failed, %d warned (want %d, %d)\n%s\nwant a line starting %q", r.failed, r.warnings, tc.failed, tc.warned, out.String(), tc.want)
			}
		})
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

// TestCheckChain_NoWAL: where the archive holds no WAL of the newest
// backup at all (nothing archives into the site: archive_command names
// another configuration, no daemon streams it), check says so and what
// stores it. It said "the archive ends in -, before the backup's end",
// and that the backup restores once the server finishes that segment.
func TestCheckChain_NoWAL(t *testing.T) {
	b := &archive.BackupInfo{Name: "2024-05-01_0"}
	chain := &verify.Chain{Start: "000000010000000000000012", End: "000000010000000000000012"}
	var out bytes.Buffer
	r := &checkReport{w: &out}
	checkChain(r, b, chain, nil)
	if r.failed != 1 || strings.Contains(out.String(), "ends in -") {
		t.Errorf("check of a backup with no WAL stored: %d failed, want 1, without \"ends in -\"\n%s", r.failed, out.String())
	}
	for _, want := range []string{"holds none of its WAL", "000000010000000000000012", "hoard daemon", "wal-push"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check does not say %s:\n%s", want, out.String())
		}
	}
}

// TestCheckChain_DamagedHistory: the newest backup's WAL continues, but
// a timeline history file PostgreSQL asks for while it recovers it is
// stored damaged (verify.Chain.DamagedHistory): hoard restore refuses
// the backup, so check fails naming the file, where it said the WAL
// continues.
func TestCheckChain_DamagedHistory(t *testing.T) {
	b := &archive.BackupInfo{Name: "2024-05-01_0"}
	chain := &verify.Chain{Start: "000000010000000000000002", Newest: "000000010000000000000005", Restorable: true,
		DamagedHistory: errors.New("backup 2024-05-01_0: timeline history file site/timeline/00000002.history is stored damaged")}
	var out bytes.Buffer
	r := &checkReport{w: &out}
	checkChain(r, b, chain, nil)
	if r.failed != 1 || !strings.Contains(out.String(), "site/timeline/00000002.history is stored damaged") || strings.Contains(out.String(), "WAL continues") {
		t.Errorf("check of a backup whose recovery meets a damaged history file: %d failed, want 1 naming the file\n%s", r.failed, out.String())
	}
}
