package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
)

// clockLoop runs the backup loop of site main, in archive_command mode
// with schedule sch, on a site in memory holding the backups before
// stores, whose backups runBackup takes: each stored with the start time
// start returns (the server's clock_timestamp(), which basebackup
// records). It returns how many backups were taken, the loop's log and
// the function that stops the loop.
func clockLoop(t *testing.T, before []*archive.BackupInfo, sch Schedule, start func() time.Time) (taken *atomic.Int32, logs fmt.Stringer, stop func()) {
	t.Helper()
	d, l, conn, a := requestDaemon(t)
	for i, b := range before {
		if err := a.Store.Put(context.Background(), a.Layout.BackupKey(fmt.Sprintf("2026-01-01_%d", i)), strings.NewReader("x"), b.ToMetadata()); err != nil {
			t.Fatal(err)
		}
	}
	s := newSupervisor(d, Site{Name: "main", Active: true, WAL: WALArchiveCommand, ConnString: conn, Schedule: sch})
	d.sups["main"] = s
	taken = &atomic.Int32{}
	s.runBackup = func(ctx context.Context, o basebackup.Options) (*archive.BackupInfo, error) {
		n := taken.Add(1)
		info := &archive.BackupInfo{
			Name: fmt.Sprintf("2026-12-06_%d", n), StartTime: start().Truncate(time.Second),
			StartWALSegment: "000000010000000000000004", BackupReason: o.Reason,
		}
		info.EndTime = info.StartTime
		if err := a.Store.Put(ctx, a.Layout.BackupKey(info.Name), strings.NewReader("x"), info.ToMetadata()); err != nil {
			return nil, err
		}
		return info, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.backups(ctx, a) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("backup loop: %v", err)
		}
	})
	t.Cleanup(stop)
	return taken, l, stop
}

// TestSupervisor_ScheduleClockAhead: this host's clock is a year ahead
// of the server's (it jumped forward, and NTP has not fixed it yet), and
// a backup's start time is the server's clock. Every backup stored is
// then a year old by this host's clock the moment it is listed: the
// schedule took one backup after another, as fast as they ran, and
// retention by basebackup_count deleted the older backups to make room
// for them. A scheduled backup now never follows the last one this
// daemon took sooner than half an interval, as this host's monotonic
// clock counts it, whatever the wall clocks say.
func TestSupervisor_ScheduleClockAhead(t *testing.T) {
	taken, logs, stop := clockLoop(t, nil, Schedule{Interval: 24 * time.Hour}, func() time.Time {
		return time.Now().AddDate(-1, 0, 0)
	})
	time.Sleep(3 * time.Second)
	stop()
	if n := taken.Load(); n != 1 {
		t.Errorf("%d scheduled backups within 3 s with a 24 h interval, want 1 (the site had none)", n)
	}
	if !strings.Contains(logs.String(), "scheduled basebackup held back") {
		t.Errorf("nothing logged about the scheduled backup held back; log:\n%s", logs)
	}
}

// TestSupervisor_ScheduleClockBehind: the newest backup started a year
// after this host's clock reads now (it was taken while the clocks were
// a year ahead, and NTP has set them right since). By the wall clock,
// the next backup falls due a year from now; it is due one interval
// after the loop started instead, as the monotonic clock counts it.
func TestSupervisor_ScheduleClockBehind(t *testing.T) {
	const interval = 2 * time.Second
	future := &archive.BackupInfo{StartTime: time.Now().AddDate(1, 0, 0).Truncate(time.Second), StartWALSegment: "000000010000000000000004"}
	future.EndTime = future.StartTime
	taken, logs, stop := clockLoop(t, []*archive.BackupInfo{future}, Schedule{Interval: interval}, time.Now)
	deadline := time.Now().Add(4 * interval)
	for taken.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if taken.Load() == 0 {
		t.Errorf("no scheduled backup within %s of a %s interval, the newest backup a year in the future; log:\n%s", 4*interval, interval, logs)
	}
}

// TestClockGuard_Check: what the guard changes, and that it leaves the
// common cases alone (a server whose clock is seconds ahead of this
// host's, a backup due an interval after the last).
func TestClockGuard_Check(t *testing.T) {
	day := 24 * time.Hour
	sch := Schedule{Interval: day, IncrementalInterval: time.Hour}
	now := time.Now()
	started := now.Add(-3 * day)
	for _, c := range []struct {
		name        string
		g           clockGuard
		dec         Decision
		wantDue     bool
		wantChanged string
	}{
		{"DueFirst", clockGuard{started: started}, Decision{Due: true}, true, ""},
		{"DueAfterInterval", clockGuard{started: started, lastFull: now.Add(-day)}, Decision{Due: true}, true, ""},
		{"ErrDueAgainAtOnce", clockGuard{started: started, lastFull: now.Add(-time.Minute)}, Decision{Due: true}, false, "held"},
		// No backup of the node's system counts (a pg_upgrade gave it a
		// new one, the backups were deleted): no clock explains that,
		// and a restore of the node needs one now.
		{"DueNoBackupAfterOne", clockGuard{started: started, lastFull: now.Add(-time.Minute)}, Decision{Due: true, NoBackup: true}, true, ""},
		{"IncrementalAfterFull", clockGuard{started: started, lastFull: now.Add(-time.Minute)}, Decision{Due: true, Incremental: true}, true, ""},
		{"ErrIncrementalAgainAtOnce", clockGuard{started: started, lastIncr: now.Add(-time.Minute)}, Decision{Due: true, Incremental: true}, false, "held"},
		{"NextServerSecondsAhead", clockGuard{started: started, lastFull: now}, Decision{Next: now.Add(day + 5*time.Second)}, false, ""},
		{"ErrNextAYearAway", clockGuard{started: started}, Decision{Next: now.AddDate(1, 0, 0)}, true, "future"},
		{"ErrNextAYearAwayJustStarted", clockGuard{started: now.Add(-time.Hour)}, Decision{Next: now.AddDate(1, 0, 0)}, false, "future"},
		{"Off", clockGuard{started: started, lastFull: now}, Decision{Due: true}, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := sch
			if c.name == "Off" {
				s.Interval = 0
			}
			got, changed := c.g.check(now, s, c.dec)
			if got.Due != c.wantDue || changed != c.wantChanged {
				t.Errorf("check: due %v, changed %q; want %v, %q (%s)", got.Due, changed, c.wantDue, c.wantChanged, got.Why)
			}
			if !got.Due && changed != "" && (got.Next.IsZero() || got.Next.Sub(now) > day) {
				t.Errorf("check: next %s, want within an interval", got.Next)
			}
		})
	}
}

// TestClockGuard_CheckAnchored: on an anchored schedule Decide's next
// backup can be up to one and a half intervals away with every clock
// right: a backup taken by hand late in a slot (deploy/kubernetes's
// 02:30 daily, and `hoard basebackup` at 23:53) puts the next slot less
// than half an interval after it, so the one after is due. The guard took
// that for a backup started in the future: it warned that the clock went
// back and moved the next backup to an interval after the daemon started.
func TestClockGuard_CheckAnchored(t *testing.T) {
	sch := Schedule{Interval: 24 * time.Hour, Anchored: true, Hour: 2, Minute: 30}
	now := at("2026-12-06 23:54")
	for _, c := range []struct {
		name   string
		backup *archive.BackupInfo
	}{
		{"OK", bb("2026-12-06 23:53", "", basebackup.ReasonRequested)},
		// A scheduled backup of the unanchored schedule, before
		// basebackup_hour was set: it has no slot.
		{"OKAnchorAdded", bb("2026-12-06 23:53", "", basebackup.ReasonScheduled)},
	} {
		t.Run(c.name, func(t *testing.T) {
			dec := sch.Decide(now, []*archive.BackupInfo{c.backup})
			if dec.Due {
				t.Fatalf("Decide: due (%s), want not", dec.Why)
			}
			g := clockGuard{started: now.Add(-time.Minute)}
			got, changed := g.check(now, sch, dec)
			if changed != "" || got.Due || !got.Next.Equal(dec.Next) {
				t.Errorf("check: due %v, next %s, changed %q; want not due, next %s (Decide's), unchanged (%s)", got.Due, got.Next, changed, dec.Next, got.Why)
			}
		})
	}
}
