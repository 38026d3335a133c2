package wal

import "fmt"

// Run is a run of consecutive WAL segments, each named on the timeline it
// is read from: the segments of a gap in an archive, or of a hole in what
// was streamed.
type Run struct {
	First string `json:"first"`
	Last  string `json:"last"`
	Count uint64 `json:"count"`
}

// String names the run: one segment, or the first and last of a run and
// how many it holds.
func (r Run) String() string {
	if r.Count == 1 {
		return r.First
	}
	return fmt.Sprintf("%s..%s (%d segments)", r.First, r.Last, r.Count)
}
