package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// lockedBuffer is a bytes.Buffer several goroutines may write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// TestRun_PGManifestReal: backups of a real PostgreSQL 15 cluster with a
// tablespace, taken over BASE_BACKUP, in local-tar and in delta mode, are
// ok with --full, every file of each (the tablespace's included)
// compared with the backup_manifest it carries.
func TestRun_PGManifestReal(t *testing.T) {
	if testing.Short() {
		t.Skip("real cluster")
	}
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: 15})
	src.Exec(t, "create tablespace extra location '"+pgtest.TempDir(t)+"'")
	src.Exec(t, "create table t (id int primary key, pad text) tablespace extra")
	src.Exec(t, "insert into t select i, repeat(md5(i::text), 4) from generate_series(1, 50000) i")
	pgtest.Pgbench(t, src, "-i", "-s", "2")
	a := testArchive(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	modes := []struct {
		name string
		mode basebackup.Mode
	}{{"BASE_BACKUP", basebackup.ModeAuto}, {"local-tar", basebackup.ModeLocal}, {"delta", basebackup.ModeDelta}}
	names := map[string]string{} // backup → mode
	for i, m := range modes {
		o := basebackup.Options{ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true,
			ChunkSize: 1 << 20, Logger: zerolog.Nop(), Mode: m.mode}
		if m.mode != basebackup.ModeAuto {
			o.PGData, o.TempDir = src.DataDir, pgtest.TempDir(t)
		}
		b, err := basebackup.Run(ctx, o)
		if err != nil {
			t.Fatalf("basebackup (%s): %v", m.name, err)
		}
		names[b.Name] = m.name
		src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 7 = "+string(rune('0'+i)))
	}
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	var logs lockedBuffer
	rep, err := Run(ctx, Options{Archive: a, Full: true, Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Backups) != len(modes) {
		t.Fatalf("verify --full of %d backups: ok %v, %d backups:\n%s", len(modes), rep.OK(), len(rep.Backups), problems(rep))
	}
	compared := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(logs.buf.String()), "\n") {
		var e struct {
			Message string `json:"message"`
			Backup  string `json:"backup"`
			Files   int    `json:"files"`
		}
		if err := json.Unmarshal([]byte(line), &e); err == nil && e.Message == "files compared with backup_manifest" {
			compared[e.Backup] = e.Files
		}
	}
	for name, mode := range names {
		t.Logf("backup %s (%s): %d files compared", name, mode, compared[name])
		if n := compared[name]; n < 900 {
			t.Errorf("backup %s (%s): %d files compared with backup_manifest, want every file of the cluster (900 or more)", name, mode, n)
		}
	}
}
