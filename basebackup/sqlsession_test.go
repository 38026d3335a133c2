package basebackup

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// firstChunk runs do before the first chunk's Put: while the backup
// streams.
type firstChunk struct {
	storage.Store
	do   func()
	once sync.Once
}

func (s *firstChunk) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if strings.Contains(key, "/basebackup_chunk/") {
		s.once.Do(s.do)
	}
	return s.Store.Put(ctx, key, r, md)
}

// TestRun_SQLSessionEnded: a BASE_BACKUP backup's SQL session sits idle
// while the server checkpoints and streams, which may take hours, and the
// server ends it after idle_session_timeout (PostgreSQL 14+; a firewall's
// idle timeout or pg_terminate_backend do the same). The backup itself
// lives on the replication connection: the queries after it (the end
// snapshot) run on a new session, and the backup is stored, instead of
// failing every time after the whole stream.
func TestRun_SQLSessionEnded(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: 15})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	// A session's idle timeout is the one in force when it went idle.
	setTimeout := func(v string) {
		c.Exec(t, "alter system set idle_session_timeout = '"+v+"'")
		c.Exec(t, "select pg_reload_conf()")
	}
	for _, tc := range []struct {
		name        string
		setup, done func()
		do          func()
	}{
		{"IdleSessionTimeout", func() { setTimeout("1s") }, func() { setTimeout("0") },
			func() { time.Sleep(3 * time.Second) }},
		{"Terminated", func() {}, func() {}, func() {
			c.Exec(t, "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'hoard basebackup' and backend_type = 'client backend'")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			defer tc.done()
			a := localArchive(t)
			real := a.Store
			a.Store = &firstChunk{Store: real, do: tc.do}
			info, err := Run(testContext(t), Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeStream, Fast: true, NoWait: true,
				ChunkSize: 1 << 20})
			if err != nil {
				t.Fatalf("Run with the SQL session ended while it streamed: %v", err)
			}
			if info.EndXmax == 0 || info.EndTime.IsZero() {
				t.Errorf("end snapshot not recorded: xmax %d, end time %v", info.EndXmax, info.EndTime)
			}
			a.Store = real
			if bs, err := a.ListBackups(testContext(t)); err != nil || len(bs) != 1 || bs[0].Name != info.Name {
				t.Errorf("ListBackups = %v, %v", bs, err)
			}
		})
	}
}
