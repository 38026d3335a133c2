package command

import (
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/daemon"
	"github.com/hoardbackup/hoard/restore"
)

func testCLIContext() *cli.Context {
	app := &cli.App{Version: "test"}
	return cli.NewContext(app, flag.NewFlagSet("hoard", flag.ContinueOnError), nil)
}

func parseTestConfig(t *testing.T, js string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.json", []byte(js), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestDaemonOptions checks the mapping from PGHoard's keys to the daemon's
// options: WAL mode, slot, spool, disk guard, partial uploads, schedule.
func TestDaemonOptions(t *testing.T) {
	const js = `{
		"backup_location": "/var/lib/hoard",
		"http_port": 16001,
		"upload_retries_warning_limit": 5,
		"graceful_shutdown_upload_timeout": 12,
		"backup_sites": {
			"Main-Site": {
				"nodes": [{"host": "db1", "port": 5432}],
				"basebackup_interval_hours": 6, "basebackup_hour": 1, "basebackup_minute": 30,
				"basebackup_count": 3,
				"pg_receivexlog": {"min_disk_free_bytes": 1073741824},
				"wal_partial_upload_interval": 30,
				"wal_stored_lag_alert_seconds": 90, "wal_stored_lag_alert_bytes": 1048576,
				"wal_receiver_timeout": 120
			},
			"pushed": {
				"active_backup_mode": "archive_command",
				"nodes": [{"host": "db2", "slot": "own_slot"}],
				"basebackup_interval_hours": null
			},
			"quick": {"active_backup_mode": "basic", "active": false}
		}
	}`
	cfg := parseTestConfig(t, js)
	o, err := daemonOptions(testCLIContext(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.UploadRetriesWarningLimit != 5 || o.DrainTimeout != 12*time.Second || o.HTTP.Port != 16001 || o.HTTP.Address != "127.0.0.1" {
		t.Errorf("global options %+v", o)
	}
	if len(o.Sites) != 3 {
		t.Fatalf("%d sites", len(o.Sites))
	}
	main, pushed, quick := o.Sites[0], o.Sites[1], o.Sites[2]

	if main.WAL != daemon.WALStream || main.Slot != "hoard_main_site" || main.SpoolDir != "/var/lib/hoard/Main-Site/xlog_incoming" {
		t.Errorf("streaming site: wal %s slot %s spool %s", main.WAL, main.Slot, main.SpoolDir)
	}
	// The disk guard: pg_receivexlog.min_disk_free_bytes.
	if main.MinFreeBytes != 1<<30 || main.PartialUploadInterval != 30*time.Second {
		t.Errorf("disk guard %d, partial interval %s", main.MinFreeBytes, main.PartialUploadInterval)
	}
	if main.StoredLagAlert != 90*time.Second || main.StoredLagAlertBytes != 1<<20 {
		t.Errorf("stored lag alert %s, %d bytes", main.StoredLagAlert, main.StoredLagAlertBytes)
	}
	if main.ReceiveTimeout != 120*time.Second || pushed.ReceiveTimeout != time.Minute {
		t.Errorf("receive timeout %s, default %s; want 2m0s, 1m0s", main.ReceiveTimeout, pushed.ReceiveTimeout)
	}
	if s := main.Schedule; s.Interval != 6*time.Hour || !s.Anchored || s.Hour != 1 || s.Minute != 30 {
		t.Errorf("schedule %+v", s)
	}
	if main.Retention.MaxCount != 3 || main.Backup.BasebackupMode != config.BasebackupLocalTar || main.ConnString == "" {
		t.Errorf("retention %+v, backup mode %s, conn %q", main.Retention, main.Backup.BasebackupMode, main.ConnString)
	}

	if pushed.WAL != daemon.WALArchiveCommand || pushed.Slot != "own_slot" || pushed.SpoolDir != "" || pushed.MinFreeBytes != 0 {
		t.Errorf("archive_command site %+v", pushed)
	}
	// Every site's folder, spool or none: the site's lock lives there.
	if main.Dir != "/var/lib/hoard/Main-Site" || pushed.Dir != "/var/lib/hoard/pushed" {
		t.Errorf("site folders %q, %q", main.Dir, pushed.Dir)
	}
	if pushed.Schedule.Interval != 0 {
		t.Errorf("null interval mapped to %s", pushed.Schedule.Interval)
	}
	if quick.WAL != daemon.WALNone || quick.Active {
		t.Errorf("basic inactive site: wal %s active %v", quick.WAL, quick.Active)
	}

	// The same configuration gives the same fingerprints; a change to a
	// site changes only that site's.
	cfg2 := parseTestConfig(t, strings.Replace(js, `"basebackup_interval_hours": null`, `"basebackup_interval_hours": 12`, 1))
	o2, err := daemonOptions(testCLIContext(), cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if o2.Sites[0].Fingerprint != main.Fingerprint || o2.Sites[2].Fingerprint != quick.Fingerprint {
		t.Error("unchanged sites changed fingerprint")
	}
	if o2.Sites[1].Fingerprint == pushed.Fingerprint {
		t.Error("a changed site kept its fingerprint")
	}
}

func TestDaemonOptions_ErrNoBackupLocation(t *testing.T) {
	cfg := parseTestConfig(t, `{"backup_sites": {"s": {"nodes": [{"host": "db"}],
		"object_storage": {"storage_type": "local", "directory": "/tmp/x"}}}}`)
	_, err := daemonOptions(testCLIContext(), cfg)
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Fatalf("streaming without backup_location: err %v, want a usage error", err)
	}
}

func TestDaemonOptions_Synchronous(t *testing.T) {
	cfg := parseTestConfig(t, `{"backup_location": "/b", "backup_sites": {"s": {"nodes": [{"host": "db"}],
		"active_backup_mode": "walreceiver", "synchronous": true,
		"object_storage": {"storage_type": "local", "directory": "/tmp/x"}}}}`)
	o, err := daemonOptions(testCLIContext(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s := o.Sites[0]; !s.Synchronous || s.ApplicationName != "hoard_s" || s.StoredLagAlert != defaultSynchronousLagAlert {
		t.Errorf("synchronous %v, application name %q, lag alert %s", s.Synchronous, s.ApplicationName, s.StoredLagAlert)
	}
}

func TestDaemonOptions_ErrSynchronousNotStreaming(t *testing.T) {
	cfg := parseTestConfig(t, `{"backup_location": "/b", "backup_sites": {"s": {"nodes": [{"host": "db"}],
		"active_backup_mode": "archive_command", "synchronous": true,
		"object_storage": {"storage_type": "local", "directory": "/tmp/x"}}}}`)
	_, err := daemonOptions(testCLIContext(), cfg)
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "synchronous") {
		t.Fatalf("synchronous with archive_command: err %v, want a usage error naming synchronous", err)
	}
}

func TestDefaultSlot(t *testing.T) {
	for site, want := range map[string]string{
		"default":               "hoard_default",
		"Prod-EU.1":             "hoard_prod_eu_1",
		strings.Repeat("x", 70): "hoard_" + strings.Repeat("x", 57), // 63 bytes: NAMEDATALEN - 1
	} {
		if got := defaultSlot(site); got != want {
			t.Errorf("defaultSlot(%q) = %q, want %q", site, got, want)
		}
	}
}

// TestDaemonOptions_Example loads deploy/hoard.json.example.
func TestDaemonOptions_Example(t *testing.T) {
	cfg, err := config.Load("../deploy/hoard.json.example", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	o, err := daemonOptions(testCLIContext(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s := o.Sites[0]; s.WAL != daemon.WALStream || s.Slot != "hoard_default" || !s.Schedule.Anchored {
		t.Errorf("example site %+v", s)
	}
}

// TestDaemonOptions_RestoreTest: restore_test_interval_hours gives the
// site scheduled restore tests with this binary's wal-fetch and the same
// configuration file, scratch under backup_location.
func TestDaemonOptions_RestoreTest(t *testing.T) {
	cfg := parseTestConfig(t, `{"backup_location": "/var/lib/hoard", "restore_process_count": 3,
		"backup_sites": {"s": {"nodes": [{"host": "db"}], "restore_test_interval_hours": 1.5, "pg_bin_directory": "/opt/pg/bin"},
			"off": {"nodes": [{"host": "db"}]}}}`)
	o, err := daemonOptions(testCLIContext(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	off, s := o.Sites[0].RestoreTest, o.Sites[1].RestoreTest
	if off.Interval != 0 || off.RestoreCommand != "" {
		t.Errorf("site without restore_test_interval_hours: %+v", off)
	}
	if s.Interval != 90*time.Minute || s.Dir != "/var/lib/hoard/s/restore-test" || s.PGBinDir != "/opt/pg/bin" || s.Parallel != 3 {
		t.Errorf("restore test %+v", s)
	}
	abs, _ := filepath.Abs("test.json")
	if want := " --config " + restore.ShellQuote(abs) + " --site s wal-fetch %f %p"; !strings.HasSuffix(s.RestoreCommand, want) {
		t.Errorf("restore_command %q, want it to end with %q", s.RestoreCommand, want)
	}
}

// TestDaemonOptions_Destination: a reload restarts a site at once when
// its WAL still goes to the same place (daemon.Site.Destination), and
// only then. Credentials, the endpoint's rate limit and compression keep
// the destination; another bucket, endpoint host, prefix or site name
// changes it.
func TestDaemonOptions_Destination(t *testing.T) {
	const js = `{
		"backup_location": "/var/lib/hoard",
		"backup_sites": {
			"main": {
				"nodes": [{"host": "db1"}],
				"prefix": "main",
				"object_storage": {"storage_type": "s3", "region": "eu-west-1", "bucket_name": "b",
					"host": "minio", "port": 9000, "aws_access_key_id": "AK", "aws_secret_access_key": "SK"}
			}
		}
	}`
	destination := func(js string) (string, string) {
		t.Helper()
		o, err := daemonOptions(testCLIContext(), parseTestConfig(t, js))
		if err != nil {
			t.Fatal(err)
		}
		return o.Sites[0].Fingerprint, o.Sites[0].Destination
	}
	fp, dest := destination(js)
	for _, tc := range []struct {
		name     string
		old, new string
		same     bool
	}{
		{"Credentials", `"aws_secret_access_key": "SK"`, `"aws_secret_access_key": "SK2"`, true},
		{"AccessKey", `"aws_access_key_id": "AK"`, `"aws_access_key_id": "AK2"`, true},
		{"RateLimit", `"prefix": "main",`, `"prefix": "main", "upload_rate_limit": 1048576,`, true},
		{"Compression", `"backup_location"`, `"compression": {"algorithm": "zstd"}, "backup_location"`, true},
		{"Prefix", `"prefix": "main"`, `"prefix": "main-upgraded"`, false},
		{"Bucket", `"bucket_name": "b"`, `"bucket_name": "c"`, false},
		{"Host", `"host": "minio"`, `"host": "minio2"`, false},
		{"SiteName", `"main": {`, `"other": {`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(js, tc.old) {
				t.Fatalf("%q not in the configuration", tc.old)
			}
			gotFP, got := destination(strings.Replace(js, tc.old, tc.new, 1))
			if gotFP == fp {
				t.Errorf("the change kept the fingerprint: the site would not restart")
			}
			if same := got == dest; same != tc.same {
				t.Errorf("destination %q, before %q: same %v, want %v", got, dest, same, tc.same)
			}
		})
	}
}
