package config

import (
	"path"
	"runtime"
	"sort"
	"time"
)

// Active backup modes (site key active_backup_mode).
const (
	ModePGReceiveXLog       = "pg_receivexlog"
	ModeWALReceiver         = "walreceiver"
	ModeArchiveCommand      = "archive_command"
	ModeStandaloneHotBackup = "standalone_hot_backup"
	ModeBasic               = "basic"
)

// Basebackup modes (site key basebackup_mode).
const (
	BasebackupBasic          = "basic"
	BasebackupPipe           = "pipe"
	BasebackupLocalTar       = "local-tar"
	BasebackupDelta          = "delta"
	BasebackupLocalTarDeltaS = "local-tar-delta-stats"
)

// Compression algorithms. lz4 is hoard's addition; PGHoard knows the others.
const (
	CompressionSnappy = "snappy"
	CompressionZstd   = "zstd"
	CompressionLZMA   = "lzma"
	CompressionLZ4    = "lz4"
)

// DefaultSite is the site name of a configuration built from the environment
// alone when HOARD_SITE is not set.
const DefaultSite = "default"

// Config is a whole PGHoard-compatible configuration file. Field comments
// give the JSON key; defaults are PGHoard's (pghoard/config.py).
type Config struct {
	// File is the path the configuration was loaded from ("" for env only).
	File string

	BackupLocation      string           // backup_location: local state/staging dir, fallback local storage
	BackupSites         map[string]*Site // backup_sites
	AlertFileDir        string           // alert_file_dir (default backup_location, else the working directory)
	JSONStateFilePath   string           // json_state_file_path
	MaintenanceModeFile string           // maintenance_mode_file
	HTTPAddress         string           // http_address (default 127.0.0.1)
	HTTPPort            int              // http_port (default 16000)
	WebserverUsername   string           // webserver_username (null = no HTTP Basic auth)
	WebserverPassword   string           // webserver_password
	// HTTPTLSCertFile and HTTPTLSKeyFile are hoard's http_tls_cert_file and
	// http_tls_key_file: PEM files that turn the HTTP server into HTTPS.
	// Both or neither.
	HTTPTLSCertFile string
	HTTPTLSKeyFile  string

	Compression Compression // compression
	Transfer    Transfer    // transfer

	UploadRetriesWarningLimit          int           // upload_retries_warning_limit (3)
	GracefulShutdownCompressionTimeout time.Duration // graceful_shutdown_compression_timeout (180 s)
	GracefulShutdownUploadTimeout      time.Duration // graceful_shutdown_upload_timeout (300 s)
	RestoreProcessCount                int           // restore_process_count (min(cpu+1, 20))
	RestorePrefetch                    int           // restore_prefetch (transfer.thread_count)
	TarExecutable                      string        // tar_executable
	HashAlgorithm                      string        // hash_algorithm (sha1)
	DeleterEventGetTimeout             time.Duration // deleter_event_get_timeout (1 s)

	LogLevel       string // log_level (INFO)
	Syslog         bool   // syslog
	SyslogAddress  string // syslog_address (/dev/log)
	SyslogFacility string // syslog_facility (local2)

	Statsd      *Statsd      // statsd (nil = off)
	Pushgateway *Pushgateway // pushgateway (nil = off)
	Prometheus  *Prometheus  // prometheus (nil = off)

	PathPrefix        string // path_prefix (deprecated; put in front of default site prefixes)
	PGBasebackupPath  string // pg_basebackup_path (accepted for compatibility; hoard runs no client tools)
	PGReceiveXLogPath string // pg_receivexlog_path (accepted for compatibility)

	// Warnings lists unknown keys and other harmless oddities, each with its
	// JSON path, for example "backup_sites.default.basebackup_cnt: unknown key".
	Warnings []string

	// sources maps a JSON path to where its value came from ("file" or
	// "env HOARD_X"); paths not present came from the defaults.
	sources map[string]string
}

// Compression is the global compression key.
type Compression struct {
	Algorithm   string // algorithm: snappy (default), zstd, lzma, lz4
	Level       int    // level: lzma preset or zstd/lz4 level; 0 = library default
	ThreadCount int    // thread_count (cpu+1)
}

// Transfer is the global transfer key.
type Transfer struct {
	ThreadCount int // thread_count (min(cpu+3, 20))
}

// Statsd configures UDP metrics.
type Statsd struct {
	Host   string            // host (127.0.0.1)
	Port   int               // port (8125)
	Format string            // format: telegraf (default) or datadog
	Tags   map[string]string // tags
}

// Pushgateway configures metrics pushed to a Prometheus pushgateway.
type Pushgateway struct {
	Endpoint string            // endpoint
	Job      string            // job (pghoard)
	Instance string            // instance (default: site name)
	Tags     map[string]string // tags
}

// Prometheus turns on GET /metrics.
type Prometheus struct {
	Tags map[string]string // tags
}

// EncryptionKey holds one key pair as PEM text. crypto/ parses them; the
// daemon needs only Public, restore and retention need Private.
type EncryptionKey struct {
	Public  string `json:"public,omitempty"`
	Private string `json:"private,omitempty"`
}

// New returns a Config holding PGHoard's defaults and no sites.
// CPU-derived defaults use runtime.NumCPU(), as PGHoard uses
// multiprocessing.cpu_count().
func New() *Config {
	cpu := runtime.NumCPU()
	return &Config{
		BackupSites:                        map[string]*Site{},
		JSONStateFilePath:                  "/var/lib/pghoard/pghoard_state.json",
		MaintenanceModeFile:                "/var/lib/pghoard/maintenance_mode_file",
		HTTPAddress:                        "127.0.0.1",
		HTTPPort:                           16000,
		Compression:                        Compression{Algorithm: CompressionSnappy, ThreadCount: cpu + 1},
		Transfer:                           Transfer{ThreadCount: min(cpu+3, 20)},
		UploadRetriesWarningLimit:          3,
		GracefulShutdownCompressionTimeout: 180 * time.Second,
		GracefulShutdownUploadTimeout:      300 * time.Second,
		RestoreProcessCount:                min(cpu+1, 20),
		TarExecutable:                      "pghoard_gnutaremu",
		HashAlgorithm:                      "sha1",
		DeleterEventGetTimeout:             time.Second,
		LogLevel:                           "INFO",
		SyslogAddress:                      "/dev/log",
		SyslogFacility:                     "local2",
		sources:                            map[string]string{},
	}
}

// SiteNames returns the site names in sorted order.
func (c *Config) SiteNames() []string {
	names := make([]string, 0, len(c.BackupSites))
	for n := range c.BackupSites {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Source tells where the value at a JSON path (for example
// "backup_sites.default.basebackup_count") came from: "default", "file" or
// "env HOARD_X". A path inside an object set as a whole reports that object's
// source.
func (c *Config) Source(jsonPath string) string {
	for p := jsonPath; p != ""; p = parentPath(p) {
		if s, ok := c.sources[p]; ok {
			return s
		}
	}
	return "default"
}

// Sources returns a copy of the map from JSON path to source for every value
// that did not come from the defaults.
func (c *Config) Sources() map[string]string {
	m := make(map[string]string, len(c.sources))
	for k, v := range c.sources {
		m[k] = v
	}
	return m
}

func (c *Config) setSource(jsonPath, src string) {
	if c.sources == nil {
		c.sources = map[string]string{}
	}
	c.sources[jsonPath] = src
}

// finish fills the defaults that depend on other values: restore_prefetch,
// alert_file_dir, site prefixes, slots and the fallback local storage, and
// with no file the state and maintenance files under backup_location.
func (c *Config) finish(cwd string) {
	if _, ok := c.sources["restore_prefetch"]; !ok {
		c.RestorePrefetch = c.Transfer.ThreadCount
	}
	if c.File == "" && c.BackupLocation != "" {
		// PGHoard's defaults are under /var/lib/pghoard, which a container
		// configured from the environment alone does not have: keep the
		// daemon's files in the one directory it is given.
		if _, ok := c.sources["json_state_file_path"]; !ok {
			c.JSONStateFilePath = path.Join(c.BackupLocation, "pghoard_state.json")
		}
		if _, ok := c.sources["maintenance_mode_file"]; !ok {
			c.MaintenanceModeFile = path.Join(c.BackupLocation, "maintenance_mode_file")
		}
	}
	if c.AlertFileDir == "" {
		c.AlertFileDir = c.BackupLocation
		if c.AlertFileDir == "" {
			c.AlertFileDir = cwd
		}
	}
	for name, s := range c.BackupSites {
		s.Name = name
		if s.Prefix == "" {
			s.Prefix = path.Join(c.PathPrefix, name)
		}
		if s.ObjectStorage.StorageType == "" && s.ObjectStorage.URL == "" {
			// PGHoard: a site without object_storage stores into backup_location.
			s.ObjectStorage.StorageType = StorageLocal
			s.ObjectStorage.Directory = c.BackupLocation
			s.ObjectStorage.Implicit = true
		}
		if len(s.Nodes) == 0 {
			// pgconn.ParseConfig("") fills everything from PG* and .pgpass.
			s.Nodes = []Node{{}}
		}
		for i := range s.Nodes {
			if s.Nodes[i].Slot == "" {
				s.Nodes[i].Slot = s.Slot
			}
		}
	}
}

func parentPath(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '.' || p[i] == '[' {
			return p[:i]
		}
	}
	return ""
}
