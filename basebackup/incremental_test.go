package basebackup

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_IncrementalRefused: an incremental backup is refused, with
// nothing stored, when the server is older than 17, when it does not
// summarize WAL, and when no parent is stored.
func TestRun_IncrementalRefused(t *testing.T) {
	cases := []struct {
		name      string
		major     int
		summarize string
		want      error
		says      string
	}{
		{"PostgreSQL 16", 16, "", ErrIncrementalUnavailable, "PostgreSQL 17 or later"},
		{"summarize_wal off", 17, "off", ErrIncrementalUnavailable, "summarize_wal = on"},
		{"no parent", 18, "on", ErrNoParent, "take a full backup first"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := map[string]string{}
			if c.summarize != "" {
				conf["summarize_wal"] = c.summarize
			}
			cl := pgtest.Start(t, pgtest.Options{Major: c.major, Conf: conf})
			a := localArchive(t)
			_, err := Run(testContext(t), Options{
				ConnString: cl.ConnString("postgres"), Archive: a, Fast: true, NoWait: true,
				Incremental: true, Logger: zerolog.Nop(),
			})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.says)
			}
			n := 0
			if err := a.Store.List(testContext(t), "", func(storage.Object) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%d objects stored", n)
			}
		})
	}
}

// TestRun_IncrementalLocalTarRefused: local-tar cannot take an
// incremental backup.
func TestRun_IncrementalLocalTarRefused(t *testing.T) {
	_, err := Run(testContext(t), Options{Archive: localArchive(t), Mode: ModeLocal, PGData: t.TempDir(), Incremental: true})
	if err == nil || !strings.Contains(err.Error(), "replication protocol") {
		t.Fatalf("got %v", err)
	}
}

// TestIncrementalStartError: BASE_BACKUP's refusal of an incremental
// backup that starts before its parent's end is explained, and wraps
// ErrIncrementalUnavailable, only on a standby; other errors, and the
// same one on a primary or for a full backup, pass through unchanged.
func TestIncrementalStartError(t *testing.T) {
	refused := fmt.Errorf("base backup: %w", &pgconn.PgError{Code: "55000",
		Message: "manifest requires WAL from final timeline 1 ending at 0/892AF0, but this backup starts at 0/892A78"})
	other := fmt.Errorf("base backup: %w", &pgconn.PgError{Code: "55000", Message: "something else"})
	parent := &parentBackup{info: &archive.BackupInfo{Name: "b1", EndLSN: 0x892AF0}}
	standby := &run{srv: server{inRecovery: true}}
	primary := &run{}

	got := standby.incrementalStartError(refused, parent)
	if !errors.Is(got, ErrIncrementalUnavailable) || !strings.Contains(got.Error(), "CHECKPOINT on the primary") ||
		!strings.Contains(got.Error(), "b1") || !strings.Contains(got.Error(), "but this backup starts at") {
		t.Errorf("standby, refused: %v", got)
	}
	for _, c := range []struct {
		name   string
		r      *run
		err    error
		parent *parentBackup
	}{
		{"primary", primary, refused, parent},
		{"full backup", standby, refused, nil},
		{"other error", standby, other, parent},
	} {
		if got := c.r.incrementalStartError(c.err, c.parent); got != c.err {
			t.Errorf("%s: %v, want the error unchanged", c.name, got)
		}
	}
}
