package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Load reads the configuration at path and returns it validated. Values come,
// in order, from PGHoard's defaults, the file, then the HOARD_* variables read
// with getenv (see EnvVars). With path "" the configuration is built from the
// environment alone. A *ValidationError lists every problem found.
func Load(path string, getenv func(string) string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
	}
	return Parse(path, data, getenv)
}

// Parse is Load for a file already in memory; name is used in errors. Empty
// data means no file. getenv may be nil (no environment overrides).
func Parse(name string, data []byte, getenv func(string) string) (*Config, error) {
	c := New()
	c.File = name
	d := &decoder{c: c}
	if len(bytes.TrimSpace(data)) > 0 || name != "" {
		root, err := decodeJSON(data)
		if err != nil {
			return nil, fmt.Errorf("parse config %s: %w", name, err)
		}
		d.object("", root, d.globalFields())
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	applyEnv(c, getenv, &d.ps)
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "."
	}
	c.finish(cwd)
	c.Warnings = d.warnings
	ps := d.ps
	ps = append(ps, c.validate()...)
	if len(ps) > 0 {
		return nil, &ValidationError{File: name, Problems: ps}
	}
	return c, nil
}

// decodeJSON decodes one JSON value with numbers kept exact; syntax errors
// give line:column.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			return nil, fmt.Errorf("%s: invalid JSON: data after the top-level value", position(data, dec.InputOffset()))
		}
		return v, nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset counts the bytes read, including the offending one.
		return nil, fmt.Errorf("%s: invalid JSON: %w", position(data, max(se.Offset-1, 0)), err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%s: invalid JSON: unexpected end of input", position(data, int64(len(data))))
	}
	return nil, fmt.Errorf("invalid JSON: %w", err)
}

// position turns a byte offset into "line L, column C" (1-based).
func position(data []byte, off int64) string {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, b := range data[:off] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d", line, col)
}

func (d *decoder) globalFields() map[string]fieldFunc {
	c := d.c
	return map[string]fieldFunc{
		"backup_location":                       d.str(&c.BackupLocation),
		"backup_sites":                          d.sites,
		"alert_file_dir":                        d.str(&c.AlertFileDir),
		"json_state_file_path":                  d.str(&c.JSONStateFilePath),
		"maintenance_mode_file":                 d.str(&c.MaintenanceModeFile),
		"http_address":                          d.str(&c.HTTPAddress),
		"http_port":                             d.integer(&c.HTTPPort),
		"webserver_username":                    d.str(&c.WebserverUsername),
		"webserver_password":                    d.str(&c.WebserverPassword),
		"http_tls_cert_file":                    d.str(&c.HTTPTLSCertFile),
		"http_tls_key_file":                     d.str(&c.HTTPTLSKeyFile),
		"upload_retries_warning_limit":          d.integer(&c.UploadRetriesWarningLimit),
		"graceful_shutdown_compression_timeout": d.seconds(&c.GracefulShutdownCompressionTimeout),
		"graceful_shutdown_upload_timeout":      d.seconds(&c.GracefulShutdownUploadTimeout),
		"restore_process_count":                 d.integer(&c.RestoreProcessCount),
		"restore_prefetch":                      d.integer(&c.RestorePrefetch),
		"tar_executable":                        d.str(&c.TarExecutable),
		"hash_algorithm":                        d.str(&c.HashAlgorithm),
		"deleter_event_get_timeout":             d.seconds(&c.DeleterEventGetTimeout),
		"log_level":                             d.str(&c.LogLevel),
		"syslog":                                d.boolean(&c.Syslog),
		"syslog_address":                        d.str(&c.SyslogAddress),
		"syslog_facility":                       d.str(&c.SyslogFacility),
		"path_prefix":                           d.str(&c.PathPrefix),
		"pg_basebackup_path":                    d.str(&c.PGBasebackupPath),
		"pg_receivexlog_path":                   d.str(&c.PGReceiveXLogPath),
		"compression": func(p string, v any) {
			d.object(p, v, map[string]fieldFunc{
				"algorithm":    d.str(&c.Compression.Algorithm),
				"level":        d.integer(&c.Compression.Level),
				"thread_count": d.integer(&c.Compression.ThreadCount),
			})
		},
		"transfer": func(p string, v any) {
			d.object(p, v, map[string]fieldFunc{
				"thread_count": d.integer(&c.Transfer.ThreadCount),
			})
		},
		"statsd": func(p string, v any) {
			if v == nil {
				return
			}
			s := &Statsd{Host: "127.0.0.1", Port: 8125, Format: "telegraf"}
			if d.walkValues(v) {
				if c.Statsd == nil {
					d.walk.add(p, "object or null", nil)
					return
				}
				s = c.Statsd
			}
			d.object(p, v, map[string]fieldFunc{
				"host":   d.str(&s.Host),
				"port":   d.integer(&s.Port),
				"format": d.str(&s.Format),
				"tags":   d.tags(&s.Tags),
			})
			if !d.walking(v) {
				c.Statsd = s
				d.set(p)
			}
		},
		"pushgateway": func(p string, v any) {
			if v == nil {
				return
			}
			g := &Pushgateway{Job: "pghoard"}
			if d.walkValues(v) {
				if c.Pushgateway == nil {
					d.walk.add(p, "object or null", nil)
					return
				}
				g = c.Pushgateway
			}
			d.object(p, v, map[string]fieldFunc{
				"endpoint": d.str(&g.Endpoint),
				"job":      d.str(&g.Job),
				"instance": d.str(&g.Instance),
				"tags":     d.tags(&g.Tags),
			})
			if !d.walking(v) {
				c.Pushgateway = g
				d.set(p)
			}
		},
		"prometheus": func(p string, v any) {
			if v == nil {
				return
			}
			m := &Prometheus{}
			if d.walkValues(v) {
				if c.Prometheus == nil {
					d.walk.add(p, "object or null", nil)
					return
				}
				m = c.Prometheus
			}
			d.object(p, v, map[string]fieldFunc{"tags": d.tags(&m.Tags)})
			if !d.walking(v) {
				c.Prometheus = m
				d.set(p)
			}
		},
	}
}

func (d *decoder) sites(path string, v any) {
	if d.walking(v) {
		d.walkSites(path)
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, "object", v)
		return
	}
	for _, name := range sortedKeys(m) {
		s := newSite(name)
		d.c.BackupSites[name] = s
		d.object(join(path, name), m[name], d.siteFields(s))
	}
}

func (d *decoder) siteFields(s *Site) map[string]fieldFunc {
	return map[string]fieldFunc{
		"nodes":                          func(p string, v any) { d.nodes(p, v, s) },
		"pg_data_directory":              d.str(&s.PGDataDirectory),
		"pg_bin_directory":               d.str(&s.PGBinDirectory),
		"prefix":                         d.str(&s.Prefix),
		"active":                         d.boolean(&s.Active),
		"active_backup_mode":             d.str(&s.ActiveBackupMode),
		"slot":                           d.str(&s.Slot),
		"basebackup_mode":                d.str(&s.BasebackupMode),
		"basebackup_chunk_size":          d.integer64(&s.BasebackupChunkSize),
		"basebackup_chunks_in_progress":  d.integer(&s.BasebackupChunksInProgress),
		"basebackup_threads":             d.integer(&s.BasebackupThreads),
		"basebackup_compression_threads": d.integer(&s.BasebackupCompressionThreads),
		"basebackup_delta_mode_min_delta_file_size": d.integer64(&s.BasebackupDeltaModeMinDeltaFileSize),
		"basebackup_delta_mode_chunk_size":          d.integer64(&s.BasebackupDeltaModeChunkSize),
		"basebackup_delta_mode_max_retries":         d.integer(&s.BasebackupDeltaModeMaxRetries),
		"basebackup_interval_hours":                 d.optNumber(&s.BasebackupIntervalHours),
		"basebackup_hour":                           d.optInteger(&s.BasebackupHour),
		"basebackup_minute":                         d.optInteger(&s.BasebackupMinute),
		"basebackup_count":                          d.optInteger(&s.BasebackupCount),
		"basebackup_count_min":                      d.integer(&s.BasebackupCountMin),
		"basebackup_age_days_max":                   d.optNumber(&s.BasebackupAgeDaysMax),
		"encryption_key_id":                         d.str(&s.EncryptionKeyID),
		"encryption_keys":                           func(p string, v any) { d.keys(p, v, s) },
		"object_storage":                            func(p string, v any) { d.storage(p, v, &s.ObjectStorage) },
		"moved_from":                                func(p string, v any) { d.movedFrom(p, v, s) },
		"pg_version":                                d.integer(&s.PGVersion),
		"pg_basebackup_path":                        d.str(&s.PGBasebackupPath),
		"pg_receivexlog_path":                       d.str(&s.PGReceiveXLogPath),
		"stream_compression":                        d.boolean(&s.StreamCompression),
		"wal_partial_upload_interval":               d.seconds(&s.WALPartialUploadInterval),
		"restore_test_interval_hours":               d.optNumber(&s.RestoreTestIntervalHours),
		"pg_receivexlog": func(p string, v any) {
			r := &s.PGReceiveXLog
			d.object(p, v, map[string]fieldFunc{
				"disk_space_check_interval": d.seconds(&r.DiskSpaceCheckInterval),
				"min_disk_free_bytes":       d.optInteger64(&r.MinDiskFreeBytes),
				"resume_multiplier":         d.number(&r.ResumeMultiplier),
			})
		},
	}
}

func (d *decoder) keys(path string, v any, s *Site) {
	if d.walking(v) {
		d.walkKeys(path, s)
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, "object", v)
		return
	}
	for _, id := range sortedKeys(m) {
		var k EncryptionKey
		d.object(join(path, id), m[id], map[string]fieldFunc{
			"public":  d.str(&k.Public),
			"private": d.str(&k.Private),
		})
		s.EncryptionKeys[id] = k
	}
}

// movedFrom accepts a site name or a list of them.
func (d *decoder) movedFrom(path string, v any, s *Site) {
	if d.walked(path, v, "string or array of strings", s.MovedFrom) {
		return
	}
	switch x := v.(type) {
	case nil:
		s.MovedFrom = nil
	case string:
		s.MovedFrom = []string{x}
	case []any:
		s.MovedFrom = nil
		for i, e := range x {
			str, ok := e.(string)
			if !ok {
				d.wrongType(fmt.Sprintf("%s[%d]", path, i), "string", e)
				continue
			}
			s.MovedFrom = append(s.MovedFrom, str)
		}
	default:
		d.wrongType(path, "string or array of strings", v)
		return
	}
	d.set(path)
}

func (d *decoder) nodes(path string, v any, s *Site) {
	if d.walking(v) {
		d.walkNodes(path, s)
		return
	}
	list, ok := v.([]any)
	if !ok {
		d.wrongType(path, "array", v)
		return
	}
	s.Nodes = nil
	for i, e := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch x := e.(type) {
		case string:
			s.Nodes = append(s.Nodes, Node{ConnStr: x})
		case map[string]any:
			s.Nodes = append(s.Nodes, d.nodeObject(p, x))
		default:
			d.wrongType(p, "connection string or object", e)
		}
	}
	d.set(path)
}

func (d *decoder) nodeObject(path string, m map[string]any) Node {
	var n Node
	if _, ok := m["connection_string"]; ok {
		d.object(path, m, map[string]fieldFunc{
			"connection_string": d.str(&n.ConnStr),
			"slot":              d.str(&n.Slot),
		})
		return n
	}
	n.Params = map[string]string{}
	for _, k := range sortedKeys(m) {
		p := join(path, k)
		if k == "slot" {
			d.str(&n.Slot)(p, m[k])
			continue
		}
		if m[k] == nil {
			continue
		}
		s, ok := scalarString(m[k])
		if !ok {
			d.wrongType(p, "string or number", m[k])
			continue
		}
		n.Params[k] = s
	}
	return n
}

func (d *decoder) storage(path string, v any, o *ObjectStorage) {
	if d.walking(v) {
		d.walkStorage(path, o)
		return
	}
	if v == nil {
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, "object", v)
		return
	}
	*o = ObjectStorage{}
	d.set(path)
	_, hasURL := m["url"]
	st, hasType := m["storage_type"]
	switch {
	case hasURL && hasType:
		d.ps.add(path, "url and storage_type are mutually exclusive")
		return
	case hasURL:
		o.StorageType = StorageURL
	case !hasType:
		d.ps.add(join(path, "storage_type"), "required (local, s3, google or azure), or give url")
		return
	default:
		s, ok := st.(string)
		if !ok {
			d.wrongType(join(path, "storage_type"), "string", st)
			return
		}
		if _, known := storageKeys[s]; !known || s == StorageURL {
			d.ps.add(join(path, "storage_type"), "unknown storage type %q (want local, s3, google or azure)", s)
			return
		}
		o.StorageType = s
	}
	// rohmu: Azure defaults to HTTPS, S3 to is_secure false.
	o.IsSecure = o.StorageType == StorageAzure
	all := storageTargets(o)
	fields := map[string]fieldFunc{"storage_type": func(string, any) {}, "prefix": d.field(all["prefix"])}
	for _, k := range storageKeys[o.StorageType] {
		fields[k] = d.field(all[k])
	}
	d.object(path, m, fields)
}

// rawObject keeps a JSON object as raw bytes (Google service-account
// credentials are handed to the client library as they are).
func (d *decoder) rawObject(dst *json.RawMessage) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "JSON object", *dst) {
			return
		}
		if _, ok := v.(map[string]any); !ok {
			d.wrongType(path, "object", v)
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			d.ps.add(path, "encode: %v", err)
			return
		}
		*dst = b
		d.set(path)
	}
}
