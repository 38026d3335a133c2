package daemon

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRun_WALGapAfterPromotionPublicKeyOnly streams a standby into an
// encrypted archive whose daemon holds only the public key (the
// recommended setup), takes a basebackup, promotes the standby, and
// deletes, as someone who can write the bucket but holds no key would, a
// segment of the new timeline between two stored ones. The daemon cannot
// read the archived (encrypted) timeline history file; the WAL archive
// check must follow the new timeline with the history the server gave it
// (TIMELINE_HISTORY) and report the segment missing, not fail to be made.
func TestRun_WALGapAfterPromotionPublicKeyOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	primary, standby, st, arch, site := publicKeyStandbySite(t)
	opts := Options{Sites: []Site{site}, DrainTimeout: time.Second, WALCheckInterval: 500 * time.Millisecond}
	rd := runDaemon(t, opts)
	rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 })

	stored := func(name string) bool {
		_, err := st.Stat(ctx, arch.Layout.WALKey(name))
		return err == nil
	}
	primary.Exec(t, "create table filler as select generate_series(1, 1000) as i")
	rd.waitFlushed(primary, "the standby's WAL in the spool")

	standby.Promote(t)
	standby.WaitRecoveryDone(t, time.Minute)
	var after []string
	for range 3 {
		standby.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'z')")
		after = append(after, standby.QueryString(t, "select pg_walfile_name(pg_switch_wal())"))
	}
	for _, n := range after {
		if !strings.HasPrefix(n, "00000002") {
			t.Fatalf("segment %s after promotion, want timeline 2", n)
		}
	}
	rd.waitFor("timeline 2 stored", func(Status) bool {
		return stored("00000002.history") && stored(after[0]) && stored(after[1]) && stored(after[2])
	})
	// checkAfter waits for a WAL archive check begun after t0, and fails
	// when it was not made.
	checkAfter := func(what string, t0 time.Time) *WALArchiveStatus {
		t.Helper()
		a := rd.waitFor(what, func(st Status) bool {
			a := st.Sites["test"].WALArchive
			return a != nil && (a.CheckedAt != nil && a.CheckedAt.After(t0) || a.LastErrorAt != nil && a.LastErrorAt.After(t0))
		}).Sites["test"].WALArchive
		if a.LastErrorAt != nil && a.LastErrorAt.After(t0) {
			t.Fatalf("%s not made: %s", what, a.LastError)
		}
		return a
	}
	if a := checkAfter("a WAL archive check after timeline 2 was stored", time.Now()); a.MissingSegments != 0 {
		t.Fatalf("wal_archive %+v with timeline 2 stored, want nothing missing", a)
	}

	// Someone who writes the bucket deletes the middle one.
	if err := st.Delete(ctx, arch.Layout.WALKey(after[1])); err != nil {
		t.Fatal(err)
	}
	a := checkAfter("a WAL archive check after the deletion", time.Now())
	if a.MissingSegments != 1 || a.FirstMissing != after[1] {
		t.Fatalf("wal_archive %+v after the deletion of %s, want it missing", a, after[1])
	}
}
