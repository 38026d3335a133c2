package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/walstream"
)

// streamingSupervisor returns a cluster of the newest major (idle, 1 MiB
// segments, wal_partial_upload_interval 0), and a supervisor of a site
// whose WAL receiver streams from it into a local archive, connected;
// no backup loop runs. logs holds what the supervisor logged.
func streamingSupervisor(t *testing.T) (*pgtest.Cluster, *supervisor, *walstream.Receiver, *archive.Archive, *testio.SyncBuffer) {
	t.Helper()
	c, site := backedUpCluster(t, storage.NewLocal(t.TempDir()))
	arch, _, err := site.OpenArchive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := testDaemon(t)
	logs := &testio.SyncBuffer{}
	d.log = zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), logs))
	s := newSupervisor(d, site)
	recv, err := s.receiver(arch)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- recv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("receiver: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, runTimeout)
	defer wcancel()
	if err := s.waitStreaming(wctx); err != nil {
		t.Fatalf("the receiver did not connect within %s", runTimeout)
	}
	return c, s, recv, arch, logs
}

// waitStored waits until recv has stored the WAL through lsn.
func waitStored(t *testing.T, recv *walstream.Receiver, lsn pglogrepl.LSN) {
	t.Helper()
	deadline := time.Now().Add(runTimeout)
	for recv.Status().Stored < lsn {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver did not store the WAL through %s within %s: status %+v", lsn, runTimeout, recv.Status())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSupervisor_StoreStandbyWALTimeout: after a backup of a standby the
// daemon waits (standbyWALWait, 2 s here) for its receiver to store the
// backup's WAL, which here does not arrive: the backup claims an end the
// server (real PostgreSQL, idle, wal_partial_upload_interval 0) has not
// reached, as a standby behind its primary would. The wait ends on time
// with a warning naming the backup, its end, what the receiver has
// received and stored, and what to look at; the daemon goes on, and the
// request holds: once the server writes past that end, the receiver
// stores the segment as a .partial.
func TestSupervisor_StoreStandbyWALTimeout(t *testing.T) {
	ctx := context.Background()
	c, s, recv, arch, logs := streamingSupervisor(t)
	s.standbyWALWait = 2 * time.Second

	// 256 KiB into a new segment: an idle server writes WAL on its own
	// (autovacuum, a timed checkpoint and the full-page images after it,
	// a standby snapshot), but nothing near that much in 2 s; at 16 KiB,
	// two or three full pages of an autovacuum in the window ended the
	// wait early. The table below (about 400 KiB of WAL) does not finish
	// the 1 MiB segment, which only the request stores.
	c.Exec(t, "select pg_switch_wal()")
	endText := c.QueryString(t, "select (pg_current_wal_insert_lsn() + 262144)::text")
	end, err := pglogrepl.ParseLSN(endText)
	if err != nil {
		t.Fatal(err)
	}
	info := &archive.BackupInfo{Name: "2026-12-03_15-00_0", EndLSN: end,
		EndWALSegment: c.QueryString(t, "select pg_walfile_name($1::pg_lsn)", endText)}
	started := time.Now()
	s.storeStandbyWAL(ctx, info)
	if took := time.Since(started); took < s.standbyWALWait || took > runTimeout {
		t.Errorf("storeStandbyWAL returned after %v, want %v (the wait)", took, s.standbyWALWait)
	}
	var warn string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"level":"warn"`) && strings.Contains(l, "standby backup's WAL") {
			warn = l
		}
	}
	for _, w := range []string{`"backup":"` + info.Name + `"`, `"lsn":"` + endText + `"`, `"segment":"` + info.EndWALSegment + `"`,
		`"connected":true`, `"received":"`, `"stored":"`, `"waited_ms":2000`,
		"is not stored through its end yet, and until it is the backup does not restore",
		"if received stays below lsn, the standby is not sending WAL", "If connected is false"} {
		if !strings.Contains(warn, w) {
			t.Errorf("the warning after the wait does not say %s:\n%s", w, warn)
		}
	}

	c.Exec(t, "create table past_end as select g, repeat('x', 100) as pad from generate_series(1, 2500) g")
	waitStored(t, recv, end)
	if _, err := arch.Store.Stat(ctx, arch.Layout.WALKey(info.EndWALSegment+".partial")); err != nil {
		t.Errorf("the segment %s holding the backup's end, stored as a .partial after the wait: %v", info.EndWALSegment, err)
	}
}

// TestDaemon_BackupStored: POST /<site>/backup-stored wakes the site's
// backup loop to list the backups (one wake pending at most, a second
// note accepted); an inactive or unknown site is ErrUnknownSite (404); in
// maintenance mode, where the loop lists nothing, ErrMaintenance (503)
// names the file.
func TestDaemon_BackupStored(t *testing.T) {
	d := testDaemon(t)
	d.opts.MaintenanceFile = filepath.Join(t.TempDir(), "maintenance")
	s := newSupervisor(d, Site{Name: "main", Active: true})
	d.sups["main"], d.sups["off"] = s, newSupervisor(d, Site{Name: "off"})
	for range 2 {
		if err := d.backupStored("main"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-s.relist:
	default:
		t.Error("the backup loop is not woken")
	}
	for _, site := range []string{"off", "nosuch"} {
		if err := d.backupStored(site); !errors.Is(err, ErrUnknownSite) {
			t.Errorf("site %s: err %v, want ErrUnknownSite", site, err)
		}
	}
	if err := os.WriteFile(d.opts.MaintenanceFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.backupStored("main"); !errors.Is(err, ErrMaintenance) || !strings.Contains(err.Error(), d.opts.MaintenanceFile) {
		t.Errorf("maintenance mode: err %v, want ErrMaintenance naming %s", err, d.opts.MaintenanceFile)
	}
	select {
	case <-s.relist:
		t.Error("the backup loop is woken in maintenance mode")
	default:
	}
}

// TestSupervisor_ServeNewestBackupWAL: each listing of the backups asks
// the receiver (real PostgreSQL, idle, wal_partial_upload_interval 0) to
// store the WAL through the newest backup's end, once per end, when it
// has not stored it: a backup ending in the segment being received is
// then stored as its .partial. A newest backup claiming an end 1 GiB past
// the server's position (planted) asks nothing and logs nothing, and does
// not keep the daemon from asking for the real backup listed before it.
func TestSupervisor_ServeNewestBackupWAL(t *testing.T) {
	ctx := context.Background()
	c, s, recv, arch, logs := streamingSupervisor(t)
	const asked = "the newest backup's WAL is not stored through its end"
	c.Exec(t, "select pg_switch_wal()")
	c.Exec(t, "create table rows_in_segment as select g from generate_series(1, 100) g")
	endText := c.QueryString(t, "select pg_current_wal_insert_lsn()::text")
	end, err := pglogrepl.ParseLSN(endText)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(runTimeout)
	for recv.Status().Received < end {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver did not receive the WAL through %s within %s", end, runTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}

	planted := &archive.BackupInfo{Name: "2099-01-01_00-00_0", StartTime: time.Now().Add(time.Hour), EndLSN: end + 1<<30}
	s.serveNewestBackupWAL(ctx, []*archive.BackupInfo{planted})
	if s.walAsked != 0 || strings.Contains(logs.String(), asked) {
		t.Fatalf("a backup claiming an end past the server's position made the daemon ask for it (walAsked %s):\n%s", s.walAsked, logs.String())
	}

	b := &archive.BackupInfo{Name: "2026-12-03_16-00_0", StartTime: time.Now(), EndLSN: end,
		EndWALSegment: c.QueryString(t, "select pg_walfile_name($1::pg_lsn)", endText)}
	// The planted claim, newest, must not hide b either.
	for range 2 {
		s.serveNewestBackupWAL(ctx, []*archive.BackupInfo{b, planted})
	}
	if n := strings.Count(logs.String(), asked); n != 1 || s.walAsked != end {
		t.Errorf("two listings of backup %s ending at %s: asked %d times (walAsked %s), want once", b.Name, end, n, s.walAsked)
	}
	waitStored(t, recv, end)
	if _, err := arch.Store.Stat(ctx, arch.Layout.WALKey(b.EndWALSegment+".partial")); err != nil {
		t.Errorf("the segment %s holding the backup's end, stored as a .partial: %v", b.EndWALSegment, err)
	}
}
