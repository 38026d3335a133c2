package config

import (
	"os"
	"strconv"
	"strings"
)

// EnvVar documents one HOARD_* environment override.
type EnvVar struct {
	Name string // variable name
	// Key is the JSON key it overrides; site keys are relative to the
	// selected site ("backup_sites.<site>.").
	Key  string
	Site bool // applies to the selected site
	// File is true when NAME_FILE is also accepted: the value is read from
	// that file (trailing newlines dropped), for container secrets.
	File bool
	Help string
}

// EnvVars lists every environment override, in the order they are applied
// (after the file, so they win over it). Site overrides apply to the site
// named by HOARD_SITE, or to the only site. With no config file the site is
// created, named HOARD_SITE or "default".
//
//	Variable                          Key                             Notes
//	HOARD_SITE                        (site name)                     selects/creates the site; default "default"
//	HOARD_BACKUP_LOCATION             backup_location
//	HOARD_COMPRESSION_ALGORITHM       compression.algorithm           snappy, zstd, lzma, lz4
//	HOARD_COMPRESSION_LEVEL           compression.level
//	HOARD_HTTP_ADDRESS                http_address
//	HOARD_HTTP_PORT                   http_port
//	HOARD_LOG_LEVEL                   log_level
//	HOARD_WEBSERVER_USERNAME          webserver_username
//	HOARD_WEBSERVER_PASSWORD[_FILE]   webserver_password
//	HOARD_HTTP_TLS_CERT_FILE          http_tls_cert_file
//	HOARD_HTTP_TLS_KEY_FILE           http_tls_key_file
//	HOARD_PG_URI[_FILE]               <site>.nodes                    one node: libpq string or URI
//	HOARD_SLOT                        <site>.slot                     also set on every node
//	HOARD_PG_DATA_DIRECTORY           <site>.pg_data_directory
//	HOARD_ACTIVE_BACKUP_MODE          <site>.active_backup_mode
//	HOARD_BASEBACKUP_MODE             <site>.basebackup_mode
//	HOARD_BASEBACKUP_INTERVAL_HOURS   <site>.basebackup_interval_hours "null" turns schedules off
//	HOARD_BASEBACKUP_COUNT            <site>.basebackup_count          "null" = unlimited
//	HOARD_STORAGE_URL[_FILE]          <site>.object_storage.url        any gocloud.dev/blob URL
//	HOARD_STORAGE_PREFIX              <site>.object_storage.prefix
//	HOARD_ENCRYPTION_KEY_ID           <site>.encryption_key_id
//	HOARD_ENCRYPTION_PUBLIC_KEY[_FILE]  <site>.encryption_keys.<id>.public  PEM text
//	HOARD_ENCRYPTION_PRIVATE_KEY[_FILE] <site>.encryption_keys.<id>.private PEM text
//
// HOARD_CONFIG (the file path) is read by the command line, not here. The
// PostgreSQL connection also honours libpq's PG* variables and ~/.pgpass:
// pgconn.ParseConfig applies them, and a site with no node has the empty
// connection string, which takes everything from them.
var EnvVars = []EnvVar{
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
	{Name: "HOARD_PG_URI", Key: "nodes", Site: true, File: true, Help: "PostgreSQL connection string or URI (replaces nodes)"},
	{Name: "HOARD_SLOT", Key: "slot", Site: true, Help: "physical replication slot, set on every node"},
	{Name: "HOARD_PG_DATA_DIRECTORY", Key: "pg_data_directory", Site: true, Help: "PGDATA on this host"},
	{Name: "HOARD_ACTIVE_BACKUP_MODE", Key: "active_backup_mode", Site: true, Help: "pg_receivexlog, walreceiver, archive_command, standalone_hot_backup or basic"},
	{Name: "HOARD_BASEBACKUP_MODE", Key: "basebackup_mode", Site: true, Help: "basic, pipe, local-tar, delta or local-tar-delta-stats"},
	{Name: "HOARD_BASEBACKUP_INTERVAL_HOURS", Key: "basebackup_interval_hours", Site: true, Help: "hours between basebackups; null = no schedule"},
	{Name: "HOARD_BASEBACKUP_COUNT", Key: "basebackup_count", Site: true, Help: "basebackups to keep; null = unlimited"},
	{Name: "HOARD_STORAGE_URL", Key: "object_storage.url", Site: true, File: true, Help: "gocloud.dev/blob URL (replaces object_storage)"},
	{Name: "HOARD_STORAGE_PREFIX", Key: "object_storage.prefix", Site: true, Help: "key prefix inside the storage"},
	{Name: "HOARD_ENCRYPTION_KEY_ID", Key: "encryption_key_id", Site: true, Help: "key id for new uploads"},
	{Name: "HOARD_ENCRYPTION_PUBLIC_KEY", Key: "encryption_keys.<id>.public", Site: true, File: true, Help: "public key PEM for the key id"},
	{Name: "HOARD_ENCRYPTION_PRIVATE_KEY", Key: "encryption_keys.<id>.private", Site: true, File: true, Help: "private key PEM for the key id"},
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
		return strings.TrimRight(string(b), "\r\n"), true
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

func applyEnv(c *Config, getenv func(string) string, ps *problems) {
	e := &envReader{getenv: getenv, ps: ps, file: map[string]bool{}}
	for _, ev := range EnvVars {
		e.file[ev.Name] = ev.File
	}
	setStr := func(name, key string, dst *string) {
		if v, ok := e.get(name); ok {
			*dst = v
			c.setSource(key, "env "+name)
		}
	}
	setInt := func(name, key string, dst *int) {
		if v, ok := e.get(name); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				ps.add(name, "want integer, got %q", v)
				return
			}
			*dst = n
			c.setSource(key, "env "+name)
		}
	}
	setStr("HOARD_BACKUP_LOCATION", "backup_location", &c.BackupLocation)
	setStr("HOARD_COMPRESSION_ALGORITHM", "compression.algorithm", &c.Compression.Algorithm)
	setInt("HOARD_COMPRESSION_LEVEL", "compression.level", &c.Compression.Level)
	setStr("HOARD_HTTP_ADDRESS", "http_address", &c.HTTPAddress)
	setInt("HOARD_HTTP_PORT", "http_port", &c.HTTPPort)
	setStr("HOARD_LOG_LEVEL", "log_level", &c.LogLevel)
	setStr("HOARD_WEBSERVER_USERNAME", "webserver_username", &c.WebserverUsername)
	setStr("HOARD_WEBSERVER_PASSWORD", "webserver_password", &c.WebserverPassword)
	setStr("HOARD_HTTP_TLS_CERT_FILE", "http_tls_cert_file", &c.HTTPTLSCertFile)
	setStr("HOARD_HTTP_TLS_KEY_FILE", "http_tls_key_file", &c.HTTPTLSKeyFile)

	name, s := envSite(c, e)
	if s == nil {
		return
	}
	p := "backup_sites." + name + "."
	setStr = func(n, key string, dst *string) {
		if v, ok := e.get(n); ok {
			*dst = v
			c.setSource(p+key, "env "+n)
		}
	}
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
	setStr("HOARD_PG_DATA_DIRECTORY", "pg_data_directory", &s.PGDataDirectory)
	setStr("HOARD_ACTIVE_BACKUP_MODE", "active_backup_mode", &s.ActiveBackupMode)
	setStr("HOARD_BASEBACKUP_MODE", "basebackup_mode", &s.BasebackupMode)
	if v, ok := e.get("HOARD_BASEBACKUP_INTERVAL_HOURS"); ok {
		if v == "null" {
			s.BasebackupIntervalHours = nil
		} else if f, err := strconv.ParseFloat(v, 64); err == nil {
			s.BasebackupIntervalHours = &f
		} else {
			ps.add("HOARD_BASEBACKUP_INTERVAL_HOURS", "want number or null, got %q", v)
		}
		c.setSource(p+"basebackup_interval_hours", "env HOARD_BASEBACKUP_INTERVAL_HOURS")
	}
	if v, ok := e.get("HOARD_BASEBACKUP_COUNT"); ok {
		if v == "null" {
			s.BasebackupCount = nil
		} else if n, err := strconv.Atoi(v); err == nil {
			s.BasebackupCount = &n
		} else {
			ps.add("HOARD_BASEBACKUP_COUNT", "want integer or null, got %q", v)
		}
		c.setSource(p+"basebackup_count", "env HOARD_BASEBACKUP_COUNT")
	}
	if v, ok := e.get("HOARD_STORAGE_URL"); ok {
		s.ObjectStorage = ObjectStorage{StorageType: StorageURL, URL: v, Prefix: s.ObjectStorage.Prefix}
		c.setSource(p+"object_storage", "env HOARD_STORAGE_URL")
	}
	setStr("HOARD_STORAGE_PREFIX", "object_storage.prefix", &s.ObjectStorage.Prefix)
	setStr("HOARD_ENCRYPTION_KEY_ID", "encryption_key_id", &s.EncryptionKeyID)
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
