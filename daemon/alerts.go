package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Alert file names. The first five are PGHoard's (pghoard.py, transfer.py),
// so monitoring written for PGHoard keeps working.
const (
	AlertAuthentication     = "authentication_error"      // PostgreSQL refused the password or authentication method
	AlertConfiguration      = "configuration_error"       // a refused replication connection (pg_hba.conf, REPLICATION, a client certificate, no WAL sender free), a connection refused for want of a slot (max_connections), a TLS connection not made (sslrootcert, host, ssl = off), or a slot another process streams from
	AlertUploadRetries      = "upload_retries_warning"    // an upload failed more than upload_retries_warning_limit times
	AlertVersionMismatch    = "version_mismatch_error"    // PGHoard: client tool major version differs from the server's
	AlertVersionUnsupported = "version_unsupported_error" // the server's version is not supported
	// AlertWALHole is hoard's: the WAL receiver found segments missing
	// from the archive before where it resumed streaming (the spool was
	// lost, or the slot moved on without it). Backups taken before cannot
	// be restored past the hole; it is cleared by the next basebackup.
	AlertWALHole = "wal_hole_error"
	// AlertWALStoredLag is hoard's: the WAL not yet stored in the archive
	// (as a segment or .partial) is older, or larger, than the site's
	// wal_stored_lag_alert_seconds or wal_stored_lag_alert_bytes: losing
	// the server and the daemon's disk now would lose more than that.
	AlertWALStoredLag = "wal_stored_lag_warning"
	// AlertSiteStopped is hoard's: a site stopped with an error that
	// ends its run (its WAL receiver cannot continue, its spool or
	// folder is another daemon's, its storage does not open) while the
	// daemon runs its other sites on, until a run of it gets going
	// again (daemon.go, siteFailure).
	AlertSiteStopped = "site_stopped_error"
	// AlertWALArchiveGap is hoard's: the daemon's WAL archive check
	// (walgaps.go) found segments of a kept backup's WAL missing from the
	// archive (deleted from the bucket, or stored damaged): point-in-time
	// recovery of that backup stops before them.
	AlertWALArchiveGap = "wal_archive_gap_error"
	// AlertTimelineHistoryDamaged is hoard's: the WAL archive check found
	// a timeline history file stored damaged that PostgreSQL asks for
	// while it recovers a kept backup, so hoard restore refuses it. It is
	// not AlertWALArchiveGap: no segment is missing, and what fixes it
	// differs (a good copy of the history file, not a basebackup).
	AlertTimelineHistoryDamaged = "timeline_history_damaged"
	// AlertOrphanSpool is hoard's: the spool of a site the daemon does
	// not run (<backup_location>/<site>/xlog_incoming, no daemon holding
	// its lock) holds WAL that no run is known to have stored, as the
	// daemon's start or last reload found it (orphanspool.go).
	AlertOrphanSpool = "orphan_spool_error"
)

// knownAlerts are looked for by Active even when this process has not
// raised them, so a file left by an earlier run shows until it is cleared.
var knownAlerts = []string{
	AlertAuthentication, AlertConfiguration, AlertUploadRetries,
	AlertVersionMismatch, AlertVersionUnsupported, AlertRestoreTest, AlertWALHole, AlertWALStoredLag,
	AlertBackupDamaged, AlertSiteStopped, AlertWALArchiveGap, AlertTimelineHistoryDamaged,
	AlertOrphanSpool,
}

// AlertBackupDamaged is raised while retention finds that a backup it
// keeps fails its checks (archive.RetentionPlan.Damaged): it then keeps
// older backups instead of deleting them, until a newer one is known good.
const AlertBackupDamaged = "backup_damaged"

// alertContent is what PGHoard writes into every alert file.
const alertContent = "alert"

// Alerts manages PGHoard-style alert files: while a condition holds, the file
// <dir>/<name> exists and contains "alert", for tools that watch the
// directory (Nagios checks, node_exporter's textfile scripts). Unlike PGHoard,
// which never deletes them, hoard clears a file when its condition ends. It
// is safe for concurrent use.
type Alerts struct {
	dir string

	mu    sync.Mutex
	names map[string]bool // every name raised or cleared through a
}

// NewAlerts returns an Alerts writing into dir (PGHoard's alert_file_dir).
// Nothing is touched on disk until Raise or Clear.
func NewAlerts(dir string) *Alerts {
	return &Alerts{dir: dir, names: make(map[string]bool)}
}

// Raise creates the alert file name, and the directory if it is missing. It
// is idempotent: an existing alert file is left as it is. The file appears
// whole (written to a temporary name, then renamed), so a watcher never reads
// it half-written.
func (a *Alerts) Raise(name string) error {
	if err := checkAlertName(name); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.names[name] = true
	path := filepath.Join(a.dir, name)
	if b, err := os.ReadFile(path); err == nil && string(b) == alertContent {
		return nil
	}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return fmt.Errorf("raise alert %s: %w", name, err)
	}
	if err := writeFileAtomic(path, []byte(alertContent), 0o644); err != nil {
		return fmt.Errorf("raise alert %s: %w", name, err)
	}
	return nil
}

// Clear removes the alert file name. Clearing an alert that is not raised
// is not an error.
func (a *Alerts) Clear(name string) error {
	if err := checkAlertName(name); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.names[name] = true
	err := os.Remove(filepath.Join(a.dir, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear alert %s: %w", name, err)
	}
	return nil
}

// Active returns the names of the alert files that exist now, sorted: those
// raised through a, and PGHoard's alert names even when an earlier run left
// them behind.
func (a *Alerts) Active() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(a.names)+len(knownAlerts))
	for name := range a.names {
		seen[name] = true
	}
	for _, name := range knownAlerts {
		seen[name] = true
	}
	active := []string{}
	for name := range seen {
		if _, err := os.Stat(filepath.Join(a.dir, name)); err == nil {
			active = append(active, name)
		}
	}
	sort.Strings(active)
	return active
}

// checkAlertName refuses names that are not a plain file name.
func checkAlertName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("alert name %q: not a plain file name", name)
	}
	return nil
}
