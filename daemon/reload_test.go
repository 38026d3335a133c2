package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// reloadSetup streams a cluster of the newest major (1 MiB segments)
// into st, with a DrainTimeout of an hour and a Reload channel, writes
// rows, waits until their WAL is fsynced in the spool, then takes st
// down (wrong credentials, say). It returns the segment in progress.
func reloadSetup(t *testing.T, st *downStore) (*pgtest.Cluster, Site, chan []Site, *runningDaemon, string) {
	t.Helper()
	return reloadSetupDrain(t, st, time.Hour)
}

// reloadSetupDrain is reloadSetup with the DrainTimeout drain.
func reloadSetupDrain(t *testing.T, st *downStore, drain time.Duration) (*pgtest.Cluster, Site, chan []Site, *runningDaemon, string) {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	site := streamingSiteTo(t, c.ConnString("postgres"), st)
	site.Destination = "local a"
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{site}, DrainTimeout: drain, Reload: reload})
	// Before the daemon stops (cleanups run last first): a daemon still
	// draining into a refusing storage would keep the test for an hour.
	t.Cleanup(func() { st.down.Store(false) })
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	rd.waitFlushed(c, "the rows' WAL fsynced in the spool")
	seg := c.QueryString(t, "select pg_walfile_name(pg_current_wal_flush_lsn())")
	st.down.Store(true)
	return c, site, reload, rd, seg
}

// waitLog polls rd's log for line, failing the test after runTimeout.
func (rd *runningDaemon) waitLog(line string) {
	rd.t.Helper()
	deadline := time.Now().Add(runTimeout)
	for !strings.Contains(rd.logs.String(), line) {
		if time.Now().After(deadline) {
			rd.t.Fatalf("no %q logged within %s", line, runTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// storeAfterSwitch lets the storage answer again, switches c to a new
// segment, which must complete seg, the segment in progress at the
// reload, and waits for seg to be stored by who.
func storeAfterSwitch(t *testing.T, c *pgtest.Cluster, st *downStore, rd *runningDaemon, seg, who string) {
	t.Helper()
	st.down.Store(false)
	if got := c.QueryString(t, "select pg_walfile_name(pg_switch_wal())"); got != seg {
		t.Fatalf("the switch completed %s, want %s, the segment in progress at the reload", got, seg)
	}
	key := archive.Layout{}.WALKey(seg)
	rd.waitFor(seg+" stored by "+who, func(Status) bool {
		_, err := st.Stat(context.Background(), key)
		return err == nil
	})
}

// TestRun_ReloadInPlace: the storage refuses every call, the receiver
// holds fsynced WAL in the segment in progress, and a reload changes the
// site (its Fingerprint: new credentials, a rate limit) but not where its
// WAL goes (Destination). The restart takes effect at once, not after
// DrainTimeout (an hour): the stopped run's copy of the segment in
// progress stays in the spool. Once the storage answers, the new run
// stores that WAL: the segment, completed by a switch, is in the archive.
func TestRun_ReloadInPlace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c, site, reload, rd, seg := reloadSetup(t, st)
	next := site
	next.Fingerprint = "2"
	reload <- []Site{next}
	rd.waitLog("configuration reloaded")

	storeAfterSwitch(t, c, st, rd, seg, "the restarted site")
}

// TestRun_ReloadNewDestination: the same, but the reload gives the site
// another Destination (a new prefix, as after pg_upgrade): the stopped
// run goes on trying to store the segment in progress as .partial where
// its WAL went, and the reload takes effect only once it is stored there.
func TestRun_ReloadNewDestination(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	_, site, reload, rd, seg := reloadSetup(t, st)
	next := streamingSiteTo(t, site.ConnString, storage.NewLocal(t.TempDir()))
	next.Fingerprint, next.Destination, next.SpoolDir = "2", "local b", site.SpoolDir
	refused := st.refused.Load()
	reload <- []Site{next}
	// The stopped run's copy fails twice, with backoff, after the
	// reload came: it is still trying.
	deadline := time.Now().Add(runTimeout)
	for st.refused.Load() < refused+2 {
		if time.Now().After(deadline) {
			t.Fatalf("the stopped run did not try again to store %s.partial within %s", seg, runTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(rd.logs.String(), "configuration reloaded") {
		t.Fatalf("the reload to another destination took effect before %s.partial was stored where its WAL went", seg)
	}
	st.down.Store(false)
	rd.waitLog("configuration reloaded")
	if _, err := st.Stat(context.Background(), archive.Layout{}.WALKey(seg+wal.PartialSuffix)); err != nil {
		t.Errorf("%s.partial not in the old destination after the reload: %v", seg, err)
	}
}

// TestInPlace: a restart skips the drain only when the new run streams
// from the same spool into the same destination.
func TestInPlace(t *testing.T) {
	base := Site{Active: true, WAL: WALStream, SpoolDir: "/spool/a", Destination: "s3 bucket=b prefix=p"}
	for _, tc := range []struct {
		name   string
		change func(*Site)
		want   bool
	}{
		{"OK", func(*Site) {}, true},
		{"ErrDestination", func(s *Site) { s.Destination = "s3 bucket=b prefix=q" }, false},
		{"ErrNoDestination", func(s *Site) { s.Destination = "" }, false},
		{"ErrSpool", func(s *Site) { s.SpoolDir = "/spool/b" }, false},
		{"ErrInactive", func(s *Site) { s.Active = false }, false},
		{"ErrNotStreaming", func(s *Site) { s.WAL = WALArchiveCommand }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			tc.change(&next)
			if got := inPlace(base, next); got != tc.want {
				t.Errorf("inPlace(%+v, %+v) = %v, want %v", base, next, got, tc.want)
			}
		})
	}
}

// TestRun_ReloadInPlaceAdoptsStreamEnd: the server is lost for good (its
// host gone: killed, never started again) while the storage refuses
// uploads, so the stream end's copy of the segment in progress waits in
// the spool; then a reload restarts the site in place, which aborts that
// copy. The new run never connects, so it has no stream end of its own:
// it adopts the stopped run's copy and stores it once the storage is
// back, without a SIGTERM. The stored .partial is the spool's fsynced
// part, and it holds the last commit.
func TestRun_ReloadInPlaceAdoptsStreamEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c, site, reload, rd, seg := reloadSetup(t, st)
	// The last commit, received and fsynced while the storage refuses.
	c.Exec(t, "insert into t values (1001)")
	commit, err := pglogrepl.ParseLSN(c.QueryString(t, "select pg_current_wal_flush_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.QueryString(t, "select pg_walfile_name(pg_current_wal_flush_lsn())"); got != seg {
		t.Fatalf("the last commit is in %s, want %s", got, seg)
	}
	rd.waitFor("the last commit fsynced in the spool", func(s Status) bool {
		got, err := pglogrepl.ParseLSN(s.Sites["test"].WAL.Flushed)
		return err == nil && got >= commit
	})
	c.Kill(t)
	rd.waitLog("storing the segment in progress as .partial")
	next := site
	next.Fingerprint = "2"
	reload <- []Site{next}
	rd.waitLog("configuration reloaded")

	st.down.Store(false)
	name := seg + wal.PartialSuffix
	key := archive.Layout{}.WALKey(name)
	rd.waitFor(name+" stored by the restarted site", func(Status) bool {
		_, err := st.Stat(context.Background(), key)
		return err == nil
	})
	arch, _, err := site.OpenArchive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fetched := filepath.Join(t.TempDir(), name)
	if err := arch.FetchWAL(context.Background(), name, fetched, archive.FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(fetched)
	if err != nil {
		t.Fatal(err)
	}
	spool, err := os.ReadFile(filepath.Join(site.SpoolDir, name))
	if err != nil {
		t.Fatal(err)
	}
	s, err := wal.ParseSegmentName(seg, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if end := uint64(commit - s.StartLSN(1<<20)); uint64(len(stored)) < end {
		t.Fatalf("%s holds %d bytes, want at least %d: the last commit ends at %s", name, len(stored), end, commit)
	}
	if len(stored) > len(spool) || !bytes.Equal(stored, spool[:len(stored)]) {
		t.Fatalf("%s (%d bytes) is not the start of the spool's copy (%d bytes)", name, len(stored), len(spool))
	}
}

// TestRun_ReloadRemovedSiteUnstoredWAL: a reload removes a streaming site
// while the storage refuses every upload, so its stop cannot store the WAL
// it received (acknowledged to the server, which then recycles it) within
// the DrainTimeout. The removal is refused: the site runs on with its
// previous settings and stores that WAL once the storage answers; a later
// reload, with nothing left unstored, removes it.
func TestRun_ReloadRemovedSiteUnstoredWAL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c, _, reload, rd, seg := reloadSetupDrain(t, st, 2*time.Second)
	reload <- []Site{}
	rd.waitLog("configuration reloaded")
	rd.waitLog("reload: site removed, but its wal is not stored")
	rd.waitFor("site test running again after its removal was refused", func(s Status) bool { return s.Sites["test"].Running })

	storeAfterSwitch(t, c, st, rd, seg, "the site kept running")

	reload <- []Site{}
	rd.waitFor("site test removed by the second reload", func(s Status) bool { _, ok := s.Sites["test"]; return !ok })
}

// TestRun_ReloadStopsStreamingUnstoredWAL: the same, for a reload that
// keeps the site but stops its streaming (active_backup_mode
// archive_command): the new run would never read the spool, so the site
// runs on with its previous settings and stores the WAL.
func TestRun_ReloadStopsStreamingUnstoredWAL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c, site, reload, rd, seg := reloadSetupDrain(t, st, 2*time.Second)
	next := site
	next.Fingerprint, next.WAL = "2", WALArchiveCommand
	reload <- []Site{next}
	rd.waitLog("reload: site changed so that it no longer stores its spool, but its wal is not stored")
	rd.waitLog("configuration reloaded")

	storeAfterSwitch(t, c, st, rd, seg, "the site kept running")
}

// TestRun_ReloadNewDestinationUnstoredWAL: a reload gives a streaming
// site another Destination (a new prefix) with the same spool while the
// storage refuses every upload, so its stop cannot store the WAL it
// received (acknowledged to the server, which then recycles it) where
// that WAL went within the DrainTimeout. The change is refused: the new
// run would store that WAL in the new destination, leaving a hole in the
// old archive whose backups need it. The site runs on with its previous
// settings and stores the WAL in the old destination once the storage
// answers; a later reload, with nothing left unstored, applies the change.
func TestRun_ReloadNewDestinationUnstoredWAL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c, site, reload, rd, seg := reloadSetupDrain(t, st, 2*time.Second)
	other := storage.NewLocal(t.TempDir())
	next := streamingSiteTo(t, site.ConnString, other)
	next.Fingerprint, next.Destination, next.SpoolDir = "2", "local b", site.SpoolDir
	reload <- []Site{next}
	rd.waitLog("configuration reloaded")

	storeAfterSwitch(t, c, st, rd, seg, "the site kept running with its previous destination")
	if _, err := other.Stat(context.Background(), archive.Layout{}.WALKey(seg)); err == nil {
		t.Errorf("%s stored in the new destination, received under the old one", seg)
	}
	if line := "reload: site's destination changed, but its wal is not stored"; !strings.Contains(rd.logs.String(), line) {
		t.Errorf("no %q logged", line)
	}

	reload <- []Site{next}
	rd.waitFor("site test restarted into the new destination by the second reload", func(s Status) bool {
		return strings.Count(rd.logs.String(), "configuration reloaded") == 2 && s.Sites["test"].Running
	})
	c.Exec(t, "insert into t values (1001)")
	next2 := c.QueryString(t, "select pg_walfile_name(pg_switch_wal())")
	rd.waitFor(next2+" stored in the new destination", func(Status) bool {
		_, err := other.Stat(context.Background(), archive.Layout{}.WALKey(next2))
		return err == nil
	})
}
