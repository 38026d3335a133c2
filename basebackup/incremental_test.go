package basebackup

import (
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

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
