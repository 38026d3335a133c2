package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestSupervisor_DeadNodeOnePass: in archive_command mode a node that
// does not answer (its host hangs) costs the backup loop's pass one
// timeout of its system identifier's query, not one per caller (the look
// for other systems' history files, the schedule's decision, retention).
func TestSupervisor_DeadNodeOnePass(t *testing.T) {
	// A node whose host hangs.
	port, accepted := testio.StallServer(t)
	conn := fmt.Sprintf("host=127.0.0.1 port=%d user=nobody dbname=nobody sslmode=disable", port)
	d := testDaemon(t)
	d.opts.RetentionInterval = time.Hour
	s, _ := archiveCommandLoop(t, d, conn, &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Site: "main"})
	started := time.Now()
	deadline := started.Add(2 * time.Minute)
	for {
		s.mu.Lock()
		passed := s.st.LastRetentionError != ""
		s.mu.Unlock()
		if passed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backup loop's first pass did not reach retention within 2m")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the first pass connected to the dead node %d times (%v), want once (one %v timeout)", n, time.Since(started).Round(time.Second), serverVersionTimeout)
	}
}
