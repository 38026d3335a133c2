package daemon

import (
	"bytes"
	"context"
	"crypto/rsa"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_RefusedPartial streams a standby into an encrypted archive
// whose daemon holds only the public key, takes a basebackup, and plants,
// as someone who can write the bucket but holds no key would, the
// timeline's last <segment>.partial (another stored object, claiming a
// whole segment of WAL) before the standby is promoted. The daemon may
// not replace it and leaves its own copy in the spool, storing the new
// timeline meanwhile (walstream's refusePartial). The daemon must not
// take that .partial as stored, nor its absence as a hole: /status names
// it in wal.refused_partials and counts it in wal.lag_seconds and
// hoard_wal_lag_seconds (an operator's lag alert fires), the WAL archive
// check and the hole check at a restart's resume find nothing missing (a
// backup's recovery reads the switch segment from the new timeline), a
// stop reports it left in the spool, and once the object is moved away
// the retry stores the file and the lag goes.
func TestRun_RefusedPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	primary, standby, st, arch, site := publicKeyStandbySite(t)
	port := testio.FreePort(t)
	opts := Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port},
		DrainTimeout: time.Second, WALCheckInterval: 500 * time.Millisecond}
	rd := runDaemon(t, opts)
	rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 })

	stored := func(name string) bool {
		_, err := st.Stat(ctx, arch.Layout.WALKey(name))
		return err == nil
	}
	var last string
	for range 2 {
		primary.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'x')")
		last = primary.QueryString(t, "select pg_walfile_name(pg_switch_wal())")
	}
	rd.waitFor("the switched segments stored", func(Status) bool { return stored(last) })
	// The switch point in the middle of a segment: a commit, flushed
	// (a non-transactional message may not be, and the timeline's last
	// segment would then hold no WAL, its .partial removed, not stored).
	primary.Exec(t, "create table filler as select generate_series(1, 1000) as i")
	rd.waitFlushed(primary, "the standby's WAL in the spool")
	w := rd.waitFor("the segment in progress", func(st Status) bool { return st.Sites["test"].WAL != nil }).Sites["test"].WAL
	partial := w.Segment + ".partial"
	if !strings.HasPrefix(partial, "00000001") || partial <= last {
		t.Fatalf("receiving %s after %s, want a later segment of timeline 1", partial, last)
	}
	plantedKey := arch.Layout.WALKey(partial)
	planted, obj := storetest.Read(t, st, arch.Layout.WALKey(last))
	md := maps.Clone(obj.Metadata)
	md[archive.MetaPartialDataSize] = strconv.Itoa(1 << 20)
	if err := st.Put(ctx, plantedKey, bytes.NewReader(planted), md); err != nil {
		t.Fatal(err)
	}

	standby.Promote(t)
	standby.WaitRecoveryDone(t, time.Minute)
	standby.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'z')")
	after := standby.QueryString(t, "select pg_walfile_name(pg_switch_wal())")
	if !strings.HasPrefix(after, "00000002") {
		t.Fatalf("segment %s after promotion, want timeline 2", after)
	}
	storedAt := time.Now()
	rd.waitFor("timeline 2 stored", func(Status) bool { return stored("00000002.history") && stored(after) })
	spool := filepath.Join(site.SpoolDir, partial)
	if _, err := os.Stat(spool); err != nil {
		t.Fatalf("the refused %s left the spool: %v", partial, err)
	}

	// Waiting for upload, it shows in the lag, past the backoff's tries.
	w = rd.waitFor("the refused .partial in the lag", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.LagSeconds >= 3 && slices.Equal(w.RefusedPartials, []string{partial})
	}).Sites["test"].WAL
	if !strings.Contains(w.LastError, partial) {
		t.Errorf("wal.last_error %q does not name %s", w.LastError, partial)
	}
	line := metric(t, port, MetricWALLagSeconds+`{site="test"}`)
	if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err != nil || v < 3 {
		t.Errorf("metric %q, want the refused .partial's age", line)
	}
	// Nothing missing for the WAL archive check. With only the public
	// key it cannot read the new timeline's (encrypted) history file: it
	// follows timeline 2 with the history the server gave the receiver,
	// and is made.
	a := rd.waitFor("a WAL archive check after timeline 2 was stored", func(st Status) bool {
		a := st.Sites["test"].WALArchive
		return a != nil && (a.CheckedAt != nil && a.CheckedAt.After(storedAt) || a.LastErrorAt != nil && a.LastErrorAt.After(storedAt))
	}).Sites["test"].WALArchive
	if a.LastErrorAt != nil && a.LastErrorAt.After(storedAt) {
		t.Errorf("the WAL archive check after timeline 2 was stored was not made: %s", a.LastError)
	}
	if a.MissingSegments != 0 {
		t.Errorf("wal_archive %+v with the refused %s in the spool, want nothing missing", a, partial)
	}
	t.Logf("wal_archive after the switch: %+v", a)
	if got, _ := storetest.Read(t, st, plantedKey); !bytes.Equal(got, planted) {
		t.Fatalf("the planted %s was replaced", plantedKey)
	}

	// A stop leaves it in the spool, and says so.
	rd.stop()
	if logs := rd.logs.String(); !strings.Contains(logs, "files left in the spool for the next run") {
		t.Errorf("the stop did not report the refused %s left in the spool:\n%s", partial, logs)
	}
	// The next run's hole check at resume finds no hole.
	rd = runDaemon(t, opts)
	rd.waitFor("the next run streaming, the .partial refused again", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.Connected && w.Timeline == 2 && slices.Equal(w.RefusedPartials, []string{partial})
	})
	resumed := time.Now()
	a = rd.waitFor("a WAL archive check of the next run", func(st Status) bool {
		a := st.Sites["test"].WALArchive
		return a != nil && (a.CheckedAt != nil && a.CheckedAt.After(resumed) || a.LastErrorAt != nil && a.LastErrorAt.After(resumed))
	}).Sites["test"].WALArchive
	w = rd.waitFor("status", func(Status) bool { return true }).Sites["test"].WAL
	if len(w.Holes) != 0 || w.HoleCheckUndecided != nil || a.MissingSegments != 0 {
		t.Errorf("holes %+v, undecided %+v, wal_archive %+v with the refused %s in the spool, want none", w.Holes, w.HoleCheckUndecided, a, partial)
	}

	// The operator moves the object away: the retry stores the file.
	if err := st.Delete(ctx, plantedKey); err != nil {
		t.Fatal(err)
	}
	rd.waitFor("the .partial stored, the lag gone", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && len(w.RefusedPartials) == 0 && w.LagSeconds < 3 && stored(partial)
	})
	if _, err := os.Stat(spool); !os.IsNotExist(err) {
		t.Errorf("the stored %s is still in the spool: %v", partial, err)
	}
}

// publicKeyStandbySite starts a primary (the newest major under test, 1
// MiB segments) and a cold standby of it, and returns them with a site
// streaming the standby into an encrypted local archive whose daemon
// holds only the public key (the recommended setup), on a daily schedule
// of fast basebackups in 1 MiB chunks, and that archive and its store.
func publicKeyStandbySite(t *testing.T) (primary, standby *pgtest.Cluster, st *storage.Local, arch *archive.Archive, site Site) {
	t.Helper()
	primary = pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	standby = pgtest.StartColdStandby(t, primary)
	key, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	st = storage.NewLocal(t.TempDir())
	arch = &archive.Archive{Store: st, Site: "test", Codec: &archive.Codec{KeyID: "k1", PublicKey: &key.PublicKey,
		PublicKeys: map[string]*rsa.PublicKey{"k1": &key.PublicKey}, RequireEncryption: true}}
	site = streamingSiteTo(t, standby.ConnString("postgres"), st)
	site.OpenArchive = func(context.Context) (*archive.Archive, func(), error) { return arch, func() {}, nil }
	site.Schedule.Interval = 24 * time.Hour
	site.Backup = basebackup.Options{Fast: true, ChunkSize: 1 << 20}
	return primary, standby, st, arch, site
}
