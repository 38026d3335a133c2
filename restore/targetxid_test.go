package restore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_TargetXIDSubtransaction: a --target-xid that is a
// subtransaction's xid (a row's xmin written after a SAVEPOINT), of a
// transaction committed, and of a prepared one committed with COMMIT
// PREPARED (whose record lists the relations and, from 15, the
// statistics it drops before the prepared xid), is refused before
// anything is written, naming the top-level xid; the top-level xids
// restore; an xid no record ends is refused. Real clusters of 13, 15
// and 18, whose commit records differ. Before, restore went ahead with
// a warning, and PostgreSQL replayed the whole archive and stopped with
// "recovery ended before configured recovery target was reached".
func TestRun_TargetXIDSubtransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("real clusters")
	}
	pgtest.ForEachVersion(t, targetXIDSubtransaction)
}

func targetXIDSubtransaction(t *testing.T, major int) {
	ctx := context.Background()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, Conf: map[string]string{"max_prepared_transactions": "5"}})
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	src.Exec(t, "create table t (id int primary key)")
	src.Exec(t, "create table gone (id int)")
	b := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	// xids runs stmts in one transaction, then ends it with end, and
	// returns its xid and the subtransaction's: the xmin of the row
	// the last of stmts returns.
	xids := func(stmts []string, end ...string) (top, sub uint64) {
		t.Helper()
		conn := src.Connect(t, "postgres")
		defer conn.Close(ctx)
		for i, q := range stmts {
			if i == len(stmts)-1 {
				if err := conn.QueryRow(ctx, q).Scan(&sub); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				break
			}
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if i == 1 {
				if err := conn.QueryRow(ctx, "select pg_current_xact_id()::text::bigint").Scan(&top); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, q := range end {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		return top, sub
	}
	top, sub := xids([]string{"begin", "insert into t values (1)", "savepoint a", "insert into t values (2) returning xmin::text::bigint"}, "commit")
	top2, sub2 := xids([]string{"begin", "insert into t values (3)", "savepoint a", "drop table gone", "insert into t values (4) returning xmin::text::bigint"},
		"prepare transaction 'g'", "commit prepared 'g'")
	src.Exec(t, "insert into t values (5)")
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	run := func(xid uint64) error {
		dir := filepath.Join(pgtest.TempDir(t), "data")
		_, err := Run(ctx, Options{Archive: a, Backup: b.Name, TargetDir: dir, Target: Target{XID: xid}, RestoreCommand: "false", Logger: zerolog.Nop()})
		return err
	}
	for _, c := range []struct {
		what     string
		sub, top uint64
	}{{"committed", sub, top}, {"prepared", sub2, top2}} {
		err := run(c.sub)
		if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), fmt.Sprintf("subtransaction of transaction %d", c.top)) ||
			!strings.Contains(err.Error(), fmt.Sprintf("--target-xid %d", c.top)) {
			t.Errorf("restore --target-xid %d, a subtransaction of %s transaction %d: err = %v; want it refused naming %d", c.sub, c.what, c.top, err, c.top)
		}
		if err := run(c.top); err != nil {
			t.Errorf("restore --target-xid %d, %s transaction: %v", c.top, c.what, err)
		}
	}
	never := top2 + 1000
	if err := run(never); !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), "no commit or abort record") {
		t.Errorf("restore --target-xid %d, never used: err = %v; want it refused", never, err)
	}
}
