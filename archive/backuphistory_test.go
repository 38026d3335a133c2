package archive

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/wal"
)

// TestNewerBackupHistories_SaysWhatItIs: the note on a backup history
// file newer than every listed backup says what such a file is (PostgreSQL
// archives one as any base backup of a cluster archiving into the site
// ends) and whose backup it can be, the site holding it among them: one of
// this cluster taken for another hoard (or PGHoard) site or by
// pg_basebackup, or one of another database system whose WAL goes into
// this site. It said "taken by another tool", which a user of two hoard
// sites, or of two clusters archiving into one site, could not match to
// anything.
func TestNewerBackupHistories_SaysWhatItIs(t *testing.T) {
	const segSize = 16 << 20
	start := wal.Segment{Timeline: 1, No: 2}
	b := &BackupInfo{Name: "2026-01-02_03-04_0", StartLSN: start.StartLSN(segSize) + 0x28}
	name := wal.Segment{Timeline: 1, No: 5}.Name(segSize) + ".00000028.backup"
	site := &Archive{Site: "pg1", Layout: Layout{Prefix: "pg1"}}
	files := []WALFile{{Name: name, Key: site.Layout.WALKey(name), Archive: site}}
	notes := NewerBackupHistories(files, []*BackupInfo{b}, segSize)
	if len(notes) != 1 {
		t.Fatalf("notes %q, want one", notes)
	}
	n := notes[0]
	if strings.Contains(n, "another tool") {
		t.Errorf("note %q calls the file another tool's", n)
	}
	for _, want := range []string{name, b.Name, "PostgreSQL archives", "pg_basebackup", "another hoard or PGHoard site", "another database system", "site pg1"} {
		if !strings.Contains(n, want) {
			t.Errorf("note %q does not say %q", n, want)
		}
	}
}
