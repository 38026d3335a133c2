package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
)

// WAL capture modes of a site (from PGHoard's active_backup_mode).
const (
	// WALStream streams WAL over a replication slot with walstream
	// (pg_receivexlog, walreceiver).
	WALStream = "stream"
	// WALArchiveCommand leaves WAL to PostgreSQL's archive_command running
	// hoard wal-push (archive_command).
	WALArchiveCommand = "archive_command"
	// WALNone captures no WAL (basic, standalone_hot_backup): backups are
	// restorable only with WAL archived some other way.
	WALNone = "none"
)

// Defaults of Options and their sites.
const (
	DefaultRetentionInterval = 5 * time.Minute
	DefaultStateInterval     = 5 * time.Second
	DefaultDrainTimeout      = 300 * time.Second
)

// Options configure Run.
type Options struct {
	// Sites are the backup sites to serve. Inactive ones are listed in the
	// status but get no supervisor: no WAL, no backups, no deletions.
	Sites []Site
	// Reload delivers a new list of sites (after SIGHUP). Sites whose
	// Fingerprint changed are restarted, new ones started, removed ones
	// stopped; the others keep running. Nil means no reloads.
	Reload <-chan []Site

	// StateFile is json_state_file_path: the daemon's Status is written
	// there every StateInterval. "" writes none.
	StateFile     string
	StateInterval time.Duration // 0 means DefaultStateInterval
	// AlertDir is alert_file_dir, where PGHoard's alert files go; "" turns
	// alert files off.
	AlertDir string
	// MaintenanceFile is maintenance_mode_file: while it exists no
	// basebackup and no retention run starts (WAL is still streamed).
	MaintenanceFile string
	// UploadRetriesWarningLimit is upload_retries_warning_limit: after
	// more failed attempts in a row the upload_retries_warning alert is
	// raised. Zero means 3.
	UploadRetriesWarningLimit int
	// DrainTimeout is graceful_shutdown_upload_timeout: how long the WAL
	// uploads at shutdown (the segment in progress, the uploads queued
	// before it) may take. Zero means
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// RetentionInterval is how often retention runs while no backup does;
	// zero means DefaultRetentionInterval.
	RetentionInterval time.Duration
	// WALCheckInterval is how often each active site checks that the
	// WAL of its kept backups is stored (walgaps.go); zero means
	// DefaultWALCheckInterval.
	WALCheckInterval time.Duration

	// HTTP, when set, serves /healthz, /status, /metrics and backup
	// requests.
	HTTP *HTTPConfig
	// StatsD, when set, sends the metrics over UDP every StateInterval.
	StatsD *StatsDConfig
	// MetricLabels are added to every metric (prometheus.tags).
	MetricLabels map[string]string

	Version string // hoard's version, for the status
	Logger  zerolog.Logger
}

// HTTPConfig is where and how the daemon serves HTTP.
type HTTPConfig struct {
	Address            string
	Port               int
	Username, Password string // HTTP Basic auth when Username is set
	TLSCertFile        string // HTTPS when both are set
	TLSKeyFile         string
}

// StatsDConfig is the statsd key.
type StatsDConfig struct {
	Host   string
	Port   int
	Format string // telegraf or datadog
	Tags   map[string]string
}

// Site is one backup site as the daemon runs it.
type Site struct {
	Name string
	// Fingerprint identifies the configuration the Site was built from:
	// on reload, a site is restarted only when it changed.
	Fingerprint string
	// Destination identifies where the site's WAL is stored: the storage
	// location (type and the keys that name a place: bucket, container,
	// directory, host, region, ...), prefix and site name, not its
	// credentials or settings. A reload that restarts the site with the
	// same Destination does not wait for the stopped run's uploads (the
	// next run stores them there); with another one, or an empty one, it
	// waits up to DrainTimeout so that the WAL lands where it went, and
	// when that WAL is still not stored it keeps the site running with
	// its previous settings.
	Destination string
	// Active is false for a read-only site (active: false).
	Active bool
	// ActiveBackupMode is the configured active_backup_mode, recorded in
	// backup metadata and the status; WAL says what it means.
	ActiveBackupMode string
	// WAL is WALStream, WALArchiveCommand or WALNone.
	WAL string

	// ConnString is the libpq connection string of the node to stream and
	// back up from.
	ConnString string
	// Slot is the physical replication slot for streaming.
	Slot string
	// SpoolDir is the WAL spool, <backup_location>/<site>/xlog_incoming.
	SpoolDir string
	// Dir is the folder the daemon owns for the site,
	// <backup_location>/<site>, where the spool and the restore tests'
	// scratch directories live; "" when backup_location is not set. The
	// site holds a lock in it for as long as it runs (lockSiteDir).
	Dir string
	// MinFreeBytes is pg_receivexlog.min_disk_free_bytes (0 = off).
	MinFreeBytes uint64
	// ResumeMultiplier is pg_receivexlog.resume_multiplier (0 = 1.5) and
	// DiskCheckInterval pg_receivexlog.disk_space_check_interval (0 = 1 s).
	ResumeMultiplier  float64
	DiskCheckInterval time.Duration
	// PartialUploadInterval is wal_partial_upload_interval (0 = off).
	PartialUploadInterval time.Duration
	// ReceiveTimeout is wal_receiver_timeout: the WAL receiver ends a
	// connection on which nothing came from the server for that long,
	// and reconnects (walstream.Options.ReceiveTimeout; 0 = one minute).
	ReceiveTimeout time.Duration
	// Synchronous is the site's synchronous setting: the receiver reports
	// as flushed only WAL that is stored (walstream.Options.Synchronous),
	// under ApplicationName.
	Synchronous     bool
	ApplicationName string
	// StoredLagAlert and StoredLagAlertBytes are
	// wal_stored_lag_alert_seconds and wal_stored_lag_alert_bytes: the
	// bounds on the WAL not stored beyond which AlertWALStoredLag is
	// raised (0 = none).
	StoredLagAlert      time.Duration
	StoredLagAlertBytes uint64
	// Push configures WAL uploads (hash_algorithm, pg_version).
	Push archive.PushOptions

	Schedule  Schedule
	Retention archive.RetentionPolicy
	// RetentionRefused, when set, says why the site's retention must not
	// run: another site stores its objects under the site's keys or in
	// one of its folders, which retention would delete as the site's
	// own. Each retention run then fails with it and deletes nothing;
	// WAL and backups go on.
	RetentionRefused error
	// RestoreTest schedules test restores (restore_test_interval_hours).
	RestoreTest RestoreTest
	// Backup is the template of every basebackup's options: chunk size,
	// data directory, version... The daemon fills in ConnString, Archive,
	// Reason, DecisionTime, NormalizedTime, NoWait, ActiveBackupMode and
	// Logger.
	Backup basebackup.Options

	// OpenArchive opens the site's archive (with the archives of its
	// moved_from sites, for retention) and returns a func that closes
	// what it opened. It is called each time the site's supervisor starts.
	OpenArchive func(ctx context.Context) (*archive.Archive, func(), error)
}

// check reports the first problem with s.
func (s *Site) check() error {
	switch {
	case s.Name == "":
		return errors.New("daemon: site without a name")
	case !s.Active:
		return nil
	case s.OpenArchive == nil:
		return fmt.Errorf("daemon: site %s: no archive", s.Name)
	}
	switch s.WAL {
	case WALStream:
		if s.Slot == "" || s.SpoolDir == "" {
			return fmt.Errorf("daemon: site %s: streaming needs a slot and a spool directory", s.Name)
		}
	case WALArchiveCommand, WALNone:
	default:
		return fmt.Errorf("daemon: site %s: unknown WAL mode %q", s.Name, s.WAL)
	}
	return nil
}

// defaults fills in zero values and checks the sites.
func (o *Options) defaults() error {
	if o.StateInterval <= 0 {
		o.StateInterval = DefaultStateInterval
	}
	if o.UploadRetriesWarningLimit <= 0 {
		o.UploadRetriesWarningLimit = 3
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.RetentionInterval <= 0 {
		o.RetentionInterval = DefaultRetentionInterval
	}
	if o.WALCheckInterval <= 0 {
		o.WALCheckInterval = DefaultWALCheckInterval
	}
	return checkSites(o.Sites)
}

func checkSites(sites []Site) error {
	seen := map[string]bool{}
	for i := range sites {
		if err := sites[i].check(); err != nil {
			return err
		}
		if seen[sites[i].Name] {
			return fmt.Errorf("daemon: site %s listed twice", sites[i].Name)
		}
		seen[sites[i].Name] = true
	}
	return nil
}
