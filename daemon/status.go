package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/walstream"
)

// Status is the daemon's state: served at GET /status and written to the
// JSON state file (json_state_file_path).
type Status struct {
	Version   string                `json:"version"`
	StartedAt time.Time             `json:"started_at"`
	Time      time.Time             `json:"time"`
	Sites     map[string]SiteStatus `json:"backup_sites"`
	// Alerts are the names of the alert files that exist in
	// alert_file_dir, sorted; empty when there are none or alert files
	// are off.
	Alerts []string `json:"alerts"`
	// OrphanSpools are the spools of sites the daemon does not run that
	// hold WAL no run is known to have stored, as its start or last
	// reload found them (orphanspool.go).
	OrphanSpools []OrphanSpool `json:"orphan_spools,omitempty"`
}

// SiteStatus is one site's part of Status.
type SiteStatus struct {
	Active           bool   `json:"active"`
	ActiveBackupMode string `json:"active_backup_mode"`
	WALMode          string `json:"wal_mode"` // stream, archive_command or none
	Running          bool   `json:"running"`  // the site's supervisor runs
	Maintenance      bool   `json:"maintenance"`
	// Stopped is set while the site is stopped by an error and no run
	// of it since has got going again; nil otherwise.
	Stopped *SiteStopped `json:"stopped,omitempty"`

	// WAL is the receiver's progress; nil unless the site streams.
	WAL *WALStatus `json:"wal,omitempty"`

	LastBackup      *BackupStatus `json:"last_basebackup"`
	Backups         int           `json:"basebackups"`
	BackupRunning   bool          `json:"basebackup_running"`
	BackupStartedAt *time.Time    `json:"basebackup_started_at,omitempty"`
	BackupRequested bool          `json:"basebackup_requested"`
	NextBackup      *time.Time    `json:"next_scheduled_basebackup,omitempty"`
	// BackupFailures counts failed basebackup attempts in a row.
	BackupFailures int `json:"basebackup_failures_in_a_row"`
	// IncrementalFallbacks counts the scheduled incremental backups
	// taken as full ones since the daemon started, and
	// LastIncrementalFallback says why the last one was (its parent
	// named, when it was the parent).
	IncrementalFallbacks    int    `json:"incremental_fallbacks"`
	LastIncrementalFallback string `json:"last_incremental_fallback,omitempty"`

	LastRetention      *time.Time `json:"last_retention,omitempty"`
	UploadFailures     int        `json:"upload_failures_in_a_row"`
	LastError          string     `json:"last_error,omitempty"`
	LastErrorAt        *time.Time `json:"last_error_at,omitempty"`
	LastBackupError    string     `json:"last_basebackup_error,omitempty"`
	LastRetentionError string     `json:"last_retention_error,omitempty"`

	// WALArchive is the last WAL archive check's result (walgaps.go);
	// nil until the first check ends.
	WALArchive *WALArchiveStatus `json:"wal_archive,omitempty"`

	// RestoreTest is the scheduled test restores; nil when the site runs
	// none.
	RestoreTest *RestoreTestStatus `json:"restore_test,omitempty"`
}

// SiteStopped is a site whose run ended with an error while the daemon
// ran its other sites on (daemon.go, siteFailure).
type SiteStopped struct {
	// Error is the error that ended the site's last run, with its hint.
	Error string    `json:"error"`
	At    time.Time `json:"at"`
	// Failures counts the runs in a row that ended so.
	Failures int `json:"failures_in_a_row"`
	// NextRestart is when the daemon starts the site again; nil while
	// that run is under way (running says so) and has not yet proved
	// itself (siteProvenAfter).
	NextRestart *time.Time `json:"next_restart_at,omitempty"`
}

// WALStatus is the WAL receiver's progress (walstream.Status) with LSNs
// as PostgreSQL prints them.
type WALStatus struct {
	SystemID  string `json:"system_identifier,omitempty"`
	Timeline  int32  `json:"timeline"`
	Segment   string `json:"segment,omitempty"`
	Received  string `json:"received_lsn"`
	Flushed   string `json:"flushed_lsn"`
	Uploaded  string `json:"uploaded_lsn"`
	ServerLSN string `json:"server_lsn"`
	// LagBytes is the WAL the server has that is not yet archived as
	// complete segments.
	LagBytes uint64 `json:"lag_bytes"`
	// LagSeconds is the age of the oldest WAL file waiting to be
	// archived (a complete segment, .history or an ended timeline's
	// .partial, a refused one included, since it was first queued;
	// walstream.Status.QueuedSince), 0 when none waits.
	LagSeconds float64 `json:"lag_seconds"`
	// Stored is the end of the WAL stored in the archive, as complete
	// segments or the .partial copy of the segment being received.
	Stored string `json:"stored_lsn"`
	// StoredLagBytes and StoredLagSeconds are the recovery point
	// objective now: the WAL the server has that is not stored, and the
	// age of the oldest WAL received but not stored (0 when all is).
	StoredLagBytes   uint64  `json:"stored_lag_bytes"`
	StoredLagSeconds float64 `json:"stored_lag_seconds"`
	QueueDepth       int     `json:"upload_queue"`
	// RefusedPartials are the ended timelines' .partial files the
	// storage refuses for good (another copy is stored under the name,
	// one the daemon may not replace: archive.PartialRefused), still in
	// the spool and retried, by name: out of upload_queue between their
	// retries, they count in LagSeconds from when they were first queued.
	RefusedPartials []string   `json:"refused_partials,omitempty"`
	Connected       bool       `json:"connected"`
	Paused          bool       `json:"paused_by_disk_guard"`
	LastError       string     `json:"last_error,omitempty"`
	LastErrorAt     *time.Time `json:"last_error_at,omitempty"`
	// Holes are the runs of WAL segments the receiver found missing from
	// the archive before where it resumed streaming, since the last
	// basebackup: backups before them cannot be restored past them.
	Holes []walstream.Hole `json:"holes,omitempty"`
	// HoleCheckUndecided is the receiver's last hole check when it could
	// not decide whether WAL before where streaming resumed is missing;
	// nil when it decided, or a basebackup starting after that point
	// made the question moot for new restores.
	HoleCheckUndecided *HoleCheckUndecided `json:"hole_check_undecided,omitempty"`
	// FormerSlot is set once the receiver created its slot on a server
	// that lacked it, though WAL was streamed through the slot before
	// (walstream.FormerSlot): the server streamed from before may still
	// have the slot, keeping its WAL. The newest since the daemon
	// started, also after the site's receiver restarted
	// (daemon.formerSlot).
	FormerSlot *FormerSlot `json:"former_slot,omitempty"`
}

// FormerSlot is walstream.FormerSlot with what to do.
type FormerSlot struct {
	Slot      string     `json:"slot"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	// Timeline is the server's timeline when the slot was created, and
	// StreamedTimeline that of the WAL streamed before.
	Timeline         int32  `json:"timeline"`
	StreamedTimeline int32  `json:"streamed_timeline"`
	Hint             string `json:"hint"`
}

// HoleCheckUndecided is a hole check at resume that could not read the
// first page of a stored segment (walstream.UndecidedCheck): whether
// segments before Segment are missing is not known until the next resume
// checks again.
type HoleCheckUndecided struct {
	// Segment is where streaming resumed.
	Segment string `json:"segment"`
	// Unread is the stored segment whose first page could not be read,
	// and Error why (the storage's or the decoder's error, naming its
	// key).
	Unread string `json:"unread"`
	Error  string `json:"error"`
	// CheckedAt is when the check ended.
	CheckedAt *time.Time `json:"checked_at,omitempty"`
}

// WALArchiveStatus is what the daemon's periodic check of the WAL of
// the kept backups found (walgaps.go).
type WALArchiveStatus struct {
	// CheckedAt is when the last check was made; nil when none was.
	CheckedAt *time.Time `json:"checked_at,omitempty"`
	// MissingSegments is the segments the last check found missing
	// between a kept backup's start and stored WAL after them, and
	// FirstMissing the first of them (by position), on the timeline
	// recovery would read it from.
	MissingSegments int    `json:"missing_segments"`
	FirstMissing    string `json:"first_missing_segment,omitempty"`
	// BackupsCut are the backups whose point-in-time recovery stops
	// before a missing segment, oldest first.
	BackupsCut []string `json:"backups_cut,omitempty"`
	// DamagedSegments is how many of the missing segments are stored
	// damaged rather than absent (in local storage, a FIFO, a socket or
	// a directory under the segment's name, its .metadata sidecar kept:
	// no read returns it), FirstDamaged the object of the first of them
	// and FirstDamagedError the store's words for it: what is there and
	// what to do. Counted in MissingSegments too.
	DamagedSegments   int    `json:"damaged_segments,omitempty"`
	FirstDamaged      string `json:"first_damaged_segment,omitempty"`
	FirstDamagedError string `json:"first_damaged_error,omitempty"`
	// DamagedHistory, when not empty, says that a timeline history file
	// PostgreSQL asks restore_command for while it recovers a kept
	// backup (recovery_target_timeline latest) is stored damaged (in
	// local storage, a FIFO, a socket or a directory under its name): the
	// object, what is there and what to do. wal-fetch fails on it (exit
	// 255), and hoard restore refuses to restore BackupsRefused, oldest
	// first, whatever MissingSegments says: the check follows their WAL
	// below it, as if the file were absent.
	DamagedHistory string   `json:"damaged_history,omitempty"`
	BackupsRefused []string `json:"backups_refused,omitempty"`
	// LastError is why the last check was not made (the storage failed),
	// at LastErrorAt; the fields above are the last check made. Cleared
	// by the next check made.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// BackupStatus describes a stored basebackup.
type BackupStatus struct {
	Name      string     `json:"name"`
	StartTime time.Time  `json:"start_time"`
	EndTime   *time.Time `json:"end_time,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	StartWAL  string     `json:"start_wal_segment,omitempty"`
	EndWAL    string     `json:"end_wal_segment,omitempty"`
	// ChecksumFailures is the number of data pages whose checksums
	// failed when the backup was taken (hoard-checksum-failures: pages
	// damaged in the cluster, copied as they were); 0 when none is
	// recorded, or the count does not authenticate.
	ChecksumFailures int64 `json:"checksum_failures"`
	// ChecksumFailuresUnverified is a count recorded that does not
	// authenticate in a site with keys (altered or planted by a writer of
	// the bucket, or stored by a hoard that did not sign it): hoard
	// verify reads the backup's own record.
	ChecksumFailuresUnverified int64 `json:"checksum_failures_unverified,omitempty"`
}

func backupStatus(b *archive.BackupInfo) *BackupStatus {
	if b == nil {
		return nil
	}
	return &BackupStatus{
		Name: b.Name, StartTime: b.StartTime, EndTime: timePtr(b.EndTime), Reason: b.BackupReason,
		StartWAL: b.StartWALSegment, EndWAL: b.EndWALSegment,
	}
}

func walStatus(s walstream.Status, lag, storedLag time.Duration, holes []walstream.Hole, undecided *walstream.UndecidedCheck) *WALStatus {
	w := &WALStatus{
		SystemID: s.SystemID, Timeline: s.Timeline, Segment: s.Segment,
		Received: s.Received.String(), Flushed: s.Flushed.String(), Uploaded: s.Uploaded.String(),
		ServerLSN: s.ServerLSN.String(), LagBytes: s.BytesBehind, LagSeconds: lag.Seconds(),
		Stored: s.Stored.String(), StoredLagBytes: s.StoredBytesBehind, StoredLagSeconds: storedLag.Seconds(),
		QueueDepth: s.QueueDepth, RefusedPartials: s.RefusedPartials, Connected: s.Connected, Paused: s.Paused,
		LastError: s.LastError, LastErrorAt: timePtr(s.LastErrorAt), Holes: holes,
	}
	if f := s.FormerSlot; f != nil {
		w.FormerSlot = &FormerSlot{Slot: f.Slot, CreatedAt: timePtr(f.At), Timeline: f.Timeline,
			StreamedTimeline: f.StreamedTimeline, Hint: f.Hint()}
	}
	if undecided != nil {
		w.HoleCheckUndecided = &HoleCheckUndecided{Segment: undecided.Segment, Unread: undecided.Unread,
			Error: undecided.Error, CheckedAt: timePtr(undecided.At)}
	}
	return w
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// writeStateFile writes st to path atomically: a temporary file in the
// same directory, fsynced, then renamed over the old one, so a reader
// never sees half a file.
func writeStateFile(path string, st Status) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write state file %s: %w%s", path, err, stateFileHint(err))
	}
	if err := writeFileAtomic(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write state file %s: %w%s", path, err, stateFileHint(err))
	}
	return nil
}

// stateFileHint names the setting to change when the state file's place
// cannot be used at all, as with PGHoard's default
// /var/lib/pghoard/pghoard_state.json on a host that never ran PGHoard; a
// full or read-only disk gets none.
func stateFileHint(err error) string {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return "; set json_state_file_path to a file in a directory the daemon's user can write"
	}
	return ""
}

// errUnhealthy is wrapped by Healthy's errors.
var errUnhealthy = errors.New("unhealthy")
