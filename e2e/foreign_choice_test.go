package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestForeignSystem_TestRestoreAndSync: clusters A and B back up into
// sites of one name sharing a key pair; B's newer backup, started further
// on in B's WAL, is copied into A's site by someone who can write A's
// storage and read B's, and authenticates there. hoard verify --restore
// (A's node reachable) must test A's backup and pass, and hoard
// archive-sync on A's host must start from A's backup's start and store
// the segment of A's that the archive lost, where both went by B's backup:
// the test restored B's backup and failed at A's WAL, and archive-sync
// looked at no segment before B's start.
func TestForeignSystem_TestRestoreAndSync(t *testing.T) {
	a := newSite(t, siteOptions{Encrypt: true})
	srcA, own := a.startBackedUp(t)
	victim := switchAndWaitArchived(t, srcA)
	switchAndWaitArchived(t, srcA)

	b, srcB := a.sharingKeys(t)
	for range 6 { // B's backup starts after victim
		switchAndWaitArchived(t, srcB)
	}
	planted := b.foreignBackups(t, srcB, a, 1)[0]
	for _, bk := range a.listBackups() {
		if bk.Name == planted && bk.StartWALSegment <= victim {
			t.Fatalf("B's backup starts at %s, not after A's segment %s", bk.StartWALSegment, victim)
		}
	}

	out := a.mustHoard("verify", "--restore")
	if !strings.Contains(out, "restore test PASSED: backup "+own) {
		t.Errorf("verify --restore did not test A's backup %s (B's is %s):\n%s", own, planted, out)
	}

	seg := filepath.Join(a.storeDir, a.name, "xlog", victim)
	for _, p := range []string{seg, seg + ".metadata"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	a.setSiteKey("pg_data_directory", srcA.DataDir)
	out = a.mustHoard("archive-sync")
	if !strings.Contains(out, "stored "+victim) || !strings.Contains(out, "archive continuous") {
		t.Errorf("archive-sync did not store %s again from A's pg_wal (B's backup is %s):\n%s", victim, planted, out)
	}
}
