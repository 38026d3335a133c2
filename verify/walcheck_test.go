package verify

import (
	"context"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
)

// TestRun_FullTruncatedSegment: verify --full's problem for a segment
// refused as truncated names, as wal-fetch's refusal does, the flag that
// accepts it and the LSN where recovery through it then ends.
func TestRun_FullTruncatedSegment(t *testing.T) {
	a := soundArchive(t)
	name := seg(1, 3)
	cut := waltest.Segment(t, name, segSize, 1)
	clear(cut[segSize/2:])
	putSegment(t, a, name, cut)
	rep := run(t, a, true)
	got := problems(rep)
	if rep.OK() || !strings.Contains(got, "truncated") {
		t.Fatalf("verify --full of a cut copy of %s: want a problem naming it truncated, got:\n%s", name, got)
	}
	end, err := a.TruncatedEnd(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--accept-truncated-wal " + name, "--accept-truncated " + name, "ending recovery at " + end.End.String() + ":"} {
		if !strings.Contains(got, want) {
			t.Errorf("verify --full's problem for %s does not say %q:\n%s", name, want, got)
		}
	}
}
