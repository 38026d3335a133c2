package walstream

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_SystemChange stops the cluster a Receiver streams from and
// starts another one (another system identifier) on its port, as a
// pg_upgrade in place does. The old system's last segment, never
// finished, is stored as a .partial holding the WAL the Receiver had
// fsynced, never as a complete segment. OK: the new cluster's WAL is
// beyond the old one's (pg_upgrade's shape); the Receiver goes on with
// it, its slot created again. ErrNotBeyond: the new cluster's WAL lies
// before the old one's, and would take the stored WAL's names; Run fails,
// after storing the .partial.
func TestReceiver_SystemChange(t *testing.T) {
	for _, tc := range []struct {
		name        string
		old, new    int // pg_switch_wal calls before streaming
		wantStreams bool
	}{
		{name: "OK", old: 0, new: 4, wantStreams: true},
		{name: "ErrNotBeyond", old: 4, new: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1}
			nc := pgtest.Start(t, opts)
			for range tc.new {
				switchWAL(t, nc)
			}
			nc.Stop(t)
			c := pgtest.Start(t, opts)
			for range tc.old {
				switchWAL(t, c)
			}
			s := newSink(t)
			rr := start(t, c, t.TempDir(), s, Options{})
			c.Exec(t, "create table t as select generate_series(1, 1000) as i")
			last := c.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
			c.Stop(t)
			waitFor(t, "the stream of the stopped server ended", func() bool { return !rr.r.Status().Connected })
			flushed := rr.r.Status().Flushed

			nc.Port = c.Port
			nc.Start(t)
			waitUploaded(t, s, last+wal.PartialSuffix)
			got, err := os.ReadFile(filepath.Join(s.dir, last+wal.PartialSuffix))
			if err != nil {
				t.Fatal(err)
			}
			n := int64(uint64(flushed) % (1 << 20))
			if int64(len(got)) < n {
				t.Fatalf("stored %s.partial holds %d bytes, want at least %d (up to %s)", last, len(got), n, flushed)
			}
			if want := readPrefix(t, filepath.Join(c.DataDir, "pg_wal", last), n); string(got[:n]) != string(want) {
				t.Errorf("stored %s.partial differs from the old server's segment", last)
			}
			if s.has(last) {
				t.Errorf("the old server's unfinished %s is stored as a complete segment", last)
			}
			sysNew, err := archive.ClusterSystemID(nc.DataDir)
			if err != nil {
				t.Fatal(err)
			}

			if !tc.wantStreams {
				select {
				case err := <-rr.done:
					rr.done = nil
					var fe *fatalError
					if !errors.As(err, &fe) || !strings.Contains(err.Error(), "not beyond") {
						t.Errorf("Run: %v, want a fatal error saying the new system's wal is not beyond the old one's", err)
					}
				case <-time.After(testTimeout):
					t.Fatal("Run did not end on a system whose wal lies before the old one's")
				}
				return
			}
			waitFor(t, "streaming the new system", func() bool {
				st := rr.r.Status()
				return st.Connected && st.SystemID == strconv.FormatUint(sysNew, 10)
			})
			seg := switchWAL(t, nc)
			waitUploaded(t, s, seg)
			checkStreamed(t, nc, s, []string{seg})
			if st := rr.r.Status(); st.Stored < flushed {
				t.Errorf("Stored %s, want the new system's position beyond the old one's %s", st.Stored, flushed)
			}
			rr.stop(t)
		})
	}
}
