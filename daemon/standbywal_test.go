package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

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
	c, site := backedUpCluster(t, storage.NewLocal(t.TempDir())) // no backup loop runs here
	arch, _, err := site.OpenArchive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := testDaemon(t)
	logs := &testio.SyncBuffer{}
	d.log = zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), logs))
	s := newSupervisor(d, site)
	s.standbyWALWait = 2 * time.Second
	recv, err := s.receiver(arch)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- recv.Run(rctx) }()
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

	// 16 KiB into a new segment: an idle server writes nothing near that
	// much in 2 s, and the table below (about 64 KiB of WAL) does not
	// finish the segment, which only the request stores.
	c.Exec(t, "select pg_switch_wal()")
	endText := c.QueryString(t, "select (pg_current_wal_insert_lsn() + 16384)::text")
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

	c.Exec(t, "create table past_end as select g, repeat('x', 100) as pad from generate_series(1, 400) g")
	deadline := time.Now().Add(runTimeout)
	for recv.Status().Stored < end {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver did not store the WAL through %s within %s after the server wrote past it: status %+v", end, runTimeout, recv.Status())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := arch.Store.Stat(ctx, arch.Layout.WALKey(info.EndWALSegment+".partial")); err != nil {
		t.Errorf("the segment %s holding the backup's end, stored as a .partial after the wait: %v", info.EndWALSegment, err)
	}
}

// TestDaemon_BackupStored: POST /<site>/backup-stored wakes the site's
// backup loop to list the backups (one wake pending at most, a second
// note accepted); an inactive or unknown site is ErrUnknownSite (404).
func TestDaemon_BackupStored(t *testing.T) {
	d := testDaemon(t)
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
}
