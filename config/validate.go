package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Validate checks the whole configuration and returns a *ValidationError
// listing every problem, or nil.
func (c *Config) Validate() error {
	if ps := c.validate(); len(ps) > 0 {
		return &ValidationError{File: c.File, Problems: ps}
	}
	return nil
}

var (
	activeBackupModes = []string{ModePGReceiveXLog, ModeWALReceiver, ModeArchiveCommand, ModeStandaloneHotBackup, ModeBasic}
	basebackupModes   = []string{BasebackupBasic, BasebackupPipe, BasebackupLocalTar, BasebackupDelta, BasebackupLocalTarDeltaS}
	logLevels         = []string{"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"}
	hashAlgorithms    = []string{"sha1", "sha224", "sha256", "sha384", "sha512", "md5"}
	// maxLevel is the highest compression level each algorithm accepts.
	maxLevel = map[string]int{CompressionSnappy: 0, CompressionZstd: 22, CompressionLZMA: 9, CompressionLZ4: 12}
)

func oneOf(v string, allowed []string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

func (c *Config) validate() problems {
	var ps problems
	if len(c.BackupSites) == 0 {
		ps.add("backup_sites", "at least one site is required")
	}
	if max, ok := maxLevel[c.Compression.Algorithm]; !ok {
		ps.add("compression.algorithm", "unknown compression algorithm %q (want snappy, zstd, lzma or lz4)", c.Compression.Algorithm)
	} else if c.Compression.Level < 0 || (max > 0 && c.Compression.Level > max) {
		ps.add("compression.level", "%d out of range 0-%d for %s", c.Compression.Level, max, c.Compression.Algorithm)
	}
	positive(&ps, "compression.thread_count", c.Compression.ThreadCount)
	positive(&ps, "transfer.thread_count", c.Transfer.ThreadCount)
	positive(&ps, "restore_process_count", c.RestoreProcessCount)
	if c.RestorePrefetch < 0 {
		ps.add("restore_prefetch", "must not be negative, got %d", c.RestorePrefetch)
	}
	if c.UploadRetriesWarningLimit < 0 {
		ps.add("upload_retries_warning_limit", "must not be negative, got %d", c.UploadRetriesWarningLimit)
	}
	if c.HTTPPort < 0 || c.HTTPPort > 65535 {
		ps.add("http_port", "%d out of range 0-65535", c.HTTPPort)
	}
	if (c.WebserverUsername == "") != (c.WebserverPassword == "") {
		ps.add("webserver_password", "webserver_username and webserver_password must be set together")
	}
	switch {
	case c.HTTPTLSCertFile != "" && c.HTTPTLSKeyFile == "":
		ps.add("http_tls_key_file", "required when http_tls_cert_file is set")
	case c.HTTPTLSCertFile == "" && c.HTTPTLSKeyFile != "":
		ps.add("http_tls_cert_file", "required when http_tls_key_file is set")
	case c.HTTPTLSCertFile != "":
		readable(&ps, "http_tls_cert_file", c.HTTPTLSCertFile)
		readable(&ps, "http_tls_key_file", c.HTTPTLSKeyFile)
	}
	if !oneOf(strings.ToUpper(c.LogLevel), logLevels) {
		ps.add("log_level", "unknown level %q (want DEBUG, INFO, WARNING, ERROR or CRITICAL)", c.LogLevel)
	}
	if !oneOf(c.HashAlgorithm, hashAlgorithms) {
		ps.add("hash_algorithm", "unknown hash %q (want one of %s)", c.HashAlgorithm, strings.Join(hashAlgorithms, ", "))
	}
	if c.Statsd != nil && c.Statsd.Format != "telegraf" && c.Statsd.Format != "datadog" {
		ps.add("statsd.format", "unknown format %q (want telegraf or datadog)", c.Statsd.Format)
	}
	if c.Pushgateway != nil && c.Pushgateway.Endpoint == "" {
		ps.add("pushgateway.endpoint", "required")
	}
	for _, name := range c.SiteNames() {
		c.BackupSites[name].validate(&ps, c, "backup_sites."+name)
	}
	return ps
}

// readable records a problem when the file at name cannot be opened for
// reading, so a bad path fails at startup rather than at the first request.
func readable(ps *problems, path, name string) {
	f, err := os.Open(name)
	if err != nil {
		ps.add(path, "%v", err)
		return
	}
	_ = f.Close()
}

func positive(ps *problems, path string, n int) {
	if n < 1 {
		ps.add(path, "must be at least 1, got %d", n)
	}
}

func (s *Site) validate(ps *problems, c *Config, p string) {
	if !oneOf(s.ActiveBackupMode, activeBackupModes) {
		ps.add(p+".active_backup_mode", "unknown mode %q (want one of %s)", s.ActiveBackupMode, strings.Join(activeBackupModes, ", "))
	}
	if !oneOf(s.BasebackupMode, basebackupModes) {
		ps.add(p+".basebackup_mode", "unknown mode %q (want one of %s)", s.BasebackupMode, strings.Join(basebackupModes, ", "))
	}
	if s.BasebackupChunkSize < 1 {
		ps.add(p+".basebackup_chunk_size", "must be positive, got %d", s.BasebackupChunkSize)
	}
	positive(ps, p+".basebackup_chunks_in_progress", s.BasebackupChunksInProgress)
	positive(ps, p+".basebackup_threads", s.BasebackupThreads)
	if s.BasebackupCompressionThreads < 0 {
		ps.add(p+".basebackup_compression_threads", "must not be negative, got %d", s.BasebackupCompressionThreads)
	}
	if s.BasebackupIntervalHours != nil && *s.BasebackupIntervalHours <= 0 {
		ps.add(p+".basebackup_interval_hours", "must be positive or null, got %v", *s.BasebackupIntervalHours)
	}
	switch {
	case s.BasebackupHour != nil && s.BasebackupMinute == nil:
		ps.add(p+".basebackup_minute", "required when basebackup_hour is set")
	case s.BasebackupHour == nil && s.BasebackupMinute != nil:
		ps.add(p+".basebackup_hour", "required when basebackup_minute is set")
	}
	if s.BasebackupHour != nil && (*s.BasebackupHour < 0 || *s.BasebackupHour > 23) {
		ps.add(p+".basebackup_hour", "%d out of range 0-23", *s.BasebackupHour)
	}
	if s.BasebackupMinute != nil && (*s.BasebackupMinute < 0 || *s.BasebackupMinute > 59) {
		ps.add(p+".basebackup_minute", "%d out of range 0-59", *s.BasebackupMinute)
	}
	if s.BasebackupCount != nil && *s.BasebackupCount < 1 {
		ps.add(p+".basebackup_count", "must be at least 1 or null, got %d", *s.BasebackupCount)
	}
	if s.BasebackupCountMin < 0 {
		ps.add(p+".basebackup_count_min", "must not be negative, got %d", s.BasebackupCountMin)
	}
	if s.BasebackupAgeDaysMax != nil && *s.BasebackupAgeDaysMax <= 0 {
		ps.add(p+".basebackup_age_days_max", "must be positive or null, got %v", *s.BasebackupAgeDaysMax)
	}
	if s.RestoreTestIntervalHours != nil && *s.RestoreTestIntervalHours <= 0 {
		ps.add(p+".restore_test_interval_hours", "must be positive or null, got %v", *s.RestoreTestIntervalHours)
	}
	if s.WALPartialUploadInterval < 0 {
		ps.add(p+".wal_partial_upload_interval", "must not be negative")
	}
	if s.PGVersion < 0 {
		ps.add(p+".pg_version", "must not be negative, got %d", s.PGVersion)
	}
	for i, n := range s.Nodes {
		if n.Params == nil && strings.TrimSpace(n.ConnStr) != "" && !isURI(n.ConnStr) {
			if _, err := parseKV(n.ConnStr); err != nil {
				ps.add(fmt.Sprintf("%s.nodes[%d]", p, i), "%v", err)
			}
		}
	}
	if s.EncryptionKeyID != "" {
		k, ok := s.EncryptionKeys[s.EncryptionKeyID]
		switch {
		case !ok:
			ps.add(p+".encryption_key_id", "key %q not present in encryption_keys", s.EncryptionKeyID)
		case k.Public == "":
			ps.add(p+".encryption_keys."+s.EncryptionKeyID+".public", "required: encryption_key_id %q uploads with this key", s.EncryptionKeyID)
		}
	}
	for _, id := range sortedKeyIDs(s.EncryptionKeys) {
		if k := s.EncryptionKeys[id]; k.Public == "" && k.Private == "" {
			ps.add(p+".encryption_keys."+id, "needs public and/or private")
		}
	}
	s.ObjectStorage.validate(ps, c, p)
}

func isURI(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

func sortedKeyIDs(m map[string]EncryptionKey) []string {
	a := make(map[string]any, len(m))
	for k := range m {
		a[k] = nil
	}
	return sortedKeys(a)
}

func (o *ObjectStorage) validate(ps *problems, c *Config, site string) {
	p := site + ".object_storage"
	switch o.StorageType {
	case StorageLocal:
		if o.Implicit {
			if o.Directory == "" {
				ps.add("backup_location", "required: site %s has no object_storage and falls back to local storage at backup_location", strings.TrimPrefix(site, "backup_sites."))
			}
			return
		}
		if o.Directory == "" {
			ps.add(p+".directory", "required for local storage")
		} else if c.BackupLocation != "" && filepath.Clean(o.Directory) == filepath.Clean(c.BackupLocation) {
			ps.add(p+".directory", "must differ from backup_location %q (PGHoard stages files there)", c.BackupLocation)
		}
	case StorageS3:
		if o.Region == "" {
			ps.add(p+".region", "required for s3 storage")
		}
		if o.BucketName == "" {
			ps.add(p+".bucket_name", "required for s3 storage")
		}
		if (o.AWSAccessKeyID == "") != (o.AWSSecretAccessKey == "") {
			ps.add(p+".aws_secret_access_key", "aws_access_key_id and aws_secret_access_key must be set together")
		}
		if o.AddressingStyle != "" && !oneOf(o.AddressingStyle, []string{"path", "virtual", "auto"}) {
			ps.add(p+".addressing_style", "unknown style %q (want path, virtual or auto)", o.AddressingStyle)
		}
		if o.SegmentSize < 0 {
			ps.add(p+".segment_size", "must not be negative, got %d", o.SegmentSize)
		}
		validPort(ps, p+".port", o.Port)
	case StorageGoogle:
		if o.ProjectID == "" && o.BucketName == "" {
			ps.add(p+".bucket_name", "project_id and/or bucket_name required for google storage")
		}
		if o.CredentialFile != "" && len(o.Credentials) > 0 {
			ps.add(p+".credentials", "credential_file and credentials are mutually exclusive")
		}
	case StorageAzure:
		if o.AccountName == "" {
			ps.add(p+".account_name", "required for azure storage")
		}
		if (o.Host == "") != (o.Port == 0) {
			ps.add(p+".port", "host and port must be set together")
		}
		validPort(ps, p+".port", o.Port)
		if o.AzureCloud != "" && !oneOf(o.AzureCloud, []string{"public", "germany", "china"}) {
			ps.add(p+".azure_cloud", "unknown cloud %q (want public, germany or china)", o.AzureCloud)
		}
	case StorageURL:
		u, err := url.Parse(o.URL)
		switch {
		case o.URL == "":
			ps.add(p+".url", "required")
		case err != nil:
			ps.add(p+".url", "invalid URL: %v", redactURLError(err))
		case u.Scheme == "":
			ps.add(p+".url", "want a gocloud.dev/blob URL such as s3://bucket?region=r, got no scheme")
		}
	}
}

func validPort(ps *problems, path string, port int) {
	if port < 0 || port > 65535 {
		ps.add(path, "%d out of range 0-65535", port)
	}
}

// redactURLError drops the URL (which may hold credentials) from a parse error.
func redactURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
