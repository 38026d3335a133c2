package command

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/daemon"
	"github.com/hoardbackup/hoard/restore"
)

// daemonExitHelp documents hoard daemon's exit codes.
const daemonExitHelp = "EXIT STATUS:\n" +
	"   0    stopped by SIGTERM or SIGINT after draining uploads (within graceful_shutdown_upload_timeout)\n" +
	"   1    a fatal error stopped the daemon: a site's error (another daemon holds its spool or folder,\n" +
	"        its storage could not be opened, its WAL receiver cannot continue: another server, or WAL\n" +
	"        the archive needs was removed from the server) left no active site running, or the HTTP\n" +
	"        address cannot be bound. The log says which; systemd's Restart=on-failure retries.\n" +
	"   2    bad flags or configuration, or run as root without --allow-root: nothing was started"

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "stream WAL, take scheduled basebackups and apply retention, until stopped",
		Description: "Runs every active site of the configuration:\n" +
			"  - WAL: with active_backup_mode pg_receivexlog or walreceiver, streams WAL over a physical\n" +
			"    replication slot (the node's slot, else the site's, else hoard_<site>; created when\n" +
			"    missing) into <backup_location>/<site>/xlog_incoming and archives each complete segment;\n" +
			"    one daemon per spool: a second one on it refuses the site, naming the first's pid;\n" +
			"    with archive_command, WAL comes from hoard wal-push; basic captures none.\n" +
			"  - one daemon per site: each site holds a lock in <backup_location>/<site> while it runs, so\n" +
			"    a second daemon of the site, spool or none, refuses it, naming the first's pid.\n" +
			"  - a site whose run ends with an error (its WAL receiver cannot continue, its spool or folder\n" +
			"    is another daemon's, its storage does not open) stops alone, loudly (log at error level,\n" +
			"    /status, /healthz 503, the site_stopped_error alert file, hoard_site_failed), while the\n" +
			"    other sites run on; it is started again after 1 minute, doubling up to 15, and at once on\n" +
			"    SIGHUP. When no active site is left running, the daemon exits 1, its site_stopped_error\n" +
			"    alert file left raised. A reload does not remove a stopped site whose spool holds WAL\n" +
			"    no run stored: it logs the files and keeps the site until they are stored.\n" +
			"  - at start and on SIGHUP, the spools under backup_location of sites it does not run, no\n" +
			"    daemon holding their lock, that hold WAL no run is known to have stored are logged at\n" +
			"    error level with their files and what to do (/status orphan_spools, the\n" +
			"    orphan_spool_error alert file, hoard_orphan_spool_files); their files are never touched.\n" +
			"  - basebackups on basebackup_interval_hours (anchored by basebackup_hour and\n" +
			"    basebackup_minute), one at once when the site has none, and on request:\n" +
			"    POST /<site>/basebackup, or hoard basebackup while the daemon runs.\n" +
			"  - retention after each backup and every 5 minutes.\n" +
			"  - with restore_test_interval_hours, a test restore of the newest backup on that schedule\n" +
			"    (as hoard verify --restore: restore, start PostgreSQL, replay, check, clean up).\n" +
			"  - the state file (json_state_file_path), alert files (alert_file_dir), and HTTP on\n" +
			"    http_address:http_port: /healthz, /status, /metrics; StatsD when statsd is set.\n\n" +
			"SIGTERM or SIGINT stops receiving, stores the segment in progress as its .partial and gives it,\n" +
			"with the uploads queued before it, graceful_shutdown_upload_timeout; what is not stored stays\n" +
			"in the spool for the next start. A second SIGTERM or SIGINT is ignored; SIGKILL stops at once\n" +
			"(the spool keeps the WAL for the next start).\n" +
			"SIGHUP reloads the configuration: sites whose settings changed are restarted, the others keep\n" +
			"running; a configuration that does not load is logged and the old one kept. A site whose WAL\n" +
			"goes elsewhere (another storage location, bucket, container or prefix) is stopped the same way\n" +
			"first, so the WAL received is stored where it went; if that storage fails for the whole\n" +
			"timeout, the change is refused and the site runs on as before until its WAL is stored there\n" +
			"(reload again then). Any other change (credentials, rate limits, keys, compression) restarts\n" +
			"it at once, and the new run stores what is in the spool.\n" +
			"Under systemd (Type=notify) the daemon reports READY=1 once started.\n" +
			"It refuses to run as root, whose files PostgreSQL's user could not use later, unless --allow-root:\n" +
			"run it as that user (sudo -u postgres hoard daemon, User=postgres in systemd).\n\n" + daemonExitHelp,
		Flags:  []cli.Flag{allowRootFlag},
		Action: runDaemon,
	}
}

func runDaemon(c *cli.Context) error {
	if err := noArgs(c, "hoard daemon takes no arguments"); err != nil {
		return err
	}
	if err := refuseRoot(c, os.Geteuid(), "daemon"); err != nil {
		return err
	}
	log := logger(c)
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	opts, err := daemonOptions(c, cfg)
	if err != nil {
		return err
	}
	reloads := make(chan []daemon.Site)
	opts.Reload = reloads
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var reloader sync.WaitGroup
	reloader.Add(1)
	go func() {
		defer reloader.Done()
		reloadOnHUP(ctx, c, hup, reloads, opts, log)
	}()

	log.Info().Str("version", c.App.Version).Str("config", cfg.File).Int("sites", len(opts.Sites)).Msg("daemon starting")
	notifySystemd(log, daemon.NotifyReady)
	err = daemon.Run(ctx, opts)
	notifySystemd(log, daemon.NotifyStopping)
	// daemon.Run takes no more reloads: stop the reloader and wait for it.
	cancel()
	reloader.Wait()
	if err != nil {
		log.Error().Err(err).Msg("daemon stopped")
		return err
	}
	log.Info().Msg("daemon stopped")
	return nil
}

// reloadOnHUP loads the configuration again at each SIGHUP and sends the
// new sites to the daemon. A configuration that does not load, or whose
// sites cannot be built, is logged and ignored. Settings that only a
// restart applies (HTTP, state file, alerts, StatsD) are reported.
func reloadOnHUP(ctx context.Context, c *cli.Context, hup <-chan os.Signal, out chan<- []daemon.Site, cur daemon.Options, log zerolog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		log.Info().Msg("SIGHUP: reloading the configuration")
		notifySystemd(log, daemon.NotifyReloading)
		cfg, err := loadConfig(c)
		var next daemon.Options
		if err == nil {
			next, err = daemonOptions(c, cfg)
		}
		if err != nil {
			log.Error().Err(err).Msg("reload failed; keeping the running configuration")
			notifySystemd(log, daemon.NotifyReady)
			continue
		}
		if globalFingerprint(next) != globalFingerprint(cur) {
			log.Warn().Msg("reload: http, state file, alert, statsd or shutdown settings changed; they apply at the next restart")
		}
		select {
		case out <- next.Sites:
		case <-ctx.Done():
			return
		}
		notifySystemd(log, daemon.NotifyReady)
	}
}

// daemonOptions turns the configuration into the daemon's options.
func daemonOptions(c *cli.Context, cfg *config.Config) (daemon.Options, error) {
	o := daemon.Options{
		StateFile:                 cfg.JSONStateFilePath,
		AlertDir:                  cfg.AlertFileDir,
		MaintenanceFile:           cfg.MaintenanceModeFile,
		UploadRetriesWarningLimit: cfg.UploadRetriesWarningLimit,
		DrainTimeout:              cfg.GracefulShutdownUploadTimeout,
		HTTP:                      httpConfig(cfg),
		Version:                   c.App.Version,
		Logger:                    logger(c),
	}
	if s := cfg.Statsd; s != nil {
		o.StatsD = &daemon.StatsDConfig{Host: s.Host, Port: s.Port, Format: s.Format, Tags: s.Tags}
	}
	if p := cfg.Prometheus; p != nil {
		o.MetricLabels = p.Tags
	}
	if len(cfg.BackupSites) == 0 {
		return o, usagef("add a site under backup_sites", "the configuration has no backup sites")
	}
	for _, name := range cfg.SiteNames() {
		s, err := daemonSite(c, cfg, name)
		if err != nil {
			return o, err
		}
		o.Sites = append(o.Sites, s)
	}
	return o, nil
}

// daemonSite builds one site of the daemon from its configuration.
func daemonSite(c *cli.Context, cfg *config.Config, name string) (daemon.Site, error) {
	site := cfg.BackupSites[name]
	s := daemon.Site{
		Name:             name,
		Fingerprint:      siteFingerprint(cfg, site),
		Destination:      siteDestination(name, site),
		Active:           site.Active,
		ActiveBackupMode: site.ActiveBackupMode,
		WAL:              walMode(site.ActiveBackupMode),
		Push:             archive.PushOptions{HashAlgorithm: cfg.HashAlgorithm, PGVersion: site.PGVersion},
		Retention:        retentionPolicy(site),
		Backup: basebackup.Options{
			// An immediate checkpoint, as PGHoard's backups request, so a
			// backup starts when it is due rather than a checkpoint
			// interval later.
			Fast: true,
			// A stored backup of a standby whose WAL the archive does
			// not hold yet is not a failure to retry (basebackup.Run).
			NoStandbyWait:      true,
			Mode:               basebackupMode(site),
			ChunkSize:          site.BasebackupChunkSize,
			DeltaMinFileSize:   site.BasebackupDeltaModeMinDeltaFileSize,
			DeltaChunkSize:     site.BasebackupDeltaModeChunkSize,
			TempDir:            basebackupTempDir(cfg, name),
			DeltaHintFile:      basebackupDeltaHintFile(cfg, name),
			Parallel:           basebackupParallel(site),
			CompressionThreads: site.BasebackupCompressionThreads,
			BasebackupMode:     basebackupModeName(site),
			PGData:             site.PGDataDirectory,
			Version:            "hoard " + c.App.Version,
		},
	}
	if len(site.Nodes) == 0 {
		return s, usagef("add a node to the site's nodes", "site %s has no nodes", name)
	}
	if err := nestedSite(c.Context, cfg, name); err != nil {
		// The site's WAL and backups go on; its retention, which would
		// delete the other site's objects, fails with err at each run.
		// A reload that moves the other site restarts this one.
		s.RetentionRefused = err
		s.Fingerprint += " retention refused: " + err.Error()
	}
	// The site's keys are parsed here, not only when its archive opens:
	// a key that does not parse, or whose halves are from two pairs,
	// stops the daemon's start, and a reload to it is refused while the
	// running configuration stays (a site whose archive cannot open
	// would stop the daemon).
	if _, err := siteCodec(cfg, site); err != nil {
		return s, err
	}
	if site.Active {
		if err := checkUploadKey(site); err != nil {
			return s, err
		}
	}
	node := site.Nodes[0]
	s.ConnString = node.ConnString()
	s.Slot = node.Slot
	if s.Slot == "" {
		s.Slot = defaultSlot(name)
	}
	if cfg.BackupLocation != "" {
		s.Dir = filepath.Join(cfg.BackupLocation, name)
	}
	if s.WAL == daemon.WALStream {
		if cfg.BackupLocation == "" {
			return s, usagef("set backup_location (or HOARD_BACKUP_LOCATION)",
				"site %s streams WAL (active_backup_mode %s) but backup_location, where the spool lives, is not set", name, site.ActiveBackupMode)
		}
		s.SpoolDir = filepath.Join(cfg.BackupLocation, name, "xlog_incoming")
	}
	s.MinFreeBytes = minFreeBytes(site)
	s.ResumeMultiplier = site.PGReceiveXLog.ResumeMultiplier
	s.DiskCheckInterval = site.PGReceiveXLog.DiskSpaceCheckInterval
	s.PartialUploadInterval = site.WALPartialUploadInterval
	s.ReceiveTimeout = site.WALReceiverTimeout
	s.StoredLagAlert = site.WALStoredLagAlert
	s.ApplicationName = s.Slot
	if site.Synchronous && site.Active {
		if s.WAL != daemon.WALStream {
			return s, usagef("set active_backup_mode to walreceiver or pg_receivexlog, or synchronous to false",
				"site %s: synchronous needs the daemon to stream WAL, and active_backup_mode is %s", name, site.ActiveBackupMode)
		}
		s.Synchronous = true
		if s.StoredLagAlert == 0 && site.WALStoredLagAlertBytes == 0 {
			// Commits wait while WAL is not stored: say so soon.
			s.StoredLagAlert = defaultSynchronousLagAlert
		}
	}
	s.StoredLagAlertBytes = uint64(max(site.WALStoredLagAlertBytes, 0))
	if d, ok := site.BasebackupInterval(); ok {
		s.Schedule.Interval = d
	}
	if d, ok := site.BasebackupIncrementalInterval(); ok {
		s.Schedule.IncrementalInterval = d
	}
	if h, m, ok := site.BasebackupAnchor(); ok {
		s.Schedule.Anchored, s.Schedule.Hour, s.Schedule.Minute = true, h, m
	}
	if d, ok := site.RestoreTestInterval(); ok {
		// Without a file the configuration comes from the environment,
		// which the restored server's restore_command inherits.
		rc, err := restore.WALFetchCommand(cfg.File, name)
		if err != nil {
			return s, err
		}
		s.RestoreTest = daemon.RestoreTest{Interval: d, RestoreCommand: rc, PGBinDir: site.PGBinDirectory, Parallel: cfg.RestoreProcessCount}
		if cfg.BackupLocation != "" {
			s.RestoreTest.Dir = filepath.Join(cfg.BackupLocation, name, "restore-test")
		}
	}
	s.OpenArchive = func(ctx context.Context) (*archive.Archive, func(), error) {
		return openDaemonArchive(ctx, c, cfg, name)
	}
	return s, nil
}

// openDaemonArchive opens a site's archive with the archives of its
// moved_from sites (retention counts their backups).
func openDaemonArchive(ctx context.Context, c *cli.Context, cfg *config.Config, name string) (*archive.Archive, func(), error) {
	site := cfg.BackupSites[name]
	codec, err := siteCodec(cfg, site)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, site.ObjectStorage, siteRateLimits(site), logger(c).With().Str(logSite, name).Logger())
	if err != nil {
		return nil, nil, fmt.Errorf("open storage of site %s: %w", name, err)
	}
	env := &siteEnv{
		cfg: cfg, name: name, site: site,
		archive: &archive.Archive{Store: st, Codec: codec, Layout: archive.Layout{Prefix: site.Prefix}, Site: name, StoreID: site.ObjectStorage.StorageConfig().Location(),
			Log: logger(c)},
		log: logger(c).With().Str(logSite, name).Logger(),
	}
	closeOlder, err := openMovedFrom(c, env)
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	return env.archive, func() { closeOlder(); _ = st.Close() }, nil
}

// walMode maps PGHoard's active_backup_mode to the daemon's WAL capture.
func walMode(mode string) string {
	switch mode {
	case config.ModePGReceiveXLog, config.ModeWALReceiver:
		return daemon.WALStream
	case config.ModeArchiveCommand:
		return daemon.WALArchiveCommand
	}
	return daemon.WALNone
}

// minFreeBytes is the disk guard's threshold: pg_receivexlog's
// min_disk_free_bytes, 0 (off) when unset.
func minFreeBytes(site *config.Site) uint64 {
	if p := site.PGReceiveXLog.MinDiskFreeBytes; p != nil && *p > 0 {
		return uint64(*p)
	}
	return 0
}

// defaultSynchronousLagAlert is wal_stored_lag_alert_seconds for a
// synchronous site that sets no bound.
const defaultSynchronousLagAlert = 10 * time.Second

// defaultSlot is the replication slot of a site whose nodes name none:
// hoard_<site>, reduced to what a slot name may hold (lower-case letters,
// digits and underscores, at most 63 bytes: NAMEDATALEN - 1).
func defaultSlot(site string) string {
	var b strings.Builder
	b.WriteString("hoard_")
	for _, r := range strings.ToLower(site) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// siteFingerprint hashes everything a site's supervisor is built from: the
// site's settings, those of its moved_from sites, and the global settings
// it uses. A reload restarts the site when it changes.
func siteFingerprint(cfg *config.Config, site *config.Site) string {
	moved := map[string]*config.Site{}
	for _, n := range site.MovedFrom {
		moved[n] = cfg.BackupSites[n]
	}
	data, err := json.Marshal(struct {
		Site           *config.Site
		MovedFrom      map[string]*config.Site
		Compression    config.Compression
		HashAlgorithm  string
		BackupLocation string
		PathPrefix     string
	}{site, moved, cfg.Compression, cfg.HashAlgorithm, cfg.BackupLocation, cfg.PathPrefix})
	if err != nil {
		// Unreachable for plain data; a fresh value forces a restart.
		return time.Now().String()
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// siteDestination names where a site's WAL is stored (daemon.Site's
// Destination): the storage's place without its credentials
// (storage.Config.Place), the site's prefix and its name. Spellings of
// one place give one destination (a directory with a trailing slash or
// relative to this process's working directory, a prefix with its
// slashes, an endpoint's default port), so that a command's request is
// not refused by the daemon of the same place as another
// configuration's, and a reload that only respells it restarts the site
// in place.
func siteDestination(name string, site *config.Site) string {
	return fmt.Sprintf("%s site-prefix=%q site=%q", site.ObjectStorage.StorageConfig().Place(), sitePrefixPlace(site.Prefix), name)
}

// sitePrefixPlace spells a site prefix as siteDestination compares it:
// archive.Layout trims one trailing slash, so "db/" makes the keys "db"
// makes. A prefix that would be left empty or still end in a slash ("/",
// "db//") is kept as written: its keys are another place's. A prefix
// without a trailing slash is unchanged, as an earlier hoard (b7854ba)
// spells it.
func sitePrefixPlace(p string) string {
	if q, ok := strings.CutSuffix(p, "/"); ok && q != "" && !strings.HasSuffix(q, "/") {
		return q
	}
	return p
}

// globalFingerprint hashes the daemon settings a reload cannot apply.
func globalFingerprint(o daemon.Options) string {
	data, _ := json.Marshal(struct {
		StateFile, AlertDir, MaintenanceFile string
		Limit                                int
		Drain                                time.Duration
		HTTP                                 *daemon.HTTPConfig
		StatsD                               *daemon.StatsDConfig
		Labels                               map[string]string
	}{o.StateFile, o.AlertDir, o.MaintenanceFile, o.UploadRetriesWarningLimit, o.DrainTimeout, o.HTTP, o.StatsD, o.MetricLabels})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// notifySystemd reports state to systemd (daemon.Notify); a failure is
// logged: the service manager will time out.
func notifySystemd(log zerolog.Logger, state string) {
	if err := daemon.Notify(state); err != nil {
		log.Warn().Err(err).Str("state", state).Msg("notify systemd")
	}
}

// httpConfig is the daemon's HTTP API as the configuration sets it.
func httpConfig(cfg *config.Config) *daemon.HTTPConfig {
	return &daemon.HTTPConfig{
		Address: cfg.HTTPAddress, Port: cfg.HTTPPort,
		Username: cfg.WebserverUsername, Password: cfg.WebserverPassword,
		TLSCertFile: cfg.HTTPTLSCertFile, TLSKeyFile: cfg.HTTPTLSKeyFile,
	}
}
