package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// pgbench's tables at scale 1 (src/bin/pgbench/pgbench.c): one branch, ten
// tellers, 100,000 accounts, written over SQL so that the demo needs no
// pgbench binary.
const (
	loadBranches = 1
	loadTellers  = 10
	loadAccounts = 100000
)

var loadSchema = []string{
	"CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88))",
	"CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84))",
	"CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84))",
	"CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))",
	fmt.Sprintf("INSERT INTO pgbench_branches SELECT b, 0, '' FROM generate_series(1, %d) b", loadBranches),
	fmt.Sprintf("INSERT INTO pgbench_tellers SELECT t, (t - 1) / %d + 1, 0, '' FROM generate_series(1, %d) t", loadTellers/loadBranches, loadTellers),
	fmt.Sprintf("INSERT INTO pgbench_accounts SELECT a, (a - 1) / %d + 1, 0, '' FROM generate_series(1, %d) a", loadAccounts/loadBranches, loadAccounts),
	"VACUUM ANALYZE",
}

// initLoad creates and fills pgbench's tables.
func initLoad(ctx context.Context, connString string) error {
	return execSQL(ctx, connString, loadSchema...)
}

// runLoad runs pgbench's default TPC-B-like transaction from clients
// connections for d and returns the number of committed transactions.
func runLoad(ctx context.Context, connString string, clients int, d time.Duration) (int64, error) {
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	deadline := time.Now().Add(d)
	for i := range clients {
		g.Go(func() error {
			conn, err := pgx.Connect(gctx, connString)
			if err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			defer conn.Close(context.WithoutCancel(gctx))
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for time.Now().Before(deadline) {
				if err := tpcb(gctx, conn, rng); err != nil {
					return err
				}
				done.Add(1)
			}
			return nil
		})
	}
	err := g.Wait()
	return done.Load(), err
}

// tpcb is one pgbench transaction: move a random amount into a random
// account, its teller and branch, and log it in the history.
func tpcb(ctx context.Context, conn *pgx.Conn, rng *rand.Rand) error {
	aid := rng.IntN(loadAccounts) + 1
	tid := rng.IntN(loadTellers) + 1
	bid := rng.IntN(loadBranches) + 1
	delta := rng.IntN(10001) - 5000
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", delta, aid)
		b.Queue("SELECT abalance FROM pgbench_accounts WHERE aid = $1", aid)
		b.Queue("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2", delta, tid)
		b.Queue("UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2", delta, bid)
		b.Queue("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)", tid, bid, aid, delta)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("pgbench transaction: %w", err)
	}
	return err
}
