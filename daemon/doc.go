// Package daemon is what `hoard daemon` runs all day beside PostgreSQL:
// per backup site, WAL capture, scheduled and requested basebackups, and
// retention; for the whole process, a JSON state file, alert files,
// metrics (a metrics.Registry served on /metrics and flushed to StatsD)
// and an HTTP API.
//
// # Sites
//
// Run starts one supervisor per active site. A supervisor runs, under one
// errgroup:
//
//   - the WAL receiver (walstream) when the site's active_backup_mode is
//     pg_receivexlog or walreceiver, with an uploader that archives
//     complete segments and .history files with archive.PushWAL
//     (idempotent, never overwrites) and the growing .partial segment
//     with Archive.PutPartialWAL (replaces the previous copy, without
//     asking the storage first when the receiver knows it stored that
//     copy itself: PushOptions.StoredPartial; a stored copy it did not
//     store itself is decoded and compared before it counts as holding
//     the receiver's WAL, and one that is not that WAL is replaced,
//     logged at Error). In
//     archive_command mode WAL arrives through `hoard wal-push`; basic and
//     standalone_hot_backup capture no WAL;
//   - the backup loop: one basebackup at a time, when the Schedule says
//     one is due or one was requested (HTTP, `hoard basebackup` while a
//     daemon runs), labelled scheduled or requested with the decision time
//     and schedule slot in its metadata. Each request has an id, and the
//     daemon keeps what became of its recent requests in memory
//     (requests.go: queued, running, stored, failed, dropped) for
//     `hoard basebackup --wait` (GET /<site>/basebackup/<id>; WaitBackup
//     asks again after a transient failure, for a minute in a row at
//     most). A streaming site waits for its
//     receiver to hold the replication slot before its first backup, and
//     its backups do not wait for the server's archiver (the daemon
//     archives that WAL itself). The schedule compares the backups' start
//     times (the server's clock) with this host's clock; clockGuard keeps
//     jumps and disagreements of the two from taking backups back to back
//     or none for longer than an interval. Failures are retried with
//     backoff and are never fatal. Retention (archive.PlanRetention, ApplyRetention) runs
//     after each backup and every RetentionInterval in between, never
//     while a backup runs. The schedule, the newest backup reported and
//     retention leave out backups of another system than the node's
//     (archive.OfSystem, systemid.go); retention waits until the node
//     has said its system identifier. While the maintenance mode file exists no backup
//     and no retention starts and backup requests are refused
//     (ErrMaintenance); WAL is still streamed;
//   - with RestoreTest.Interval set, the restore test loop
//     (testrestores.go): verify.RestoreTest of the newest backup one
//     interval after the last test (kept in RestoreTest.Dir) or the
//     daemon's start, never while a basebackup of the site runs, one at a
//     time in the whole daemon; a failure raises restore_test_failed until
//     a test passes. A test the storage kept from running
//     (verify.RestoreTestResult.StorageFailed) is not a result: it leaves
//     the last one's status, metrics, alert and kept file, and is tried
//     again after restoreTestRetry;
//   - the WAL archive check (walgaps.go): every WALCheckInterval, the
//     WAL of the kept backups (with those of the moved_from sites
//     whose WAL the last retention plan kept) followed in listings
//     (verify.CheckContinuityWith: for the system the receiver streams,
//     the timelines' history as the server gave it,
//     walstream.Status.History, not the archive's copy, which a site
//     holding only the public key cannot read); segments missing before a stored
//     segment of a backup's recovery path, or before the end of what the
//     site's WAL receiver stored (walstream.Status.Uploaded), less those
//     in the spool, show
//     in hoard_wal_archive_missing_segments and the status's wal_archive,
//     with a warning naming the first and the backups cut; the kept
//     backups restore refuses for a timeline history file stored damaged
//     show in hoard_wal_archive_damaged_history_backups and the status's
//     wal_archive.damaged_history; each raises its alert file
//     (wal_archive_gap_error, timeline_history_damaged) until a check
//     finds it no more. A check the storage kept from being made changes
//     none of them.
//
// Inactive sites (active: false) get no supervisor: the daemon never
// writes to or deletes from them.
//
// # Failures
//
// An error that ends a site's run stops that site alone (runSites): a
// site whose spool another daemon holds (ErrSpoolInUse, spoollock.go), a
// site whose folder (<backup_location>/<site>, Site.Dir) another daemon
// holds (ErrSiteInUse, spoollock.go; every site, spool or none), a site
// whose archive cannot be opened, a WAL receiver that cannot continue
// (the server is not the one the spool came from, or it removed WAL the
// archive needs; the spool cannot be written). The other sites run on;
// the stopped one shows in the status (SiteStatus.Stopped),
// hoard_site_failed, /healthz and the site_stopped_error alert file, and
// is started again after siteRetryMin, doubling up to siteRetryMax, or at
// once by a reload; its failure is over once a restart has run for
// siteProvenAfter (connected, when it streams). When such an error leaves
// no active site running, every part stops and Run returns it, as it
// does for an HTTP address that cannot be bound; the site_stopped_error
// file is raised first and stays after the exit, until a later run has
// had no site stopped for siteProvenAfter. A reload that would remove
// (or stop streaming) a stopped site whose spool holds WAL no run
// stored keeps the site instead (daemon.stoppedUnstored). At its start
// and each reload, the daemon looks at the spools under its sites'
// backup_location of sites it does not run (a site removed from the file
// and the daemon restarted), passing over those another daemon holds
// locked: one holding WAL no run is known to have stored is logged at
// error level and shown in Status.OrphanSpools, hoard_orphan_spool_files
// and the orphan_spool_error alert file, its files never touched
// (orphanspool.go). The .partial a clean stop stored and left in the
// spool is not counted while the spool's marker of the stored copy
// (walstream.StoredMarkerName) matches its bytes: a site removed and the
// daemon restarted after a clean stop is not reported. Everything else (server
// restarts, storage outages, failed backups) is retried: walstream
// retries each upload forever with backoff, and a file leaves the spool
// only once stored. Upload failures more than UploadRetriesWarningLimit in
// a row raise PGHoard's upload_retries_warning alert file until uploads
// recover; connection errors raise authentication_error or
// configuration_error until the site connects again (the receiver starts
// streaming, or a basebackup is taken), and so does a slot another process
// streams from (replication.ErrSlotInUse), retried with the receiver's
// backoff. A WAL hole the receiver finds
// when it resumes (segments neither archived nor spooled) raises
// wal_hole_error, with the segments in the status and the
// hoard_wal_hole_segments metric, until a basebackup that starts after it.
// A hole check that could not decide (a stored segment's first page
// unread) raises no alert file: the status (wal.hole_check_undecided) and
// hoard_wal_hole_check_undecided show it until a check decides or a
// basebackup starts at or after its resume point.
// The status lists the alert files that exist.
//
// # Reload and shutdown
//
// Options.Reload delivers new site lists (the command sends one after
// SIGHUP): sites whose Fingerprint changed are restarted, new ones
// started, removed ones stopped, the rest keep running. When ctx ends,
// receivers stop receiving, fsync, report their flush position, store the
// segment in progress as a .partial after the uploads queued before it, and
// get DrainTimeout for these (or the upload in progress); what is not stored
// stays in the spool for the next start. A site restarted by a reload
// that changes its Destination stops the same way before its new
// settings take effect, so the WAL it received is stored in the prefix it
// was received for. One restarted with the same Destination (new
// credentials, say, for a storage that refuses them) stops at once
// (walstream.ErrRestartInPlace): waiting would only delay the fix, and
// the new run stores the spool in the same place. A site that a reload
// removes, or changes so that it no longer streams from its spool (not
// active, another active_backup_mode, another backup_location), and whose
// stop leaves WAL in the spool unstored, is started again with its
// previous settings: the server was told that WAL is flushed, and no
// other run would store it. So is one that a reload gives another
// Destination with the same spool: the new run would store that WAL in
// the new Destination, leaving a hole in the archive whose backups need
// it. A later reload applies the change.
//
// A reload leaves the metrics as a start with the new configuration
// would: a removed site's series go, a site that no longer streams loses
// hoard_wal_connected and its receiver's gauges read 0, an inactive one
// has no hoard_site_running (forgetSiteMetrics).
package daemon
