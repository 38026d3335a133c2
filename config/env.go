package config

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// EnvVar documents one HOARD_* environment override.
type EnvVar struct {
	Name string // variable name
	// Key is the JSON key it overrides; site keys are relative to the
	// selected site ("backup_sites.<site>.").
	Key  string
	Site bool // applies to the selected site
	// Storage is the storage type a HOARD_<TYPE>_* variable applies to
	// (local, s3, google or azure); "" for the others.
	Storage string
	// File is true when NAME_FILE is also accepted: the value is read from
	// that file (one trailing newline dropped), for container secrets.
	File bool
	Help string
}

// EnvVars lists every environment override, in the order they are applied
// (after the file, so they win over it). Site overrides apply to the site
// named by HOARD_SITE, or to the only site. With no config file the site is
// created, named HOARD_SITE or "default".
//
// Storage comes from HOARD_STORAGE_URL (any gocloud.dev/blob URL), or from
// HOARD_STORAGE_TYPE and the variables of that type, named after rohmu's
// object_storage keys: HOARD_<TYPE>_<KEY> with TYPE LOCAL, S3, GCS or AZURE
// and KEY the key in capitals, without its "aws_" or "azure_" prefix
// (HOARD_S3_REGION, HOARD_S3_SECRET_ACCESS_KEY, HOARD_AZURE_CLOUD,
// HOARD_LOCAL_DIRECTORY). Secrets (File) are also read from NAME_FILE.
//
// HOARD_CONFIG (the file path) is read by the command line, not here. The
// PostgreSQL connection also honours libpq's PG* variables and ~/.pgpass:
// pgconn.ParseConfig applies them, and a site with no node has the empty
// connection string, which takes everything from them.
var EnvVars = append([]EnvVar{
	{Name: "HOARD_SITE", Help: "site the site overrides apply to; with no file, the name of the site created (default \"default\")"},
	{Name: "HOARD_BACKUP_LOCATION", Key: "backup_location", Help: "local state and staging directory"},
	{Name: "HOARD_COMPRESSION_ALGORITHM", Key: "compression.algorithm", Help: "snappy, zstd, lzma or lz4"},
	{Name: "HOARD_COMPRESSION_LEVEL", Key: "compression.level", Help: "compression level (0 = default)"},
	{Name: "HOARD_HTTP_ADDRESS", Key: "http_address", Help: "HTTP listen address"},
	{Name: "HOARD_HTTP_PORT", Key: "http_port", Help: "HTTP listen port"},
	{Name: "HOARD_LOG_LEVEL", Key: "log_level", Help: "DEBUG, INFO, WARNING, ERROR or CRITICAL"},
	{Name: "HOARD_WEBSERVER_USERNAME", Key: "webserver_username", Help: "HTTP Basic auth user"},
	{Name: "HOARD_WEBSERVER_PASSWORD", Key: "webserver_password", File: true, Help: "HTTP Basic auth password"},
	{Name: "HOARD_HTTP_TLS_CERT_FILE", Key: "http_tls_cert_file", Help: "PEM certificate chain for HTTPS (with HOARD_HTTP_TLS_KEY_FILE)"},
	{Name: "HOARD_HTTP_TLS_KEY_FILE", Key: "http_tls_key_file", Help: "PEM private key for HTTPS (with HOARD_HTTP_TLS_CERT_FILE)"},
	{Name: "HOARD_JSON_STATE_FILE_PATH", Key: "json_state_file_path", Help: "the daemon's state file (with no config file: <backup_location>/pghoard_state.json)"},
	{Name: "HOARD_MAINTENANCE_MODE_FILE", Key: "maintenance_mode_file", Help: "maintenance mode file (with no config file: <backup_location>/maintenance_mode_file)"},
	{Name: "HOARD_ALERT_FILE_DIR", Key: "alert_file_dir", Help: "directory for alert files"},
	{Name: "HOARD_PG_URI", Key: "nodes", Site: true, File: true, Help: "PostgreSQL connection string or URI (replaces nodes)"},
	{Name: "HOARD_SLOT", Key: "slot", Site: true, Help: "physical replication slot, set on every node"},
	{Name: "HOARD_PG_DATA_DIRECTORY", Key: "pg_data_directory", Site: true, Help: "PGDATA on this host"},
	{Name: "HOARD_ACTIVE_BACKUP_MODE", Key: "active_backup_mode", Site: true, Help: "pg_receivexlog, walreceiver, archive_command, standalone_hot_backup or basic"},
	{Name: "HOARD_BASEBACKUP_MODE", Key: "basebackup_mode", Site: true, Help: "basic, pipe, local-tar, delta or local-tar-delta-stats"},
	{Name: "HOARD_BASEBACKUP_INTERVAL_HOURS", Key: "basebackup_interval_hours", Site: true, Help: "hours between basebackups; null = no schedule"},
	{Name: "HOARD_BASEBACKUP_HOUR", Key: "basebackup_hour", Site: true, Help: "hour of day (0-23) scheduled basebackups start at; null = unanchored"},
	{Name: "HOARD_BASEBACKUP_MINUTE", Key: "basebackup_minute", Site: true, Help: "minute (0-59) scheduled basebackups start at; null = unanchored"},
	{Name: "HOARD_BASEBACKUP_COUNT", Key: "basebackup_count", Site: true, Help: "basebackups to keep; null = unlimited"},
	{Name: "HOARD_BASEBACKUP_COUNT_MIN", Key: "basebackup_count_min", Site: true, Help: "basebackups always kept, whatever their age"},
	{Name: "HOARD_BASEBACKUP_AGE_DAYS_MAX", Key: "basebackup_age_days_max", Site: true, Help: "delete basebackups older than this many days; null = no age limit"},
	{Name: "HOARD_WAL_PARTIAL_UPLOAD_INTERVAL", Key: "wal_partial_upload_interval", Site: true, Help: "seconds between uploads of the WAL segment in progress; 0 = never"},
	{Name: "HOARD_RESTORE_TEST_INTERVAL_HOURS", Key: "restore_test_interval_hours", Site: true, Help: "hours between test restores by the daemon; null = never"},
	{Name: "HOARD_STORAGE_URL", Key: "object_storage.url", Site: true, File: true, Help: "gocloud.dev/blob URL (replaces object_storage)"},
	{Name: "HOARD_STORAGE_TYPE", Key: "object_storage.storage_type", Site: true, Help: "local, s3, google or azure (replaces object_storage; the HOARD_<TYPE>_* variables fill it)"},
	{Name: "HOARD_STORAGE_PREFIX", Key: "object_storage.prefix", Site: true, Help: "key prefix inside the storage"},
	{Name: "HOARD_ENCRYPTION_KEY_ID", Key: "encryption_key_id", Site: true, Help: "key id for new uploads"},
	{Name: "HOARD_ENCRYPTION_PUBLIC_KEY", Key: "encryption_keys.<key-id>.public", Site: true, File: true, Help: "public key PEM for the key id"},
	{Name: "HOARD_ENCRYPTION_PRIVATE_KEY", Key: "encryption_keys.<key-id>.private", Site: true, File: true, Help: "private key PEM for the key id"},
}, storageEnvVars()...)

// storageEnvPrefix names each storage type in its variables.
var storageEnvPrefix = map[string]string{
	StorageLocal: "HOARD_LOCAL_", StorageS3: "HOARD_S3_", StorageGoogle: "HOARD_GCS_", StorageAzure: "HOARD_AZURE_",
}

// secretStorageKeys are the object_storage keys holding credentials.
var secretStorageKeys = map[string]bool{
	"aws_secret_access_key": true, "aws_session_token": true, "credentials": true, "account_key": true, "sas_token": true,
}

// storageEnvVars derives HOARD_<TYPE>_<KEY> from storageKeys.
func storageEnvVars() []EnvVar {
	var out []EnvVar
	for _, typ := range []string{StorageLocal, StorageS3, StorageGoogle, StorageAzure} {
		for _, k := range storageKeys[typ] {
			name := strings.TrimPrefix(strings.TrimPrefix(k, "aws_"), "azure_")
			out = append(out, EnvVar{
				Name:    storageEnvPrefix[typ] + strings.ToUpper(name),
				Key:     "object_storage." + k,
				Site:    true,
				Storage: typ,
				File:    secretStorageKeys[k],
				Help:    typ + " storage: " + k,
			})
		}
	}
	return out
}

// envReader reads overrides, resolving NAME_FILE variants.
type envReader struct {
	getenv func(string) string
	ps     *problems
	file   map[string]bool
}

// get returns the value of name (or of the file named by name_FILE) and
// whether it was set.
func (e *envReader) get(name string) (string, bool) {
	v := e.getenv(name)
	if !e.file[name] {
		return v, v != ""
	}
	fv := e.getenv(name + "_FILE")
	switch {
	case v != "" && fv != "":
		e.ps.add(name, "set both %s and %s_FILE", name, name)
		return "", false
	case fv != "":
		b, err := os.ReadFile(fv)
		if err != nil {
			e.ps.add(name+"_FILE", "%v", err)
			return "", false
		}
		// Mounted secrets and `echo x > file` end in one newline.
		s := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(s, "\r"), true
	}
	return v, v != ""
}

func (e *envReader) any() bool {
	for _, ev := range EnvVars {
		if ev.Site {
			if _, ok := e.peek(ev.Name); ok {
				return true
			}
		}
	}
	return false
}

func (e *envReader) peek(name string) (string, bool) {
	if v := e.getenv(name); v != "" {
		return v, true
	}
	if e.file[name] && e.getenv(name+"_FILE") != "" {
		return "", true
	}
	return "", false
}

// envSetter parses variables into typed fields, recording the JSON path's
// source or a problem naming the variable.
type envSetter struct {
	e      *envReader
	c      *Config
	prefix string // "" for global keys, "backup_sites.<site>." for site keys
}

func (s envSetter) str(name, key string, dst *string) {
	if v, ok := s.e.get(name); ok {
		*dst = v
		s.c.setSource(s.prefix+key, "env "+name)
	}
}

func (s envSetter) integer(name, key string, dst *int) {
	if v, ok := s.e.get(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.e.ps.add(name, "want integer, got %q", v)
			return
		}
		*dst = n
		s.c.setSource(s.prefix+key, "env "+name)
	}
}

func (s envSetter) integer64(name, key string, dst *int64) {
	if v, ok := s.e.get(name); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			s.e.ps.add(name, "want integer, got %q", v)
			return
		}
		*dst = n
		s.c.setSource(s.prefix+key, "env "+name)
	}
}

func (s envSetter) boolean(name, key string, dst *bool) {
	if v, ok := s.e.get(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.e.ps.add(name, "want true or false, got %q", v)
			return
		}
		*dst = b
		s.c.setSource(s.prefix+key, "env "+name)
	}
}

// optInteger accepts an integer or "null".
func (s envSetter) optInteger(name, key string, dst **int) {
	v, ok := s.e.get(name)
	if !ok {
		return
	}
	if v == "null" {
		*dst = nil
	} else if n, err := strconv.Atoi(v); err == nil {
		*dst = &n
	} else {
		s.e.ps.add(name, "want integer or null, got %q", v)
		return
	}
	s.c.setSource(s.prefix+key, "env "+name)
}

// optNumber accepts a number or "null".
func (s envSetter) optNumber(name, key string, dst **float64) {
	v, ok := s.e.get(name)
	if !ok {
		return
	}
	if v == "null" {
		*dst = nil
	} else if f, err := strconv.ParseFloat(v, 64); err == nil {
		*dst = &f
	} else {
		s.e.ps.add(name, "want number or null, got %q", v)
		return
	}
	s.c.setSource(s.prefix+key, "env "+name)
}

func (s envSetter) seconds(name, key string, dst *time.Duration) {
	if v, ok := s.e.get(name); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > float64(1<<31) {
			s.e.ps.add(name, "want a number of seconds, got %q", v)
			return
		}
		*dst = time.Duration(f * float64(time.Second))
		s.c.setSource(s.prefix+key, "env "+name)
	}
}

// target sets a field from storageTargets.
func (s envSetter) target(name, key string, dst any) {
	switch p := dst.(type) {
	case *string:
		s.str(name, key, p)
	case *int:
		s.integer(name, key, p)
	case *int64:
		s.integer64(name, key, p)
	case *bool:
		s.boolean(name, key, p)
	case *json.RawMessage:
		if v, ok := s.e.get(name); ok {
			var m map[string]any
			if err := json.Unmarshal([]byte(v), &m); err != nil {
				s.e.ps.add(name, "want a JSON object: %v", err)
				return
			}
			*p = json.RawMessage(v)
			s.c.setSource(s.prefix+key, "env "+name)
		}
	default:
		panic(fmt.Sprintf("config: no env parser for %T", dst))
	}
}

func applyEnv(c *Config, getenv func(string) string, ps *problems) {
	e := &envReader{getenv: getenv, ps: ps, file: map[string]bool{}}
	for _, ev := range EnvVars {
		e.file[ev.Name] = ev.File
	}
	g := envSetter{e: e, c: c}
	g.str("HOARD_BACKUP_LOCATION", "backup_location", &c.BackupLocation)
	g.str("HOARD_COMPRESSION_ALGORITHM", "compression.algorithm", &c.Compression.Algorithm)
	g.integer("HOARD_COMPRESSION_LEVEL", "compression.level", &c.Compression.Level)
	g.str("HOARD_HTTP_ADDRESS", "http_address", &c.HTTPAddress)
	g.integer("HOARD_HTTP_PORT", "http_port", &c.HTTPPort)
	g.str("HOARD_LOG_LEVEL", "log_level", &c.LogLevel)
	g.str("HOARD_WEBSERVER_USERNAME", "webserver_username", &c.WebserverUsername)
	g.str("HOARD_WEBSERVER_PASSWORD", "webserver_password", &c.WebserverPassword)
	g.str("HOARD_HTTP_TLS_CERT_FILE", "http_tls_cert_file", &c.HTTPTLSCertFile)
	g.str("HOARD_HTTP_TLS_KEY_FILE", "http_tls_key_file", &c.HTTPTLSKeyFile)
	g.str("HOARD_JSON_STATE_FILE_PATH", "json_state_file_path", &c.JSONStateFilePath)
	g.str("HOARD_MAINTENANCE_MODE_FILE", "maintenance_mode_file", &c.MaintenanceModeFile)
	g.str("HOARD_ALERT_FILE_DIR", "alert_file_dir", &c.AlertFileDir)

	name, s := envSite(c, e)
	if s == nil {
		return
	}
	p := "backup_sites." + name + "."
	st := envSetter{e: e, c: c, prefix: p}
	if v, ok := e.get("HOARD_PG_URI"); ok {
		s.Nodes = []Node{{ConnStr: v}}
		c.setSource(p+"nodes", "env HOARD_PG_URI")
	}
	if v, ok := e.get("HOARD_SLOT"); ok {
		s.Slot = v
		for i := range s.Nodes {
			s.Nodes[i].Slot = v
		}
		c.setSource(p+"slot", "env HOARD_SLOT")
	}
	st.str("HOARD_PG_DATA_DIRECTORY", "pg_data_directory", &s.PGDataDirectory)
	st.str("HOARD_ACTIVE_BACKUP_MODE", "active_backup_mode", &s.ActiveBackupMode)
	st.str("HOARD_BASEBACKUP_MODE", "basebackup_mode", &s.BasebackupMode)
	st.optNumber("HOARD_BASEBACKUP_INTERVAL_HOURS", "basebackup_interval_hours", &s.BasebackupIntervalHours)
	st.optInteger("HOARD_BASEBACKUP_HOUR", "basebackup_hour", &s.BasebackupHour)
	st.optInteger("HOARD_BASEBACKUP_MINUTE", "basebackup_minute", &s.BasebackupMinute)
	st.optInteger("HOARD_BASEBACKUP_COUNT", "basebackup_count", &s.BasebackupCount)
	st.integer("HOARD_BASEBACKUP_COUNT_MIN", "basebackup_count_min", &s.BasebackupCountMin)
	st.optNumber("HOARD_BASEBACKUP_AGE_DAYS_MAX", "basebackup_age_days_max", &s.BasebackupAgeDaysMax)
	st.seconds("HOARD_WAL_PARTIAL_UPLOAD_INTERVAL", "wal_partial_upload_interval", &s.WALPartialUploadInterval)
	st.optNumber("HOARD_RESTORE_TEST_INTERVAL_HOURS", "restore_test_interval_hours", &s.RestoreTestIntervalHours)
	applyStorageEnv(st, s)
	st.str("HOARD_ENCRYPTION_KEY_ID", "encryption_key_id", &s.EncryptionKeyID)
	for _, kv := range []struct{ name, field string }{
		{"HOARD_ENCRYPTION_PUBLIC_KEY", "public"},
		{"HOARD_ENCRYPTION_PRIVATE_KEY", "private"},
	} {
		v, ok := e.get(kv.name)
		if !ok {
			continue
		}
		if s.EncryptionKeyID == "" {
			ps.add(kv.name, "needs HOARD_ENCRYPTION_KEY_ID (or encryption_key_id in the file)")
			continue
		}
		k := s.EncryptionKeys[s.EncryptionKeyID]
		if kv.field == "public" {
			k.Public = v
		} else {
			k.Private = v
		}
		s.EncryptionKeys[s.EncryptionKeyID] = k
		c.setSource(p+"encryption_keys."+s.EncryptionKeyID+"."+kv.field, "env "+kv.name)
	}
}

// applyStorageEnv applies HOARD_STORAGE_URL or HOARD_STORAGE_TYPE (each
// replaces the file's object_storage, keeping its prefix), then the
// HOARD_<TYPE>_* variables, which must match the storage type in effect.
func applyStorageEnv(st envSetter, s *Site) {
	e, p := st.e, st.prefix
	url, hasURL := e.get("HOARD_STORAGE_URL")
	typ, hasType := e.get("HOARD_STORAGE_TYPE")
	switch {
	case hasURL && hasType:
		e.ps.add("HOARD_STORAGE_TYPE", "set either HOARD_STORAGE_URL or HOARD_STORAGE_TYPE, not both")
	case hasURL:
		s.ObjectStorage = ObjectStorage{StorageType: StorageURL, URL: url, Prefix: s.ObjectStorage.Prefix}
		st.c.setSource(p+"object_storage", "env HOARD_STORAGE_URL")
	case hasType:
		if _, ok := storageEnvPrefix[typ]; !ok {
			e.ps.add("HOARD_STORAGE_TYPE", "unknown storage type %q (want local, s3, google or azure)", typ)
			break
		}
		// rohmu: Azure defaults to HTTPS, S3 to is_secure false.
		s.ObjectStorage = ObjectStorage{StorageType: typ, Prefix: s.ObjectStorage.Prefix, IsSecure: typ == StorageAzure}
		st.c.setSource(p+"object_storage", "env HOARD_STORAGE_TYPE")
	}
	st.str("HOARD_STORAGE_PREFIX", "object_storage.prefix", &s.ObjectStorage.Prefix)
	targets := storageTargets(&s.ObjectStorage)
	for _, ev := range EnvVars {
		if ev.Storage == "" {
			continue
		}
		if _, ok := e.peek(ev.Name); !ok {
			continue
		}
		if have := s.ObjectStorage.StorageType; have != ev.Storage {
			if have == "" {
				have = "not set"
			}
			e.ps.add(ev.Name, "applies to %s storage, but the storage type is %s: set HOARD_STORAGE_TYPE=%s", ev.Storage, have, ev.Storage)
			continue
		}
		key := strings.TrimPrefix(ev.Key, "object_storage.")
		st.target(ev.Name, ev.Key, targets[key])
	}
}

// envSite picks the site the overrides apply to, creating it when the
// configuration has no site and no file (or HOARD_SITE names it). It
// returns nil when there is nothing to apply or no site can be chosen (a
// problem is recorded then).
func envSite(c *Config, e *envReader) (string, *Site) {
	want := e.getenv("HOARD_SITE")
	if len(c.BackupSites) == 0 && (c.File == "" || want != "") {
		name := want
		if name == "" {
			name = DefaultSite
		} else {
			c.setSource("backup_sites."+name, "env HOARD_SITE")
		}
		s := newSite(name)
		c.BackupSites[name] = s
		return name, s
	}
	if !e.any() {
		return "", nil
	}
	if want != "" {
		s, ok := c.BackupSites[want]
		if !ok {
			e.ps.add("HOARD_SITE", "site %q not in backup_sites (have: %s)", want, strings.Join(c.SiteNames(), ", "))
			return "", nil
		}
		return want, s
	}
	names := c.SiteNames()
	switch len(names) {
	case 0:
		return "", nil
	case 1:
		return names[0], c.BackupSites[names[0]]
	}
	e.ps.add("HOARD_SITE", "required to apply HOARD_* site overrides: config has sites %s", strings.Join(names, ", "))
	return "", nil
}
