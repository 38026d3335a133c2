package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_WALConnectedMetric starts the daemon while the server of its
// streaming site is down (the replication connection refused), beside a
// site whose WAL comes through archive_command. The streaming site's
// receiver never connects, so it has received nothing: its
// hoard_wal_connected is 0 from the start, which the HoardWALNotStreaming
// rule fires on, and the archive_command site, which never streams, has
// no hoard_wal_connected to fire on. Once the server is up, the receiver
// connects and the gauge is 1.
func TestRun_WALConnectedMetric(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	c.Stop(t)
	streaming := streamingSite(t, c.ConnString("postgres"))
	pushedArch := &archive.Archive{Store: storage.NewLocal(t.TempDir()), Codec: &archive.Codec{}, Site: "pushed"}
	pushed := Site{
		Name: "pushed", Fingerprint: "1", Active: true,
		ActiveBackupMode: "archive_command", WAL: WALArchiveCommand, ConnString: c.ConnString("postgres"),
		OpenArchive: func(context.Context) (*archive.Archive, func(), error) { return pushedArch, func() {}, nil },
	}
	port := testio.FreePort(t)
	rd := runDaemon(t, Options{Sites: []Site{streaming, pushed}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}})
	rd.waitFor("both sites running", func(st Status) bool { return st.Sites["test"].Running && st.Sites["pushed"].Running })
	time.Sleep(time.Second) // a few refreshes (StateInterval 200ms)

	if got, want := metric(t, port, MetricWALConnected+`{site="test"}`), MetricWALConnected+`{site="test"} 0`; got != want {
		t.Errorf("streaming site, server down: metric %q, want %q", got, want)
	}
	if got := metric(t, port, MetricWALReceived+`{site="test"}`); got != MetricWALReceived+`{site="test"} 0` {
		t.Errorf("streaming site, server down: metric %q, want nothing received", got)
	}
	if got := metric(t, port, MetricWALConnected+`{site="pushed"}`); got != "" {
		t.Errorf("archive_command site: metric %q, want none (it never streams)", got)
	}

	c.Start(t)
	rd.waitFor("the receiver streaming", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.Connected
	})
	deadline := time.Now().Add(runTimeout)
	for metric(t, port, MetricWALConnected+`{site="test"}`) != MetricWALConnected+`{site="test"} 1` {
		if time.Now().After(deadline) {
			t.Fatalf("metric %q after the receiver connected, want 1", metric(t, port, MetricWALConnected+`{site="test"}`))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
