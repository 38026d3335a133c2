package daemon

import (
	"context"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// gateStore is a real store whose uploads of complete WAL segments each
// wait for a token from gate: the test decides when each one is stored.
type gateStore struct {
	storage.Store
	gate chan struct{}
}

func (s *gateStore) hold(ctx context.Context, key string) error {
	if path.Base(path.Dir(key)) != "xlog" || !wal.IsSegmentName(path.Base(key)) {
		return nil
	}
	select {
	case <-s.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *gateStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if err := s.hold(ctx, key); err != nil {
		return err
	}
	return s.Store.Put(ctx, key, r, md)
}

func (s *gateStore) Create(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if err := s.hold(ctx, key); err != nil {
		return err
	}
	return s.Store.Create(ctx, key, r, md)
}

// TestRun_WALLagBusy: on a busy server whose uploads keep up, a segment
// is completed while the one before it is still being uploaded, so the
// upload queue is never empty, yet no segment waits longer than two
// rounds. hoard_wal_lag_seconds (and /status's lag_seconds) is the age
// of the oldest segment waiting, about two rounds, not how long the queue
// has not been empty, which grows with every round and made
// HoardWALArchivingStalled fire on a healthy site. Once everything is
// stored, it is 0.
func TestRun_WALLagBusy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	st := &gateStore{Store: storage.NewLocal(t.TempDir()), gate: make(chan struct{})}
	site := streamingSiteTo(t, c.ConnString("postgres"), st)
	port := testio.FreePort(t)
	rd := runDaemon(t, Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}, DrainTimeout: time.Second})
	// Opening the gate stores every segment from then on. Registered
	// after runDaemon's stop, so run before it: nothing waits on the
	// gate at shutdown.
	var once sync.Once
	open := func() { once.Do(func() { close(st.gate) }) }
	t.Cleanup(open)
	rd.waitFor("the receiver streaming", func(s Status) bool {
		w := s.Sites["test"].WAL
		return w != nil && w.Connected
	})
	lag := func() float64 {
		m := metric(t, port, MetricWALLagSeconds+`{site="test"}`)
		v, err := strconv.ParseFloat(m[strings.LastIndexByte(m, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric %q: %v", m, err)
		}
		return v
	}
	queued := func(n int) func(Status) bool {
		return func(s Status) bool { return s.Sites["test"].WAL.QueueDepth >= n }
	}
	complete := func() {
		c.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'x')")
		c.Exec(t, "select pg_switch_wal()")
	}

	const round = time.Second
	complete()
	rd.waitFor("the first segment queued", queued(1))
	start := time.Now()
	for i := range 8 {
		complete()
		rd.waitFor("a second segment queued behind the one uploading", queued(2))
		time.Sleep(round)
		st.gate <- struct{}{} // the oldest one is stored
		// Its successor is still queued: the queue has not been empty
		// since start.
		w := rd.waitFor("the refresh", func(Status) bool { return true }).Sites["test"].WAL
		if w.QueueDepth == 0 {
			t.Fatalf("round %d: the queue emptied; the test needs it busy", i)
		}
		// The oldest one waiting was queued a round ago (two at most,
		// by the time the refresh sees the upload done), while the
		// queue has not been empty for i+1 rounds and more.
		if v := lag(); v > 3.5*round.Seconds() {
			t.Fatalf("round %d, the queue busy for %s but no segment waiting longer than two rounds: %s %v",
				i, time.Since(start).Round(time.Millisecond), MetricWALLagSeconds, v)
		}
		if w.LagSeconds > 3.5*round.Seconds() {
			t.Fatalf("round %d: /status lag_seconds %v", i, w.LagSeconds)
		}
	}

	// All stored: nothing waits.
	open()
	rd.waitFor("the queue drained", func(s Status) bool { return s.Sites["test"].WAL.QueueDepth == 0 })
	deadline := time.Now().Add(runTimeout)
	for lag() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s %v with nothing queued, want 0", MetricWALLagSeconds, lag())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
