package config

import (
	"cmp"
	"path"
	"reflect"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/storage"
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

// DefaultSite is the site name of a configuration built from the environment
// alone when HOARD_SITE is not set.
const DefaultSite = "default"

// Config is a whole PGHoard-compatible configuration file. Its fields hold
// the keys of the schema's rows (schema.go), which give each key's name,
// default and meaning.
type Config struct {
	// File is the path the configuration was loaded from ("" for env only).
	File string

	BackupLocation      string
	BackupSites         map[string]*Site
	AlertFileDir        string
	JSONStateFilePath   string
	MaintenanceModeFile string
	HTTPAddress         string
	HTTPPort            int
	WebserverUsername   string // "" = no HTTP Basic auth
	WebserverPassword   string
	HTTPTLSCertFile     string // with HTTPTLSKeyFile: HTTPS
	HTTPTLSKeyFile      string

	Compression Compression
	Transfer    Transfer

	UploadRetriesWarningLimit          int
	GracefulShutdownCompressionTimeout time.Duration
	GracefulShutdownUploadTimeout      time.Duration
	RestoreProcessCount                int
	RestorePrefetch                    int
	TarExecutable                      string
	HashAlgorithm                      string
	DeleterEventGetTimeout             time.Duration

	LogLevel       string
	Syslog         bool
	SyslogAddress  string
	SyslogFacility string

	Statsd      *Statsd      // nil = off
	Pushgateway *Pushgateway // nil = off
	Prometheus  *Prometheus  // nil = off

	PathPrefix        string
	PGBasebackupPath  string
	PGReceiveXLogPath string

	// Warnings lists unknown keys and other harmless oddities, each with its
	// JSON path, for example "backup_sites.default.basebackup_cnt: unknown key".
	Warnings []string

	// sources maps a JSON path to where its value came from ("file" or
	// "env HOARD_X"); paths not present came from the defaults.
	sources map[string]string
}

// Compression is the global compression key.
type Compression struct {
	Algorithm   string
	Level       int // 0 = the library's default
	ThreadCount int
}

// Transfer is the global transfer key.
type Transfer struct {
	ThreadCount int
}

// Statsd configures UDP metrics.
type Statsd struct {
	Host   string
	Port   int
	Format string // telegraf or datadog
	Tags   map[string]string
}

// Pushgateway configures metrics pushed to a Prometheus pushgateway.
type Pushgateway struct {
	Endpoint string
	Job      string
	Instance string // "" = the site name
	Tags     map[string]string
}

// Prometheus turns on GET /metrics.
type Prometheus struct {
	Tags map[string]string
}

// EncryptionKey holds one key pair as PEM text. crypto/ parses them; the
// daemon needs only Public, restore and retention need Private.
type EncryptionKey struct {
	Public  string `json:"public,omitempty"`
	Private string `json:"private,omitempty"`
}

// New returns a Config holding PGHoard's defaults (pghoard/config.py) and
// no sites. CPU-derived defaults use runtime.NumCPU(), as PGHoard uses
// multiprocessing.cpu_count().
func New() *Config {
	c := &Config{sources: map[string]string{}}
	setDefaults(reflect.ValueOf(c).Elem(), globalKeys)
	return c
}

// SiteNames returns the site names in sorted order.
func (c *Config) SiteNames() []string { return sortedKeys(c.BackupSites) }

// Source tells where the value at a JSON path (for example
// "backup_sites.default.basebackup_count") came from: "default", "file",
// "env HOARD_X", or for a key half read from encryption_keys_dir "key file
// PATH". A path inside an object set as a whole reports that object's
// source.
func (c *Config) Source(jsonPath string) string {
	for p := jsonPath; p != ""; p = parentPath(p) {
		if s, ok := c.sources[p]; ok {
			return s
		}
	}
	return "default"
}

func (c *Config) setSource(jsonPath, src string) { c.sources[jsonPath] = src }

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
	c.AlertFileDir = cmp.Or(c.AlertFileDir, c.BackupLocation, cwd)
	for name, s := range c.BackupSites {
		s.Name = name
		s.Prefix = cmp.Or(s.Prefix, path.Join(c.PathPrefix, name))
		_, given := c.sources["backup_sites."+name+".object_storage"]
		if s.ObjectStorage.Type == "" && s.ObjectStorage.URL == "" && !given {
			// PGHoard: a site without object_storage stores into
			// backup_location. One given that did not decode (its
			// storage_type unknown or missing) has its own problem
			// reported: it is no site without object_storage.
			s.ObjectStorage.Type = storage.TypeLocal
			s.ObjectStorage.Directory = c.BackupLocation
			s.ObjectStorage.Implicit = true
		}
		if len(s.Nodes) == 0 {
			// pgconn.ParseConfig("") fills everything from PG* and .pgpass.
			s.Nodes = []Node{{}}
		}
		for i := range s.Nodes {
			s.Nodes[i].Slot = cmp.Or(s.Nodes[i].Slot, s.Slot)
		}
	}
}

// parentPath is the path of the object or list that holds p.
func parentPath(p string) string { return p[:max(strings.LastIndexAny(p, ".["), 0)] }
