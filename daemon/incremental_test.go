package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRun_IncrementalSchedule runs the daemon against a real PostgreSQL 17
// with summarize_wal on and incremental backups scheduled between daily
// full ones: the first backup is full, the next ones incremental, each on
// the one before.
func TestRun_IncrementalSchedule(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: 17, WALSegmentSizeMB: 1, Conf: map[string]string{"summarize_wal": "on"}})
	c.Exec(t, "create table t as select generate_series(1, 10000) as i")
	site := streamingSite(t, c.ConnString("postgres"))
	site.Schedule = Schedule{Interval: 24 * time.Hour, IncrementalInterval: 2 * time.Second}
	site.Backup = basebackup.Options{Fast: true, ChunkSize: 1 << 20}
	arch, _, _ := site.OpenArchive(context.Background())
	rd := runDaemon(t, Options{Sites: []Site{site}})
	rd.waitFor("three basebackups", func(st Status) bool { return st.Sites["test"].Backups >= 3 })
	rd.stop()
	bs, err := arch.ListBackups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if bs[0].Parent != "" {
		t.Errorf("first backup %s is an incremental of %s", bs[0].Name, bs[0].Parent)
	}
	for i := 1; i < len(bs); i++ {
		if bs[i].Parent != bs[i-1].Name {
			t.Errorf("backup %s: parent %q, want %s", bs[i].Name, bs[i].Parent, bs[i-1].Name)
		}
		if bs[i].TotalSizePlain >= bs[0].TotalSizePlain {
			t.Errorf("incremental backup %s of %d bytes, the full one %d", bs[i].Name, bs[i].TotalSizePlain, bs[0].TotalSizePlain)
		}
	}
}
