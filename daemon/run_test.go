package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/metrics"
	"github.com/hoardbackup/hoard/storage"
)

// runTimeout bounds each wait of the Run tests.
const runTimeout = 90 * time.Second

// runningDaemon is Run in the background, with a state file to read.
type runningDaemon struct {
	t      *testing.T
	opts   Options
	cancel context.CancelFunc
	done   chan error
	logs   *testio.SyncBuffer // what Run logged
}

// streamingSite returns a site that streams WAL from c (as connString)
// into a local store, with no scheduled backups.
func streamingSite(t *testing.T, connString string) Site {
	t.Helper()
	return streamingSiteTo(t, connString, storage.NewLocal(t.TempDir()))
}

// backedUpCluster starts a cluster of the newest major with 1 MiB WAL
// segments, and returns it with a site that streams its WAL into st and
// takes a fast basebackup every 24 hours, the first at once.
func backedUpCluster(t *testing.T, st storage.Store) (*pgtest.Cluster, Site) {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	site := streamingSiteTo(t, c.ConnString("postgres"), st)
	site.Schedule.Interval = 24 * time.Hour
	site.Backup = basebackup.Options{Fast: true, ChunkSize: 1 << 20}
	return c, site
}

// streamingSiteTo is streamingSite storing into st.
func streamingSiteTo(t *testing.T, connString string, st storage.Store) Site {
	t.Helper()
	arch := &archive.Archive{Store: st, Codec: &archive.Codec{}, Site: "test"}
	return Site{
		Name: "test", Fingerprint: "1", Active: true,
		ActiveBackupMode: "pg_receivexlog", WAL: WALStream,
		ConnString: connString, Slot: "hoard_test", SpoolDir: filepath.Join(t.TempDir(), "xlog_incoming"),
		OpenArchive: func(context.Context) (*archive.Archive, func(), error) { return arch, func() {}, nil },
	}
}

// runDaemon runs the daemon with o (state file, alert directory and a
// short state interval filled in) until the test ends.
func runDaemon(t *testing.T, o Options) *runningDaemon {
	t.Helper()
	dir := t.TempDir()
	if o.StateFile == "" {
		o.StateFile = filepath.Join(dir, "state.json")
	}
	if o.AlertDir == "" {
		o.AlertDir = filepath.Join(dir, "alerts")
	}
	o.StateInterval = 200 * time.Millisecond
	logs := &testio.SyncBuffer{}
	o.Logger = zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), logs)).Level(zerolog.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	rd := &runningDaemon{t: t, opts: o, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { rd.done <- Run(ctx, o) }()
	t.Cleanup(rd.stop)
	return rd
}

// stop ends Run and checks it returned nil; calling it again does nothing.
func (rd *runningDaemon) stop() {
	if rd.done == nil {
		return
	}
	rd.cancel()
	select {
	case err := <-rd.done:
		if err != nil {
			rd.t.Errorf("Run: %v", err)
		}
	case <-time.After(runTimeout):
		rd.t.Errorf("Run did not return after cancel")
	}
	rd.done = nil
}

// status reads the state file; ok is false while there is none.
func (rd *runningDaemon) status() (st Status, ok bool) {
	data, err := os.ReadFile(rd.opts.StateFile)
	if err != nil || json.Unmarshal(data, &st) != nil {
		return st, false
	}
	return st, true
}

// waitFor polls cond until it holds, failing the test after runTimeout or
// when Run returns.
func (rd *runningDaemon) waitFor(what string, cond func(Status) bool) Status {
	rd.t.Helper()
	deadline := time.Now().Add(runTimeout)
	for {
		if st, ok := rd.status(); ok && cond(st) {
			return st
		}
		select {
		case err := <-rd.done:
			rd.done = nil
			rd.t.Fatalf("Run returned %v while waiting for %s", err, what)
		default:
		}
		if time.Now().After(deadline) {
			st, _ := rd.status()
			rd.t.Fatalf("%s: not within %s; status %+v", what, runTimeout, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFlushed waits until site test's receiver has fsynced into its
// spool the WAL c flushed so far, and returns that position.
func (rd *runningDaemon) waitFlushed(c *pgtest.Cluster, what string) pglogrepl.LSN {
	rd.t.Helper()
	lsn, err := pglogrepl.ParseLSN(c.QueryString(rd.t, "select pg_current_wal_flush_lsn()::text"))
	if err != nil {
		rd.t.Fatal(err)
	}
	rd.waitFor(what, func(s Status) bool {
		w := s.Sites["test"].WAL
		if w == nil {
			return false
		}
		got, err := pglogrepl.ParseLSN(w.Flushed)
		return err == nil && got >= lsn
	})
	return lsn
}

// alertFile reports whether the alert file name exists.
func (rd *runningDaemon) alertFile(name string) bool {
	_, err := os.Stat(filepath.Join(rd.opts.AlertDir, name))
	return err == nil
}

// TestRun_ConnectAlerts streams from a real cluster as a role that first
// has the wrong password (authentication_error), then the right one but
// no REPLICATION attribute (configuration_error); once the role may
// replicate, the receiver connects and both alerts are cleared, in the
// alert directory and in the status.
func TestRun_ConnectAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	hba := append([]string{"host replication hoard_user 127.0.0.1/32 scram-sha-256"}, pgtest.DefaultHBA...)
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], HBA: hba})
	c.Exec(t, "create role hoard_user login password 'right'")
	conn := func(password string) string {
		return "host=" + c.Host + " port=" + strconv.Itoa(c.Port) + " user=hoard_user password=" + password + " dbname=postgres sslmode=disable"
	}
	site := streamingSite(t, conn("wrong"))
	rd := runDaemon(t, Options{Sites: []Site{site}})
	rd.waitFor("authentication_error", func(st Status) bool {
		return slices.Contains(st.Alerts, AlertAuthentication) && rd.alertFile(AlertAuthentication)
	})
	rd.stop()

	// The right password, but no REPLICATION attribute.
	site.ConnString = conn("right")
	rd = runDaemon(t, Options{Sites: []Site{site}, AlertDir: rd.opts.AlertDir})
	st := rd.waitFor("configuration_error", func(st Status) bool {
		return slices.Contains(st.Alerts, AlertConfiguration) && rd.alertFile(AlertConfiguration)
	})
	// The file left by the previous run still shows until cleared.
	if !slices.Contains(st.Alerts, AlertAuthentication) {
		t.Errorf("alerts %v: authentication_error left by the previous run not reported", st.Alerts)
	}

	c.Exec(t, "alter role hoard_user replication")
	rd.waitFor("alerts cleared after the receiver connected", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.Connected && len(st.Alerts) == 0
	})
	for _, name := range []string{AlertAuthentication, AlertConfiguration} {
		if rd.alertFile(name) {
			t.Errorf("alert file %s still exists", name)
		}
	}
}

// TestRun_TLSAlert streams from a cluster speaking TLS with a node that
// verifies its certificate against another CA (what a man in the middle
// looks like): the receiver retries, the site's wal.last_error says
// what to check and configuration_error is raised; with the right CA it
// streams and the alert goes.
func TestRun_TLSAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Setenv("HOME", t.TempDir()) // no ~/.postgresql of the machine
	ca := pgtest.NewCA(t, "test")
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], Conf: ca.SSLConf(ca.Server(t, "localhost"))})
	conn := func(root string) string {
		return "host=localhost port=" + strconv.Itoa(c.Port) + " user=postgres dbname=postgres sslmode=verify-full sslrootcert=" + root
	}
	site := streamingSite(t, conn(pgtest.NewCA(t, "other").File))
	rd := runDaemon(t, Options{Sites: []Site{site}})
	st := rd.waitFor("configuration_error", func(st Status) bool {
		return slices.Contains(st.Alerts, AlertConfiguration) && rd.alertFile(AlertConfiguration)
	})
	if w := st.Sites["test"].WAL; w == nil || !strings.Contains(w.LastError, "TLS connection refused") || !strings.Contains(w.LastError, "sslrootcert") {
		t.Errorf("wal status %+v: want last_error to say the TLS connection was refused and what to check", w)
	}
	rd.stop()

	site.ConnString = conn(ca.File)
	rd = runDaemon(t, Options{Sites: []Site{site}, AlertDir: rd.opts.AlertDir})
	rd.waitFor("the alert cleared after the receiver connected", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.Connected && len(st.Alerts) == 0
	})
	if rd.alertFile(AlertConfiguration) {
		t.Errorf("alert file %s still exists", AlertConfiguration)
	}
}

// TestRun_NoWALSenderAlert streams from a cluster whose only WAL sender
// (max_wal_senders = 1) another replication connection holds: the
// receiver retries, the site's wal.last_error says to raise
// max_wal_senders and configuration_error is raised; once the sender is
// free it streams and the alert goes.
func TestRun_NoWALSenderAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], Conf: map[string]string{"max_wal_senders": "1"}})
	held, err := pgconn.Connect(context.Background(), c.ConnString("postgres")+" replication=true")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	rd := runDaemon(t, Options{Sites: []Site{streamingSite(t, c.ConnString("postgres"))}})
	st := rd.waitFor("configuration_error", func(st Status) bool {
		return slices.Contains(st.Alerts, AlertConfiguration) && rd.alertFile(AlertConfiguration)
	})
	if w := st.Sites["test"].WAL; w == nil || !strings.Contains(w.LastError, "raise max_wal_senders") {
		t.Errorf("wal status %+v: want last_error to say to raise max_wal_senders", w)
	}
	held.Close(context.Background())
	rd.waitFor("the alert cleared after the receiver connected", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.Connected && len(st.Alerts) == 0
	})
}

// TestRun_TooManyConnectionsAlert takes a basebackup from a cluster
// whose connection slots (max_connections = 3) other sessions hold: the
// WAL receiver streams (a WAL sender takes no such slot) but the
// backup's ordinary connection is refused, the site's last_backup_error
// says to raise max_connections and configuration_error is raised; once
// a slot is free the backup, retried with backoff, is stored and the
// alert goes.
func TestRun_TooManyConnectionsAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1,
		Conf: map[string]string{"max_connections": "3", "superuser_reserved_connections": "0"}})
	ctx := context.Background()
	var held []*pgconn.PgConn
	for range 3 {
		pg, err := pgconn.Connect(ctx, c.ConnString("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, pg)
		defer pg.Close(ctx)
	}
	site := streamingSite(t, c.ConnString("postgres"))
	site.Schedule.Interval = 24 * time.Hour
	site.Backup = basebackup.Options{Fast: true, ChunkSize: 1 << 20}
	rd := runDaemon(t, Options{Sites: []Site{site}})
	st := rd.waitFor("configuration_error", func(st Status) bool {
		return slices.Contains(st.Alerts, AlertConfiguration) && rd.alertFile(AlertConfiguration)
	})
	if e := st.Sites["test"].LastBackupError; !strings.Contains(e, "too many connections") || !strings.Contains(e, "raise max_connections") {
		t.Errorf("last_backup_error %q: want it to say too many connections and to raise max_connections", e)
	}
	held[0].Close(ctx)
	rd.waitFor("the alert cleared after the backup was stored", func(st Status) bool {
		s := st.Sites["test"]
		return s.LastBackup != nil && s.LastBackupError == "" && s.BackupFailures == 0 && len(st.Alerts) == 0
	})
	if rd.alertFile(AlertConfiguration) {
		t.Errorf("alert file %s still exists", AlertConfiguration)
	}
	if st, _ := rd.status(); st.Sites["test"].WAL == nil || !st.Sites["test"].WAL.Connected {
		t.Errorf("wal status %+v: want the receiver connected", st.Sites["test"].WAL)
	}
}

// TestDaemon_setAlert checks that an alert file stays while any site holds
// its condition, and that forgetting a site clears what it alone held.
func TestDaemon_setAlert(t *testing.T) {
	dir := t.TempDir()
	d := &daemon{log: zerolog.Nop(), alerts: NewAlerts(dir), raisedBy: map[string]map[string]bool{}}
	exists := func() bool {
		_, err := os.Stat(filepath.Join(dir, AlertAuthentication))
		return err == nil
	}
	d.setAlert(AlertAuthentication, "a", true)
	d.setAlert(AlertAuthentication, "b", true)
	d.setAlert(AlertAuthentication, "a", false)
	if !exists() {
		t.Fatal("alert cleared while site b still holds it")
	}
	d.forgetAlerts("b")
	if exists() {
		t.Fatal("alert not cleared once no site holds it")
	}
	// Clearing with no holder removes a file an earlier run left.
	if err := d.alerts.Raise(AlertConfiguration); err != nil {
		t.Fatal(err)
	}
	d.setAlert(AlertConfiguration, "a", false)
	if got := d.alerts.Active(); len(got) != 0 {
		t.Fatalf("active alerts %v, want none", got)
	}
}

// postBackup requests a basebackup of site over HTTP and returns the
// status code and body.
func postBackup(t *testing.T, port int, site string) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodPost, port, "/"+site+"/basebackup")
}

// httpDo sends a request without a body to path on the daemon's HTTP
// port and returns the status code and body.
func httpDo(t *testing.T, method string, port int, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestRun_Maintenance starts the daemon while the maintenance mode file
// exists, on a site with no backup (one is due at once): WAL streams and is
// archived, but no basebackup starts and a request is refused with 503.
// Once the file is removed, the due backup is taken.
func TestRun_Maintenance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c, site := backedUpCluster(t, storage.NewLocal(t.TempDir()))
	arch, _, _ := site.OpenArchive(context.Background())
	maint := filepath.Join(t.TempDir(), "maintenance")
	if err := os.WriteFile(maint, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	port := testio.FreePort(t)
	rd := runDaemon(t, Options{Sites: []Site{site}, MaintenanceFile: maint, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}})
	rd.waitFor("maintenance mode in the status", func(st Status) bool { return st.Sites["test"].Maintenance })

	// WAL still streams and is archived.
	seg := c.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "select pg_switch_wal()")
	rd.waitFor("segment "+seg+" archived", func(Status) bool {
		_, err := arch.Store.Stat(context.Background(), arch.Layout.WALKey(seg))
		return err == nil
	})
	code, body := postBackup(t, port, "test")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "maintenance mode") {
		t.Errorf("basebackup request in maintenance mode: %d %q, want 503 naming maintenance mode", code, body)
	}
	if bs, err := arch.ListBackups(context.Background()); err != nil || len(bs) != 0 {
		t.Fatalf("%d basebackups (%v) in maintenance mode, want none", len(bs), err)
	}
	if st, _ := rd.status(); st.Sites["test"].BackupRunning {
		t.Fatal("a basebackup runs in maintenance mode")
	}

	if err := os.Remove(maint); err != nil {
		t.Fatal(err)
	}
	rd.waitFor("the due basebackup after maintenance", func(st Status) bool {
		return !st.Sites["test"].Maintenance && st.Sites["test"].Backups == 1
	})
}

// TestRun_StatsD runs the daemon with statsd pointed at a UDP listener:
// once a segment is archived and the first basebackup taken, the
// datagrams hold the site's WAL gauges and the backup counter, in
// Telegraf's format with the configured tags.
func TestRun_StatsD(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	lines := make(chan string, 1<<16)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				close(lines)
				return
			}
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				select {
				case lines <- l:
				default: // the test reads only until it has what it needs
				}
			}
		}
	}()

	c, site := backedUpCluster(t, storage.NewLocal(t.TempDir()))
	port := pc.LocalAddr().(*net.UDPAddr).Port
	rd := runDaemon(t, Options{Sites: []Site{site}, StatsD: &StatsDConfig{Host: "127.0.0.1", Port: port, Format: metrics.StatsDTelegraf, Tags: map[string]string{"env": "test"}}})
	rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 })
	c.Exec(t, "select pg_switch_wal()")

	positive := func(v, k string) bool {
		n, err := strconv.ParseFloat(v, 64)
		return k == "g" && err == nil && n > 0
	}
	// Gauges come at every flush; the counters once, when they moved.
	want := map[string]func(value, kind string) bool{
		MetricWALConnected + ",env=test,site=test": func(v, k string) bool { return k == "g" && v == "1" },
		MetricWALUploaded + ",env=test,site=test": func(v, k string) bool {
			n, err := strconv.ParseFloat(v, 64)
			return k == "g" && err == nil && n > 0
		},
		MetricBackups + ",env=test,result=success,site=test": func(v, k string) bool { return k == "c" && v == "1" },
		MetricUploads + ",env=test,site=test":                func(v, k string) bool { return k == "c" },
		MetricLastUpload + ",env=test,site=test":             positive,
		MetricBackupSize + ",env=test,site=test":             positive,
		MetricBackupStored + ",env=test,site=test":           positive,
		MetricBackupRate + ",env=test,site=test":             positive,
	}
	deadline := time.After(runTimeout)
	for len(want) > 0 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("listener closed")
			}
			// name,tags:value|kind
			nameTags, rest, ok1 := strings.Cut(l, ":")
			value, kind, ok2 := strings.Cut(rest, "|")
			if !ok1 || !ok2 {
				t.Fatalf("malformed statsd line %q", l)
			}
			if check, ok := want[nameTags]; ok && check(value, kind) {
				delete(want, nameTags)
			}
		case <-deadline:
			t.Fatalf("no statsd lines for %v", slices.Collect(maps.Keys(want)))
		}
	}
}
