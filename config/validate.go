package config

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/storage"
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
	statsdFormats     = []string{"telegraf", "datadog"}
	// logLevels are PGHoard's names; WARN is taken as WARNING.
	logLevels = []string{"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
)

// HashAlgorithms are the hash_algorithm values hoard accepts: the hashlib
// names PGHoard can use (archive.HashAlgorithms, which the command
// package's tests hold equal to this list).
var HashAlgorithms = []string{"blake2b", "blake2s", "md5", "sha1", "sha224", "sha256", "sha384", "sha3_224",
	"sha3_256", "sha3_384", "sha3_512", "sha512", "sha512_224", "sha512_256"}

// orList writes names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// codeList is orList for the reference: "`a`, `b` or `c`".
func codeList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "`" + n + "`"
	}
	return orList(quoted)
}

func (c *Config) validate() problems {
	var ps problems
	if len(c.BackupSites) == 0 {
		ps.add("backup_sites", "at least one site is required")
	}
	if max, ok := compress.MaxLevel(c.Compression.Algorithm); !ok {
		ps.add("compression.algorithm", "unknown compression algorithm %q (want %s)", c.Compression.Algorithm, orList(compress.Algorithms))
	} else if c.Compression.Level < 0 || (max > 0 && c.Compression.Level > max) {
		ps.add("compression.level", "%d out of range 0-%d for %s", c.Compression.Level, max, c.Compression.Algorithm)
	}
	c.checkRows(&ps)
	if (c.WebserverUsername == "") != (c.WebserverPassword == "") {
		ps.add("webserver_password", "webserver_username and webserver_password must be set together")
	}
	if together(&ps, "", "http_tls_cert_file", "http_tls_key_file", c.HTTPTLSCertFile != "", c.HTTPTLSKeyFile != "") {
		readable(&ps, "http_tls_cert_file", c.HTTPTLSCertFile)
		readable(&ps, "http_tls_key_file", c.HTTPTLSKeyFile)
	}
	if l := strings.ToUpper(c.LogLevel); !slices.Contains(logLevels, l) && l != "WARN" {
		ps.add("log_level", "unknown level %q (want %s)", c.LogLevel, orList(logLevels))
	}
	if !slices.Contains(HashAlgorithms, c.HashAlgorithm) {
		ps.add("hash_algorithm", "unknown hash %q (want one of %s)", c.HashAlgorithm, strings.Join(HashAlgorithms, ", "))
	}
	if c.Pushgateway != nil && c.Pushgateway.Endpoint == "" {
		ps.add("pushgateway.endpoint", "required")
	}
	for _, name := range c.SiteNames() {
		if !usableSiteName(name) {
			ps.add("backup_sites", "site name %q is not usable as a directory and prefix: it names the site's spool under backup_location (<backup_location>/<site>/xlog_incoming) and its objects' prefix; use a plain name such as \"main\"", name)
			continue
		}
		c.BackupSites[name].validate(&ps, c, "backup_sites."+name)
	}
	return ps
}

// usableSiteName tells whether name can name a directory under
// backup_location and a storage prefix: not empty, "." or absolute, no
// ".." that leaves backup_location, and in its clean form (a/b, not a//b
// or a/./b, which name the same directory as another name).
func usableSiteName(name string) bool {
	return name != "." && filepath.IsLocal(name) && path.Clean(name) == name && !strings.ContainsAny(name, "\\\x00")
}

// together records a problem at the key a or b of the object at path that
// is missing while the other is set, and tells whether both are set.
func together(ps *problems, path, a, b string, hasA, hasB bool) bool {
	switch {
	case hasA && !hasB:
		ps.add(join(path, b), "required when %s is set", a)
	case hasB && !hasA:
		ps.add(join(path, a), "required when %s is set", b)
	}
	return hasA && hasB
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

// checkRows reports, at every level (sites, nested objects,
// object_storage), every string its row's oneOf does not list and every
// number outside the range its row allows (valid).
func (c *Config) checkRows(ps *problems) {
	for _, e := range entries(c, false) {
		if s, ok := e.val.(string); ok && e.key.oneOf != nil && !slices.Contains(e.key.oneOf, s) && (s != "" || e.key.def != nil) {
			noun := e.key.name[strings.LastIndex(e.key.name, "_")+1:] // "mode" of active_backup_mode
			ps.add(e.path, "unknown %s %q (want %s)", noun, s, orList(e.key.oneOf))
		}
		if e.key.valid == "" || e.val == nil {
			continue
		}
		n := reflect.ValueOf(e.val).Convert(reflect.TypeFor[float64]()).Float()
		orNull := ""
		if strings.HasSuffix(e.typ, " or null") {
			orNull = " or null"
		}
		lo, hi, isRange := strings.Cut(e.key.valid, "-")
		switch min, _ := strconv.ParseFloat(lo, 64); {
		case isRange:
			if max, _ := strconv.ParseFloat(hi, 64); n < min || n > max {
				ps.add(e.path, "%v out of range %s", e.val, e.key.valid)
			}
		case e.key.valid == ">=0" && n < 0:
			ps.add(e.path, "must not be negative%s, got %v", orNull, e.val)
		case e.key.valid == ">=1" && n < 1:
			ps.add(e.path, "must be at least 1%s, got %v", orNull, e.val)
		case e.key.valid == ">0" && n <= 0:
			ps.add(e.path, "must be positive%s, got %v", orNull, e.val)
		}
	}
}

func (s *Site) validate(ps *problems, c *Config, p string) {
	together(ps, p, "basebackup_hour", "basebackup_minute", s.BasebackupHour != nil, s.BasebackupMinute != nil)
	for i, n := range s.Nodes {
		if n.Params == nil && strings.TrimSpace(n.ConnStr) != "" && !replication.IsURI(n.ConnStr) {
			if _, err := replication.ParseConnString(n.ConnStr); err != nil {
				ps.add(fmt.Sprintf("%s.nodes[%d]", p, i), "%v", err)
			}
		}
	}
	if s.UnencryptedObjectsBefore != "" {
		switch t, err := time.Parse(time.RFC3339, s.UnencryptedObjectsBefore); {
		case err != nil:
			ps.add(p+".unencrypted_objects_before", "%q is not an RFC 3339 time such as 2024-05-01T00:00:00Z", s.UnencryptedObjectsBefore)
		case t.After(time.Now()):
			ps.add(p+".unencrypted_objects_before", "%s is in the future: set it to when encryption was switched on", s.UnencryptedObjectsBefore)
		}
	}
	switch id, k, ok := s.EncryptionKey(); {
	case id == "": // no encryption
	case !ok:
		ps.add(p+".encryption_key_id", "key %q not present in encryption_keys", id)
	case k.Public == "":
		ps.add(p+".encryption_keys."+id+".public", "required: encryption_key_id %q uploads with this key", id)
	}
	for _, id := range sortedKeys(s.EncryptionKeys) {
		if k := s.EncryptionKeys[id]; k.Public == "" && k.Private == "" {
			ps.add(p+".encryption_keys."+id, "needs public and/or private")
		}
	}
	s.ObjectStorage.validate(ps, c, p)
}

func (o *ObjectStorage) validate(ps *problems, c *Config, site string) {
	p := site + ".object_storage"
	switch {
	case o.Implicit && o.Directory == "":
		ps.add("backup_location", "required: site %s has no object_storage and falls back to local storage at backup_location", strings.TrimPrefix(site, "backup_sites."))
		return
	case o.Type == StorageURL && o.URL == "":
		ps.add(p+".url", "required")
	case o.Type == storage.TypeLocal && !o.Implicit && o.Directory != "" && c.BackupLocation != "" && filepath.Clean(o.Directory) == filepath.Clean(c.BackupLocation):
		ps.add(p+".directory", "must differ from backup_location %q (PGHoard stages files there)", c.BackupLocation)
	}
	for _, pr := range o.StorageConfig().Check() {
		ps.add(p+"."+pr.Key, "%s", pr.Msg)
	}
}
