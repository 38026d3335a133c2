package restore

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestRun_BackupLabelRemoved takes a backup of a real cluster while rows
// are written and checkpoints complete, so that the pg_control it holds
// names a checkpoint after the backup's start, and restores it twice.
// Started as restored, the cluster recovers from backup_label's
// checkpoint and has every row. The second time, pg_wal holds the
// archived WAL, as a first start whose recovery failed leaves it
// (PostgreSQL keeps the segments restore_command fetched:
// KeepFileRestoredFromArchive in xlogarchive.c), and backup_label is
// removed, as PostgreSQL's HINT after such a failure suggests: it must
// refuse to start. Before restore invalidated pg_control's checkpoint
// location, PostgreSQL did crash recovery from that later checkpoint,
// with the WAL in pg_wal, skipping the changes between the backup's start
// and it, and started.
func TestRun_BackupLabelRemoved(t *testing.T) {
	for _, major := range []int{13, 15, 18} {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major})
			src.Exec(t, "create table t (id bigserial primary key, pad text)")
			src.Exec(t, "insert into t (pad) select repeat('x', 400) from generate_series(1, 20000)")
			a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
			b := backupWhileCheckpointing(t, src, a)
			src.Exec(t, "insert into t (pad) select 'after' from generate_series(1, 100)")
			const digest = "select count(*)::text || ' ' || md5(string_agg(id::text || pad, ',' order by id)) from t"
			want := src.QueryString(t, digest)
			archivetest.StoreArchivedWAL(t, src, walDir, a)

			restoreInto := func() string {
				t.Helper()
				dir := filepath.Join(pgtest.TempDir(t), "data")
				_, err := Run(context.Background(), Options{
					Archive: a, TargetDir: dir, Backup: b.Name, RestoreCommand: "cp " + walDir + "/%f %p", ArchiveOff: true, Logger: zerolog.Nop(),
				})
				if err != nil {
					t.Fatal(err)
				}
				return dir
			}

			dir := restoreInto()
			checkGuarded(t, dir)
			checkpointDuringBackup(t, dir)
			c := pgtest.StartDataDir(t, major, dir, nil)
			c.WaitRecoveryDone(t, 3*time.Minute)
			if got := c.QueryString(t, digest); got != want {
				t.Errorf("restored t: %s, want %s", got, want)
			}
			c.Stop(t)

			dir = restoreInto()
			copyWAL(t, walDir, filepath.Join(dir, "pg_wal"))
			if err := os.Remove(filepath.Join(dir, "backup_label")); err != nil {
				t.Fatal(err)
			}
			c, err := pgtest.TryStartDataDir(t, major, dir, nil)
			if err == nil {
				c.WaitRecoveryDone(t, 3*time.Minute)
				t.Fatalf("PostgreSQL %d started without backup_label (t: %s, the source had %s)", major, c.QueryString(t, digest), want)
			}
			if !strings.Contains(c.Log(), "could not locate a valid checkpoint record") {
				t.Errorf("PostgreSQL refused to start, but not for want of a checkpoint: %v\n%s", err, c.Log())
			}
		})
	}
}

// backupWhileCheckpointing takes a backup of src into a, sent slowly
// (MaxRate) while another connection inserts rows and runs CHECKPOINT
// over and over.
func backupWhileCheckpointing(t *testing.T, src *pgtest.Cluster, a *archive.Archive) *archive.BackupInfo {
	t.Helper()
	conn := src.Connect(t, "postgres")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for _, sql := range []string{"insert into t (pad) select 'during' from generate_series(1, 50)", "checkpoint"} {
				if _, err := conn.Exec(ctx, sql); err != nil {
					if ctx.Err() == nil {
						werr = err
					}
					return
				}
			}
		}
	}()
	b, err := basebackup.Run(context.Background(), basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20,
		MaxRate: 16384, Logger: zerolog.Nop(),
	})
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatalf("writes during the backup: %v", werr)
	}
	return b
}

// copyWAL copies the WAL segments of walDir into pg_wal.
func copyWAL(t *testing.T, walDir, pgWAL string) {
	t.Helper()
	ents, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if len(e.Name()) != 24 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(walDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pgWAL, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// checkpointDuringBackup fails the test unless the REDO location of the
// restored pg_control's checkpoint (checkPointCopy, which restore keeps)
// lies after backup_label's START WAL LOCATION: a checkpoint completed
// during the backup, the case where recovering from pg_control's
// checkpoint instead of backup_label's loses changes.
func checkpointDuringBackup(t *testing.T, dir string) {
	t.Helper()
	control, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	label, err := os.ReadFile(filepath.Join(dir, "backup_label"))
	if err != nil {
		t.Fatal(err)
	}
	start, err := labelStartLSN(string(label))
	if err != nil {
		t.Fatal(err)
	}
	if redo := pglogrepl.LSN(binary.LittleEndian.Uint64(control[40:])); redo <= start {
		t.Fatalf("pg_control's REDO %s is not after the backup's start %s: no checkpoint during the backup", redo, start)
	}
}

// labelStartLSN returns backup_label's START WAL LOCATION.
func labelStartLSN(label string) (pglogrepl.LSN, error) {
	for line := range strings.Lines(label) {
		if v, ok := strings.CutPrefix(line, "START WAL LOCATION: "); ok {
			lsn, _, _ := strings.Cut(v, " ")
			return pglogrepl.ParseLSN(lsn)
		}
	}
	return 0, errors.New("backup_label has no START WAL LOCATION")
}

// checkGuarded fails the test unless the pg_control restored into dir
// has its checkpoint location set to GuardCheckpoint (PostgreSQL checks
// its CRC when it starts).
func checkGuarded(t *testing.T, dir string) {
	t.Helper()
	control, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	if got := pglogrepl.LSN(binary.LittleEndian.Uint64(control[wal.ControlCheckpointOffset:])); got != GuardCheckpoint {
		t.Errorf("restored pg_control's checkpoint location %s, want %s", got, GuardCheckpoint)
	}
}

// controldataGuarded runs pg_controldata 15 on dir, a restored PostgreSQL
// 15 directory: it must read pg_control without a CRC warning and show
// checkpoint location 0/DEAD.
func controldataGuarded(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command(pgtest.Tool(t, "pg_controldata"), "-D", dir)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "WARNING") || !strings.Contains(string(out), "Latest checkpoint location:           0/DEAD\n") {
		t.Errorf("pg_controldata of the restored directory (%v): want checkpoint location 0/DEAD and no warning:\n%s", err, out)
	}
}
