package archive

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestArchive_PlanRetentionRunningNote: while the chunk folder of a
// backup that may still be running keeps the WAL (every file, or the WAL
// from an older backup's start), the plan still deletes a .partial whose
// complete segment is stored and checks (superseded). The note says so,
// rather than "every WAL file is kept", which was untrue.
func TestArchive_PlanRetentionRunningNote(t *testing.T) {
	ctx := context.Background()
	const seg = "000000010000000000000006"
	for _, tc := range []struct {
		name    string
		running string // the chunk folder of the backup that may be running
		kept    string // what the note says is kept
		deleted []string
	}{
		{"NoBackupBefore", "2024-03-06_10-00_0", "every WAL file is kept until it completes", []string{seg + ".partial"}},
		{"BackupBefore", "2024-03-08_10-00_0", "WAL is kept from the start 000000010000000000000002 of backup 2024-03-07_10-00_0, which started before it",
			[]string{"000000010000000000000001", seg + ".partial"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _, _, now := twoBackups(t)
			putWAL(t, a, seg+".partial")
			putSegment(t, a, seg)
			running := putBackup(t, a, tc.running, "000000010000000000000003", 2, 0)
			if err := a.Store.Delete(ctx, running[len(running)-1]); err != nil {
				t.Fatal(err)
			}
			ageKeys(a, running[:len(running)-1], now.Add(-10*time.Minute))
			p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, w := range p.WAL {
				names = append(names, w.Name)
			}
			if !slices.Equal(names, tc.deleted) {
				t.Fatalf("plan deletes WAL %q, want %q (notes %q)", names, tc.deleted, p.Notes)
			}
			i := slices.IndexFunc(p.Notes, func(n string) bool { return strings.Contains(n, "chunks of "+tc.running) })
			if i < 0 {
				t.Fatalf("no note about the running backup %s: %q", tc.running, p.Notes)
			}
			note := p.Notes[i]
			if want := tc.kept + ", but for 1 .partial copy superseded by its complete segment, which is stored and checks: " +
				"it is deleted"; !strings.Contains(note, want) {
				t.Errorf("note %q\ndoes not say %q", note, want)
			}
		})
	}
}
