package daemon

import "github.com/hoardbackup/hoard/metrics"

// siteMetrics are the series of one site, registered once per supervisor
// start (the registry returns the same series for the same name and labels, so
// a site restarted by a reload keeps counting where it was, but for the
// series forgetSiteMetrics removes).
type siteMetrics struct {
	received, flushed, uploaded *metrics.Gauge
	queue, lagBytes, lagSeconds *metrics.Gauge
	stored                      *metrics.Gauge
	storedLagBytes              *metrics.Gauge
	storedLagSeconds            *metrics.Gauge
	// connected is registered only for a site that streams WAL
	// (walConnectedMetric): a site that never streams has no receiver to
	// be disconnected, and a streaming site's 0 must mean disconnected
	// even before its receiver first connected.
	connected, paused *metrics.Gauge
	holeSegments      *metrics.Gauge
	// holeUndecided is 1 while the last hole check could not decide.
	holeUndecided *metrics.Gauge
	// formerSlot is 1 while /status shows wal.former_slot
	// (daemon.formerSlot).
	formerSlot *metrics.Gauge
	// walMissing and walCheckFailures are the WAL archive check's
	// (walgaps.go).
	walMissing            *metrics.Gauge
	walDamagedHistory     *metrics.Gauge
	walCheckFailures      *metrics.Counter
	uploads, uploadErrors *metrics.Counter
	lastUpload            *metrics.Gauge

	lastBackup, backupDuration, backupRunning *metrics.Gauge
	checksumFailures                          *metrics.Gauge
	backupSize, backupStored, backupRate      *metrics.Gauge
	backupsOK, backupsFailed                  *metrics.Counter
	// incrementalNoParent, incrementalBrokenParent and
	// incrementalUnavailable count the scheduled incremental backups
	// taken as full ones, by why.
	incrementalNoParent, incrementalBrokenParent, incrementalUnavailable *metrics.Counter

	deletedBackups, deletedChunks, deletedWAL, deletedOrphans *metrics.Counter
	retentionOK, retentionFailed                              *metrics.Counter
}

// incrementalFallbacksHelp is MetricIncrementalFallbacks' help.
const incrementalFallbacksHelp = "Scheduled incremental basebackups the daemon took as full ones, by reason: " +
	"no_parent (none stored on the timeline: a first backup, a new timeline; or a sound chain continuing into a moved_from site), " +
	"broken_parent (the newest one's chain cannot be restored: hoard verify), unavailable (the server cannot take one)."

// Metric names. Every series has a site label.
const (
	MetricWALReceived       = "hoard_wal_received_lsn_bytes"
	MetricWALFlushed        = "hoard_wal_flushed_lsn_bytes"
	MetricWALUploaded       = "hoard_wal_uploaded_lsn_bytes"
	MetricWALQueue          = "hoard_wal_upload_queue_segments"
	MetricWALLagBytes       = "hoard_wal_lag_bytes"
	MetricWALLagSeconds     = "hoard_wal_lag_seconds"
	MetricWALStored         = "hoard_wal_stored_lsn_bytes"
	MetricWALStoredLagBytes = "hoard_wal_stored_lag_bytes"
	MetricWALStoredLagSecs  = "hoard_wal_stored_lag_seconds"
	MetricWALConnected      = "hoard_wal_connected"
	MetricWALPaused         = "hoard_wal_paused"
	MetricWALHoleSegments   = "hoard_wal_hole_segments"
	// MetricWALHoleCheckUndecided is 1 while the receiver's last hole
	// check could not decide (a stored segment's first page unread).
	MetricWALHoleCheckUndecided = "hoard_wal_hole_check_undecided"
	// MetricWALFormerSlot is 1 once the receiver created its slot on a
	// server that lacked it though WAL was streamed through it before,
	// for the rest of the daemon's life (daemon.formerSlot).
	MetricWALFormerSlot = "hoard_wal_former_slot"
	// MetricWALArchiveMissing is the segments of the kept backups' WAL
	// the last WAL archive check found missing (walgaps.go).
	MetricWALArchiveMissing = "hoard_wal_archive_missing_segments"
	// MetricWALArchiveDamagedHistory is the kept backups hoard restore
	// refuses, as the last WAL archive check found, because a timeline
	// history file PostgreSQL asks for while it recovers them is stored
	// damaged (walGaps.Refused).
	MetricWALArchiveDamagedHistory = "hoard_wal_archive_damaged_history_backups"
	// MetricWALArchiveCheckFailures counts the WAL archive checks not
	// made: the storage failed, or the archive could not be read.
	MetricWALArchiveCheckFailures = "hoard_wal_archive_check_failures_total"
	MetricUploads                 = "hoard_wal_uploads_total"
	MetricUploadErrors            = "hoard_upload_errors_total"
	MetricLastUpload              = "hoard_wal_last_upload_timestamp_seconds"
	MetricLastBackup              = "hoard_last_basebackup_timestamp_seconds"
	// MetricLastBackupChecksumFailures is the data pages whose checksums
	// failed when the newest basebackup in the archive was taken.
	MetricLastBackupChecksumFailures = "hoard_last_basebackup_checksum_failures"
	MetricBackupDuration             = "hoard_basebackup_duration_seconds"
	MetricBackupRunning              = "hoard_basebackup_running"
	MetricBackupSize                 = "hoard_basebackup_size_bytes"
	MetricBackupStored               = "hoard_basebackup_stored_bytes"
	MetricBackupRate                 = "hoard_basebackup_bytes_per_second"
	MetricBackups                    = "hoard_basebackups_total"
	// MetricIncrementalFallbacks counts the scheduled incremental
	// backups the daemon took as full ones.
	MetricIncrementalFallbacks = "hoard_incremental_fallbacks_total"
	MetricRetentionDeleted     = "hoard_retention_deleted_total"
	MetricRetentionRuns        = "hoard_retention_runs_total"
	MetricSiteRunning          = "hoard_site_running"
	// MetricSiteFailed is 1 while a site is stopped by an error and
	// no run of it since has got going (daemon.go, siteFailure).
	MetricSiteFailed        = "hoard_site_failed"
	MetricDaemonStartedTime = "hoard_start_timestamp_seconds"
	// MetricOrphanSpoolFiles is the files holding WAL no run stored in
	// the spool of a site the daemon does not run (orphanspool.go); its
	// site label is the spool's folder under backup_location.
	MetricOrphanSpoolFiles = "hoard_orphan_spool_files"
)

// startedMetric is the daemon's one series without a site.
func startedMetric(m *metrics.Registry) *metrics.Gauge {
	return m.Gauge(MetricDaemonStartedTime, "When the daemon started (Unix seconds).", nil)
}

// siteRunningMetric is 1 while the site's supervisor runs.
func siteRunningMetric(m *metrics.Registry, site string) *metrics.Gauge {
	return m.Gauge(MetricSiteRunning, "1 while the site's supervisor runs.", map[string]string{"site": site})
}

// siteFailedMetric is 1 while the site is stopped by an error
// (siteFailure), until a run of it gets going again.
func siteFailedMetric(m *metrics.Registry, site string) *metrics.Gauge {
	return m.Gauge(MetricSiteFailed, "1 while the site is stopped by an error (its WAL receiver or start failed for good; the other sites run on) and no run of it since has got going; see the site's stopped in /status.", map[string]string{"site": site})
}

// walConnectedMetric is 1 while the site's WAL receiver streams; only
// sites that stream WAL have it.
func walConnectedMetric(m *metrics.Registry, site string) *metrics.Gauge {
	return m.Gauge(MetricWALConnected, "1 while the WAL receiver is streaming from the server (sites that stream WAL only).", map[string]string{"site": site})
}

// streamsWAL tells whether a site started with s streams WAL: it has a
// receiver, and hoard_wal_connected (walConnectedMetric).
func streamsWAL(s Site) bool { return s.Active && s.WAL == WALStream }

// walStreamingMetrics are the series of a site's WAL receiver and its
// uploads, which only a site that streams WAL sets.
var walStreamingMetrics = []string{
	MetricWALReceived, MetricWALFlushed, MetricWALUploaded, MetricWALQueue,
	MetricWALLagBytes, MetricWALLagSeconds, MetricWALStored, MetricWALStoredLagBytes,
	MetricWALStoredLagSecs, MetricWALConnected, MetricWALPaused, MetricWALHoleSegments,
	MetricWALHoleCheckUndecided, MetricWALFormerSlot, MetricLastUpload,
}

// forgetSiteMetrics removes the series of a site a reload changed that
// its new configuration would not have had from the daemon's start
// (newSupervisor registers the others again, at zero): a site that no
// longer streams WAL loses its receiver's series, which kept their last
// values (hoard_wal_connected 1 on a site no longer streamed), and an
// inactive one its hoard_site_running,
// hoard_wal_archive_missing_segments and
// hoard_wal_archive_damaged_history_backups. The upload counters stay: what
// they counted happened.
func forgetSiteMetrics(m *metrics.Registry, prev, next Site) {
	l := map[string]string{"site": next.Name}
	if streamsWAL(prev) && !streamsWAL(next) {
		for _, name := range walStreamingMetrics {
			m.Remove(name, l)
		}
	}
	if !next.Active {
		m.Remove(MetricSiteRunning, l)
		m.Remove(MetricSiteFailed, l)
		// No WAL archive check runs for it any more: a last value
		// above 0 would keep HoardWALArchiveGap (or
		// HoardTimelineHistoryDamaged) firing for good.
		m.Remove(MetricWALArchiveMissing, l)
		m.Remove(MetricWALArchiveDamagedHistory, l)
	}
}

func newSiteMetrics(m *metrics.Registry, site string) siteMetrics {
	l := map[string]string{"site": site}
	with := func(k, v string) map[string]string { return map[string]string{"site": site, k: v} }
	return siteMetrics{
		received:   m.Gauge(MetricWALReceived, "End of the WAL received from the server and written to the spool (LSN as a byte position).", l),
		flushed:    m.Gauge(MetricWALFlushed, "End of the WAL fsynced to the spool and reported flushed to the server (LSN as a byte position).", l),
		uploaded:   m.Gauge(MetricWALUploaded, "End of the last complete WAL segment stored in the archive (LSN as a byte position).", l),
		queue:      m.Gauge(MetricWALQueue, "WAL files waiting for upload, the one in progress included.", l),
		lagBytes:   m.Gauge(MetricWALLagBytes, "WAL the server has that is not yet archived as complete segments, in bytes.", l),
		lagSeconds: m.Gauge(MetricWALLagSeconds, "Age of the oldest WAL file waiting for upload (a complete segment, .history or an ended timeline's .partial, one the storage refuses for good included), in seconds since it was first queued (0 when none waits).", l),
		stored:     m.Gauge(MetricWALStored, "End of the WAL stored in the archive, as complete segments or the .partial copy of the segment being received (LSN as a byte position).", l),
		storedLagBytes: m.Gauge(MetricWALStoredLagBytes,
			"WAL the server has that is not stored in the archive (as a segment or .partial), in bytes: the recovery point objective now.", l),
		storedLagSeconds: m.Gauge(MetricWALStoredLagSecs,
			"Age of the oldest WAL received and not stored in the archive (as a segment or .partial), in seconds (0 when all is): the recovery point objective now.", l),
		paused: m.Gauge(MetricWALPaused, "1 while the disk guard pauses receiving (spool disk nearly full).", l),
		holeSegments: m.Gauge(MetricWALHoleSegments,
			"WAL segments found missing before where streaming resumed, since the last basebackup (0: none).", l),
		holeUndecided: m.Gauge(MetricWALHoleCheckUndecided,
			"1 while the last hole check at resume could not read a stored segment's first page, so whether WAL before the resume point is missing is not known (0: decided).", l),
		formerSlot: m.Gauge(MetricWALFormerSlot,
			"1 once the WAL receiver created its replication slot on a server that lacked it though WAL was streamed through it before (after a failover or switchover that moved the address): the server streamed from before may still have the slot, keeping its WAL; drop it there (wal.former_slot in /status says how). Stays 1 until the daemon restarts (0: none since it started).", l),
		walMissing: m.Gauge(MetricWALArchiveMissing,
			"WAL segments the last check found missing from the archive between a kept basebackup's start and stored WAL after them, those stored damaged (no read returns them) included (0: none); run hoard verify.", l),
		walDamagedHistory: m.Gauge(MetricWALArchiveDamagedHistory,
			"Kept basebackups hoard restore refuses, as the last check found, because a timeline history file PostgreSQL asks for while it recovers them is stored damaged (no read returns it; wal_archive.damaged_history in /status names it) (0: none); store a good copy.", l),
		walCheckFailures: m.Counter(MetricWALArchiveCheckFailures,
			"WAL archive checks not made (the storage failed, or the archive could not be read): the missing segment count stays as the last check left it.", l),

		uploads:      m.Counter(MetricUploads, "WAL files (segments, .history, .partial) stored.", l),
		uploadErrors: m.Counter(MetricUploadErrors, "Failed WAL upload attempts (each is retried).", l),
		lastUpload: m.Gauge(MetricLastUpload,
			"When the daemon last stored a WAL file (segment, .history or .partial), Unix seconds; 0 until it has stored one since it started.", l),

		lastBackup: m.Gauge(MetricLastBackup, "End time of the newest basebackup in the archive (Unix seconds).", l),
		checksumFailures: m.Gauge(MetricLastBackupChecksumFailures,
			"Data pages whose checksums failed when the newest basebackup in the archive was taken (damaged in the cluster, copied as they were); 0 when none is recorded.", l),
		backupDuration:          m.Gauge(MetricBackupDuration, "Duration of the last basebackup the daemon took, in seconds.", l),
		backupRunning:           m.Gauge(MetricBackupRunning, "1 while the daemon takes a basebackup.", l),
		backupSize:              m.Gauge(MetricBackupSize, "Data read from the server by the last basebackup the daemon took, in bytes.", l),
		backupStored:            m.Gauge(MetricBackupStored, "Bytes stored for the last basebackup the daemon took (after compression and encryption).", l),
		backupRate:              m.Gauge(MetricBackupRate, "Data read from the server per second by the last basebackup the daemon took.", l),
		backupsOK:               m.Counter(MetricBackups, "Basebackups the daemon attempted, by result.", with("result", "success")),
		backupsFailed:           m.Counter(MetricBackups, "Basebackups the daemon attempted, by result.", with("result", "failure")),
		incrementalNoParent:     m.Counter(MetricIncrementalFallbacks, incrementalFallbacksHelp, with("reason", "no_parent")),
		incrementalBrokenParent: m.Counter(MetricIncrementalFallbacks, incrementalFallbacksHelp, with("reason", "broken_parent")),
		incrementalUnavailable:  m.Counter(MetricIncrementalFallbacks, incrementalFallbacksHelp, with("reason", "unavailable")),

		deletedBackups: m.Counter(MetricRetentionDeleted, "Objects deleted by retention, by kind.", with("kind", "basebackup")),
		deletedChunks:  m.Counter(MetricRetentionDeleted, "Objects deleted by retention, by kind.", with("kind", "chunk")),
		deletedWAL:     m.Counter(MetricRetentionDeleted, "Objects deleted by retention, by kind.", with("kind", "wal")),
		deletedOrphans: m.Counter(MetricRetentionDeleted, "Objects deleted by retention, by kind.", with("kind", "orphan")),

		retentionOK:     m.Counter(MetricRetentionRuns, "Retention runs the daemon made, by result.", with("result", "success")),
		retentionFailed: m.Counter(MetricRetentionRuns, "Retention runs the daemon made, by result.", with("result", "failure")),
	}
}
