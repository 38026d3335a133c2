package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// splitPoint makes a restore point in c whose record (98 bytes) starts
// before bytes before the end of a WAL page, so that it goes on after
// the next page's header (XLP_FIRST_IS_CONTRECORD): 16 splits the record
// header, 40 the name. It writes non-transactional logical messages
// sized to bring the insert position there first. Other WAL written
// between the last message and the point moves it; the point is then
// made again, named prefix-2, prefix-3, ... It returns the name of the
// split point, where its record starts, and the LSN
// pg_create_restore_point returned (its MAXALIGNed end).
func splitPoint(t *testing.T, c *pgtest.Cluster, prefix string, before uint64) (name string, start, end pglogrepl.LSN) {
	t.Helper()
	const page, short = 8192, 24
	target := page - before
	endOff := short + (98-before+7)&^7
	lsn := func(sql string, args ...any) pglogrepl.LSN {
		t.Helper()
		l, err := pglogrepl.ParseLSN(c.QueryString(t, sql, args...))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	insert := func() pglogrepl.LSN { return lsn("select pg_current_wal_insert_lsn()::text") }
	// The bytes a message of 1000 bytes takes besides them, read on one page.
	var overhead uint64
	for overhead == 0 {
		before := insert()
		after := lsn("select pg_logical_emit_message(false, 'x', repeat('y', 1000))::text")
		if uint64(before)/page == uint64(after-1)/page {
			overhead = uint64(after-before) - 1000
		}
	}
	for try := 1; try <= 20; try++ {
		cur := uint64(insert())
		off := cur % page
		var n uint64
		switch {
		case off+overhead+300 <= target:
			n = target - off - overhead
		default: // round the page
			n = page - off + target - short - overhead
		}
		lsn("select pg_logical_emit_message(false, 'x', repeat('y', $1::int))::text", int(n))
		name = fmt.Sprintf("%s-%d", prefix, try)
		start = insert()
		end = lsn("select pg_create_restore_point($1)::text", name)
		if uint64(start)%page == target && uint64(end)%page == endOff {
			return name, start, end
		}
		t.Logf("restore point %s from %s to %s, not split as meant: again", name, start, end)
	}
	t.Fatalf("no restore point made across a page boundary in 20 tries")
	return "", 0, 0
}

// TestRun_RestorePointSplit: restore points whose records are split
// across a WAL page boundary (XLP_FIRST_IS_CONTRECORD), placed so in a
// real cluster of each major version (pg_waldump, on 15, shows the
// records there). Restore finds one split in its name (the automatic
// choice, and --basebackup), and the restored cluster stops there, and
// one split in its record header; a name made twice whose first point is
// split in its name is refused as made more than once, since PostgreSQL
// stops at that first one. Before, the byte scan missed a record split
// in its name: the first restore failed with "not found in the newest
// archived WAL", the last went ahead to the first point silently.
func TestRun_RestorePointSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("real clusters")
	}
	pgtest.ForEachVersion(t, restorePointSplit)
}

func restorePointSplit(t *testing.T, major int) {
	ctx := context.Background()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major})
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	src.Exec(t, "create table t (id int primary key)")
	src.Exec(t, "insert into t values (1)")
	b := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	src.Exec(t, "insert into t values (2)")
	dup, dupStart, dupFirst := splitPoint(t, src, "dup", 40)
	src.Exec(t, "insert into t values (3)")
	dupNewest := src.QueryString(t, "select pg_create_restore_point($1)::text", dup)
	src.Exec(t, "insert into t values (4)")
	solo, soloStart, _ := splitPoint(t, src, "solo", 40)
	src.Exec(t, "insert into t values (5)")
	hdr, hdrStart, _ := splitPoint(t, src, "hdr", 16)
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	if major == 15 {
		// pg_waldump, PostgreSQL's own reader, as the oracle of where
		// the records are.
		for _, p := range []struct {
			name  string
			start pglogrepl.LSN
		}{{dup, dupStart}, {solo, soloStart}, {hdr, hdrStart}} {
			seg := src.QueryString(t, "select pg_walfile_name($1::pg_lsn)", p.start.String())
			data, err := os.ReadFile(filepath.Join(walDir, seg))
			if err != nil {
				t.Fatal(err)
			}
			out := pgtest.Waldump(t, seg, data, len(data))
			hi, lo, _ := strings.Cut(p.start.String(), "/")
			at := hi + "/" + strings.Repeat("0", max(0, 8-len(lo))) + lo
			if !regexp.MustCompile(`lsn: ` + regexp.QuoteMeta(at) + `, .*desc: RESTORE_POINT ` + regexp.QuoteMeta(p.name) + `\n`).MatchString(out) {
				t.Fatalf("pg_waldump shows no restore point %s at %s:\n%s", p.name, at, out)
			}
		}
	}

	restoreCmd := "cp " + decodeWAL(t, a) + "/%f %p"
	for _, backup := range []string{"", b.Name} {
		dir := filepath.Join(pgtest.TempDir(t), "data")
		if _, err := Run(ctx, Options{Archive: a, Backup: backup, TargetDir: dir, Target: Target{Name: solo}, RestoreCommand: restoreCmd, Logger: zerolog.Nop()}); err != nil {
			t.Errorf("restore to %s (--basebackup %q), split across a page at %s: %v", solo, backup, soloStart, err)
			continue
		}
		if backup != "" {
			continue // the same recovery
		}
		c := pgtest.StartDataDir(t, major, dir, nil)
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := c.QueryString(t, "select string_agg(id::text, ',' order by id) from t"); got != "1,2,3,4" {
			t.Errorf("restored to %s: rows %s, want 1,2,3,4", solo, got)
		}
		c.Stop(t)
	}
	dir := filepath.Join(pgtest.TempDir(t), "data")
	if _, err := Run(ctx, Options{Archive: a, Backup: b.Name, TargetDir: dir, Target: Target{Name: hdr}, RestoreCommand: restoreCmd, Logger: zerolog.Nop()}); err != nil {
		t.Errorf("restore to %s, split in its record header at %s: %v", hdr, hdrStart, err)
	}
	for _, backup := range []string{"", b.Name} {
		dir := filepath.Join(pgtest.TempDir(t), "data")
		_, err := Run(ctx, Options{Archive: a, Backup: backup, TargetDir: dir, Target: Target{Name: dup}, RestoreCommand: restoreCmd, Logger: zerolog.Nop()})
		if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), "made more than once") ||
			!strings.Contains(err.Error(), dupFirst.String()) || !strings.Contains(err.Error(), dupNewest) {
			t.Errorf("restore to %s (--basebackup %q), made at %s (split across a page) and %s: err = %v; want it refused naming both",
				dup, backup, dupFirst, dupNewest, err)
		}
	}
}
