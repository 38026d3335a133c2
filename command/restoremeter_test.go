package command

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/restore"
)

// TestRestoreMeter_Report: the restore progress log gives bytes_per_second
// in whole bytes, not a float with a dozen digits.
func TestRestoreMeter_Report(t *testing.T) {
	var logs bytes.Buffer
	m := &restoreMeter{w: &bytes.Buffer{}, env: &siteEnv{log: zerolog.New(&logs)}, start: time.Now().Add(-3 * time.Second)}
	m.report(restore.Progress{Chunks: 2, ChunksDone: 1, Bytes: 2000, BytesDone: 1000})
	var line map[string]json.RawMessage
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", logs.String(), err)
	}
	var rate int64
	if err := json.Unmarshal(line["bytes_per_second"], &rate); err != nil || rate < 100 || rate > 334 {
		t.Errorf("bytes_per_second = %s (%v), want a whole number of bytes, about 1000/3", line["bytes_per_second"], err)
	}
}
