package verify

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
)

// TestRun_ProblemsSayWhatToDo: the problems of missing WAL, of a missing
// timeline history and of an archive without backups say what the
// operator can do, not only what is wrong: the lines said "missing between
// the backup's start and end: the backup cannot become consistent" and no
// more.
func TestRun_ProblemsSayWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*archive.Archive)
		want  []string
	}{
		{"GapInBackup", func(a *archive.Archive) {
			putBackup(t, a, "b1", 1, 2, 4, t0)
			putSegments(t, a, 1, 2, 2)
			putSegments(t, a, 1, 4, 5)
		}, []string{"WAL: " + seg(1, 3) + " missing between the backup's start and end: the backup cannot be restored at all without it",
			"hoard archive-sync on the database host", "take a new basebackup"}},
		{"GapAfterEnd", func(a *archive.Archive) {
			putBackup(t, a, "b1", 1, 2, 3, t0)
			putSegments(t, a, 1, 2, 4)
			putSegments(t, a, 1, 8, 9)
		}, []string{"WAL: " + seg(1, 5) + ".." + seg(1, 7) + " (3 segments) missing after the backup's end: recovery stops before it",
			"hoard archive-sync on the database host", "take a new basebackup"}},
		{"MissingHistory", func(a *archive.Archive) {
			putBackup(t, a, "b1", 1, 2, 3, t0)
			putSegments(t, a, 1, 2, 5)
			putSegments(t, a, 2, 5, 6)
		}, []string{"timeline 2 has WAL segments but 00000002.history is not archived: recovery cannot follow it",
			"hoard archive-sync on the database host"}},
		{"NoBackups", func(a *archive.Archive) {
			putSegments(t, a, 1, 1, 2)
		}, []string{"no basebackups: nothing is restorable", "hoard basebackup"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testArchive(t)
			tc.setup(a)
			rep := run(t, a, false)
			for _, w := range tc.want {
				if !strings.Contains(problems(rep), w) {
					t.Errorf("problems say no %q:\n%s", w, problems(rep))
				}
			}
		})
	}
}
