package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/storage"
)

// siteJSON wraps site keys in a minimal valid configuration with one site s1.
func siteJSON(site string) string {
	return `{"backup_location": "/var/lib/pghoard", "backup_sites": {"s1": {` + site + `}}}`
}

func TestParse_ErrValidation(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"WrongTypeCount", siteJSON(`"basebackup_count": "two"`), `backup_sites.s1.basebackup_count: want integer or null, got string "two"`},
		{"WrongTypeFraction", siteJSON(`"basebackup_threads": 1.5`), `backup_sites.s1.basebackup_threads: want integer, got number 1.5`},
		{"WrongTypeInterval", siteJSON(`"basebackup_interval_hours": true`), `backup_sites.s1.basebackup_interval_hours: want number or null, got boolean true`},
		{"WrongTypeActive", siteJSON(`"active": "yes"`), `backup_sites.s1.active: want boolean`},
		{"WrongTypeSites", `{"backup_location": "/b", "backup_sites": []}`, `backup_sites: want object, got array`},
		{"WrongTypeNodes", siteJSON(`"nodes": "host=x"`), `backup_sites.s1.nodes: want array`},
		{"WrongTypeNode", siteJSON(`"nodes": [5]`), `backup_sites.s1.nodes[0]: want connection string or object, got number 5`},
		{"WrongTypeNodeParam", siteJSON(`"nodes": [{"host": ["a"]}]`), `backup_sites.s1.nodes[0].host: want string or number, got array`},
		{"WrongTypeCompression", `{"backup_location": "/b", "compression": "zstd", "backup_sites": {"s": {}}}`, `compression: want object, got string "zstd"`},
		{"WrongTypeTopLevel", `[1]`, `(top level): want object, got array`},
		{"BadConnString", siteJSON(`"nodes": ["host='unclosed"]`), `backup_sites.s1.nodes[0]: malformed`},
		{"NoSites", `{"backup_location": "/b"}`, `backup_sites: at least one site is required`},
		{"HourWithoutMinute", siteJSON(`"basebackup_hour": 3`), `backup_sites.s1.basebackup_minute: required when basebackup_hour is set`},
		{"MinuteWithoutHour", siteJSON(`"basebackup_minute": 3`), `backup_sites.s1.basebackup_hour: required when basebackup_minute is set`},
		{"HourRange", siteJSON(`"basebackup_hour": 24, "basebackup_minute": 0`), `backup_sites.s1.basebackup_hour: 24 out of range 0-23`},
		{"MinuteRange", siteJSON(`"basebackup_hour": 2, "basebackup_minute": 60`), `backup_sites.s1.basebackup_minute: 60 out of range 0-59`},
		{"IntervalZero", siteJSON(`"basebackup_interval_hours": 0`), `backup_sites.s1.basebackup_interval_hours: must be positive`},
		{"CountZero", siteJSON(`"basebackup_count": 0`), `backup_sites.s1.basebackup_count: must be at least 1`},
		{"ActiveBackupMode", siteJSON(`"active_backup_mode": "pg_receivewal"`), `backup_sites.s1.active_backup_mode: unknown mode "pg_receivewal"`},
		{"BasebackupMode", siteJSON(`"basebackup_mode": "fast"`), `backup_sites.s1.basebackup_mode: unknown mode "fast"`},
		{"LocalDirIsBackupLocation", siteJSON(`"object_storage": {"storage_type": "local", "directory": "/var/lib/pghoard/"}`), `backup_sites.s1.object_storage.directory: must differ from backup_location`},
		{"LocalNoDirectory", siteJSON(`"object_storage": {"storage_type": "local"}`), `backup_sites.s1.object_storage.directory: required`},
		{"NoBackupLocation", `{"backup_sites": {"s1": {}}}`, `backup_location: required: site s1 has no object_storage`},
		{"StorageType", siteJSON(`"object_storage": {"storage_type": "ftp", "user": "u"}`), `backup_sites.s1.object_storage.storage_type: unknown storage type "ftp"`},
		{"SFTPFingerprint", siteJSON(`"object_storage": {"storage_type": "sftp", "server": "h", "username": "u", "password": "p", "host_key_fingerprint": "aa:bb"}`), `backup_sites.s1.object_storage.host_key_fingerprint: want SHA256:`},
		{"SFTPHostKeyChecks", siteJSON(`"object_storage": {"storage_type": "sftp", "server": "h", "username": "u", "password": "p", "host_key_fingerprint": "SHA256:x", "insecure_ignore_host_key": true}`), `backup_sites.s1.object_storage.insecure_ignore_host_key: contradicts`},
		{"SwiftRequired", siteJSON(`"object_storage": {"storage_type": "swift", "user": "u", "key": "k", "auth_url": "http://a"}`), `backup_sites.s1.object_storage.container_name: required for swift storage`},
		{"SwiftAuthVersion", siteJSON(`"object_storage": {"storage_type": "swift", "user": "u", "key": "k", "auth_url": "http://a", "container_name": "c", "auth_version": "4"}`), `backup_sites.s1.object_storage.auth_version: unknown version "4"`},
		{"StorageTypeMissing", siteJSON(`"object_storage": {"directory": "/x"}`), `backup_sites.s1.object_storage.storage_type: required`},
		{"StorageURLAndType", siteJSON(`"object_storage": {"storage_type": "s3", "url": "s3://b"}`), `backup_sites.s1.object_storage: url and storage_type are mutually exclusive`},
		{"StorageURLNoScheme", siteJSON(`"object_storage": {"url": "bucket"}`), `backup_sites.s1.object_storage.url: want a gocloud.dev/blob URL`},
		{"S3Region", siteJSON(`"object_storage": {"storage_type": "s3", "bucket_name": "b"}`), `backup_sites.s1.object_storage.region: required for s3 storage`},
		{"S3Bucket", siteJSON(`"object_storage": {"storage_type": "s3", "region": "r"}`), `backup_sites.s1.object_storage.bucket_name: required for s3 storage`},
		{"S3CertPathNoVerify", siteJSON(`"object_storage": {"storage_type": "s3", "region": "r", "bucket_name": "b", "host": "minio", "port": 9000, "is_secure": true, "cert_path": "/etc/ca.pem"}`), `backup_sites.s1.object_storage.cert_path: set, but is_verify_tls is false`},
		{"S3Addressing", siteJSON(`"object_storage": {"storage_type": "s3", "region": "r", "bucket_name": "b", "addressing_style": "dns"}`), `backup_sites.s1.object_storage.addressing_style: unknown style "dns"`},
		{"GoogleBucket", siteJSON(`"object_storage": {"storage_type": "google"}`), `backup_sites.s1.object_storage.bucket_name: project_id and/or bucket_name required`},
		{"AzureAccount", siteJSON(`"object_storage": {"storage_type": "azure"}`), `backup_sites.s1.object_storage.account_name: required for azure storage`},
		{"AzureHostPort", siteJSON(`"object_storage": {"storage_type": "azure", "account_name": "a", "host": "h"}`), `backup_sites.s1.object_storage.port: host and port must be set together`},
		{"Compression", `{"backup_location": "/b", "compression": {"algorithm": "gzip"}, "backup_sites": {"s": {}}}`, `compression.algorithm: unknown compression algorithm "gzip"`},
		{"CompressionLevel", `{"backup_location": "/b", "compression": {"algorithm": "lzma", "level": 10}, "backup_sites": {"s": {}}}`, `compression.level: 10 out of range 0-9 for lzma`},
		{"KeyIDMissing", siteJSON(`"encryption_key_id": "k2", "encryption_keys": {"k1": {"public": "P"}}`), `backup_sites.s1.encryption_key_id: key "k2" not present in encryption_keys`},
		{"KeyNoPublic", siteJSON(`"encryption_key_id": "k1", "encryption_keys": {"k1": {"private": "Q"}}`), `backup_sites.s1.encryption_keys.k1.public: required`},
		{"KeyEmpty", siteJSON(`"encryption_keys": {"k1": {}}`), `backup_sites.s1.encryption_keys.k1: needs public and/or private`},
		{"HTTPPort", `{"backup_location": "/b", "http_port": 70000, "backup_sites": {"s": {}}}`, `http_port: 70000 out of range`},
		{"StatsdPort", `{"backup_location": "/b", "statsd": {"port": 99999}, "backup_sites": {"s": {}}}`, `statsd.port: 99999 out of range 1-65535`},
		{"StatsdPortZero", `{"backup_location": "/b", "statsd": {"port": 0}, "backup_sites": {"s": {}}}`, `statsd.port: 0 out of range 1-65535`},
		{"WebserverAuth", `{"backup_location": "/b", "webserver_username": "u", "backup_sites": {"s": {}}}`, `webserver_password: webserver_username and webserver_password must be set together`},
		{"LogLevel", `{"backup_location": "/b", "log_level": "LOUD", "backup_sites": {"s": {}}}`, `log_level: unknown level "LOUD"`},
		{"HashAlgorithm", `{"backup_location": "/b", "hash_algorithm": "crc", "backup_sites": {"s": {}}}`, `hash_algorithm: unknown hash "crc"`},
		{"StatsdFormat", `{"backup_location": "/b", "statsd": {"format": "x"}, "backup_sites": {"s": {}}}`, `statsd.format: unknown format "x"`},
		{"MovedFrom", siteJSON(`"moved_from": [1]`), `backup_sites.s1.moved_from[0]: want string, got number 1`},
		// walstream refuses a negative interval at start: the daemon loaded the file, then streamed no WAL.
		{"DiskCheckNegative", siteJSON(`"pg_receivexlog": {"disk_space_check_interval": -1}`), `backup_sites.s1.pg_receivexlog.disk_space_check_interval: must not be negative, got -1`},
		// walstream takes 0 or less for its default, a minute, whatever was meant.
		{"ReceiverTimeoutZero", siteJSON(`"wal_receiver_timeout": 0`), `backup_sites.s1.wal_receiver_timeout: must be positive, got 0`},
		{"ReceiverTimeoutNegative", siteJSON(`"wal_receiver_timeout": -5`), `backup_sites.s1.wal_receiver_timeout: must be positive, got -5`},
		// The name is a directory under backup_location (the spool) and the storage prefix.
		{"SiteNameEmpty", `{"backup_location": "/b", "backup_sites": {"": {}}}`, `backup_sites: site name "" is not usable as a directory and prefix`},
		{"SiteNameDotDot", `{"backup_location": "/b", "backup_sites": {"../evil": {}}}`, `backup_sites: site name "../evil" is not usable as a directory and prefix`},
		{"SiteNameDot", `{"backup_location": "/b", "backup_sites": {".": {}}}`, `backup_sites: site name "." is not usable`},
		{"SiteNameAbsolute", `{"backup_location": "/b", "backup_sites": {"/etc": {}}}`, `backup_sites: site name "/etc" is not usable`},
		{"SiteNameUnclean", `{"backup_location": "/b", "backup_sites": {"a//b": {}}}`, `backup_sites: site name "a//b" is not usable`},
		{"UnencryptedBeforeBad", siteJSON(`"unencrypted_objects_before": "yesterday"`), `backup_sites.s1.unencrypted_objects_before: "yesterday" is not an RFC 3339 time`},
		{"UnencryptedBeforeFuture", siteJSON(`"unencrypted_objects_before": "2999-01-01T00:00:00Z"`), `backup_sites.s1.unencrypted_objects_before: 2999-01-01T00:00:00Z is in the future`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("hoard.json", []byte(tc.data), nil)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err =\n%v\nwant it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "invalid config hoard.json:") {
				t.Errorf("err does not name the file: %v", err)
			}
		})
	}
}

// TestParse_ErrStorageTypeNoFallback: a site whose object_storage does
// not decode (an unknown or missing storage_type) has an object_storage
// all the same, so a configuration without backup_location is told what
// is wrong with it, not that the site "has no object_storage and falls
// back to local storage at backup_location", which it said too.
func TestParse_ErrStorageTypeNoFallback(t *testing.T) {
	for _, tc := range []struct{ name, storage, want string }{
		{"Unknown", `{"storage_type": "s4", "directory": "/x"}`, `backup_sites.a.object_storage.storage_type: unknown storage type "s4"`},
		{"Missing", `{"directory": "/x"}`, `backup_sites.a.object_storage.storage_type: required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("hoard.json", []byte(`{"backup_sites": {"a": {"object_storage": `+tc.storage+`}}}`), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "has no object_storage") {
				t.Errorf("err =\n%v\nwant %q and not \"has no object_storage\"", err, tc.want)
			}
		})
	}
}

// TestParse_ErrWrongTypeSecret checks that a secret of the wrong JSON type
// is reported by its type alone: the message names the key, never the
// value (a numeric password, the start of a key given as a string).
func TestParse_ErrWrongTypeSecret(t *testing.T) {
	for _, tc := range []struct {
		name, data, want, secret string
	}{
		{"WebserverPassword", `{"backup_location": "/b", "webserver_username": "u", "webserver_password": 98765432, "backup_sites": {"s": {}}}`,
			`webserver_password: want string, got number (not shown: a secret)`, "98765432"},
		{"PrivateKey", siteJSON(`"encryption_keys": {"k1": {"public": "P", "private": 1234567}}`),
			`backup_sites.s1.encryption_keys.k1.private: want string, got number (not shown: a secret)`, "1234567"},
		{"SFTPPassword", siteJSON(`"object_storage": {"storage_type": "sftp", "server": "h", "username": "u", "password": 7654321}`),
			`backup_sites.s1.object_storage.password: want string, got number (not shown: a secret)`, "7654321"},
		{"S3Secret", siteJSON(`"object_storage": {"storage_type": "s3", "region": "r", "bucket_name": "b", "aws_access_key_id": "a", "aws_secret_access_key": true}`),
			`backup_sites.s1.object_storage.aws_secret_access_key: want string, got boolean (not shown: a secret)`, "true"},
		{"GCSCredentials", siteJSON(`"object_storage": {"storage_type": "google", "bucket_name": "b", "credentials": "{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEsecret\"}"}`),
			`backup_sites.s1.object_storage.credentials: want object, got string (not shown: a secret)`, "private_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("hoard.json", []byte(tc.data), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err =\n%v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("err =\n%v\nholds the secret %q", err, tc.secret)
			}
		})
	}
}

func TestValidationError_Error(t *testing.T) {
	// Every problem is reported, one per line, not just the first.
	data := `{
		"compression": {"algorithm": "gzip"},
		"backup_sites": {
			"a": {"basebackup_count": "two", "basebackup_hour": 3},
			"b": {"object_storage": {"storage_type": "nfs"}}
		}
	}`
	_, err := Parse("multi.json", []byte(data), nil)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	wantPaths := []string{
		"backup_sites.a.basebackup_count",
		"backup_sites.b.object_storage.storage_type",
		"compression.algorithm",
		"backup_sites.a.basebackup_minute",
		"backup_location",
	}
	for _, p := range wantPaths {
		found := false
		for _, pr := range ve.Problems {
			if pr.Path == p {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at %s in %v", p, ve.Problems)
		}
	}
	if got, want := strings.Count(err.Error(), "\n"), len(ve.Problems); got != want {
		t.Errorf("%d lines for %d problems:\n%v", got, want, err)
	}
}

func TestConfig_Validate(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		c := load(t, "s3.json", nil)
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrAfterEdit", func(t *testing.T) {
		c := load(t, "s3.json", nil)
		c.BackupSites["prod"].BasebackupThreads = 0
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "backup_sites.prod.basebackup_threads") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParse_HTTPTLS(t *testing.T) {
	dir := t.TempDir()
	cert := writeFile(t, dir, "cert.pem", "CERT")
	key := writeFile(t, dir, "key.pem", "KEY")
	conf := func(keys string) string {
		return `{"backup_location": "/b", ` + keys + ` "backup_sites": {"s": {}}}`
	}
	t.Run("OK", func(t *testing.T) {
		c, err := Parse("c.json", []byte(conf(`"http_tls_cert_file": "`+cert+`", "http_tls_key_file": "`+key+`",`)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTPTLSCertFile != cert || c.HTTPTLSKeyFile != key {
			t.Errorf("cert %q key %q", c.HTTPTLSCertFile, c.HTTPTLSKeyFile)
		}
	})
	t.Run("OKEnv", func(t *testing.T) {
		c, err := Parse("c.json", []byte(conf("")), mapEnv(map[string]string{
			"HOARD_HTTP_TLS_CERT_FILE": cert, "HOARD_HTTP_TLS_KEY_FILE": key,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTPTLSCertFile != cert || c.HTTPTLSKeyFile != key {
			t.Errorf("cert %q key %q", c.HTTPTLSCertFile, c.HTTPTLSKeyFile)
		}
		if got, want := c.Source("http_tls_key_file"), "env HOARD_HTTP_TLS_KEY_FILE"; got != want {
			t.Errorf("Source = %q, want %q", got, want)
		}
	})
	for _, tc := range []struct{ name, keys, want string }{
		{"ErrCertOnly", `"http_tls_cert_file": "` + cert + `",`, "http_tls_key_file: required when http_tls_cert_file is set"},
		{"ErrKeyOnly", `"http_tls_key_file": "` + key + `",`, "http_tls_cert_file: required when http_tls_key_file is set"},
		{"ErrUnreadable", `"http_tls_cert_file": "` + cert + `", "http_tls_key_file": "/nonexistent/key.pem",`, "http_tls_key_file: open /nonexistent/key.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.json", []byte(conf(tc.keys)), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCompressionLevels: compression.algorithm accepts every algorithm of
// compress, each up to compress.MaxLevel and not beyond.
func TestCompressionLevels(t *testing.T) {
	conf := func(alg string, level int) string {
		return fmt.Sprintf(`{"backup_location": "/b", "compression": {"algorithm": %q, "level": %d}, "backup_sites": {"s": {}}}`, alg, level)
	}
	for _, alg := range compress.Algorithms {
		max, ok := compress.MaxLevel(alg)
		if !ok {
			t.Fatalf("compress.MaxLevel(%q) does not know it", alg)
		}
		if _, err := Parse("hoard.json", []byte(conf(alg, max)), nil); err != nil {
			t.Errorf("%s level %d: %v", alg, max, err)
		}
		if max == 0 {
			continue
		}
		want := fmt.Sprintf("compression.level: %d out of range 0-%d for %s", max+1, max, alg)
		if _, err := Parse("hoard.json", []byte(conf(alg, max+1)), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s level %d: err = %v, want %q", alg, max+1, err, want)
		}
	}
}

// TestParse_StorageValues checks that an object_storage key takes every
// value storage lists for it, and no other: storage owns the lists.
func TestParse_StorageValues(t *testing.T) {
	swift := `"user": "u", "key": "k", "auth_url": "http://a", "container_name": "c"`
	for key, c := range map[string]struct {
		typ, keys string
		values    []string
	}{
		"azure_cloud":      {storage.TypeAzure, `"account_name": "a"`, storage.AzureClouds},
		"auth_version":     {storage.TypeSwift, swift, storage.SwiftAuthVersions},
		"endpoint_type":    {storage.TypeSwift, swift, storage.SwiftEndpointTypes},
		"addressing_style": {storage.TypeS3, `"region": "r", "bucket_name": "b"`, storage.S3AddressingStyles},
	} {
		for _, v := range append(slices.Clone(c.values), "other") {
			data := siteJSON(fmt.Sprintf(`"object_storage": {"storage_type": %q, %s, %q: %q}`, c.typ, c.keys, key, v))
			if _, err := Parse("t.json", []byte(data), nil); (err == nil) != (v != "other") {
				t.Errorf("%s %q: err = %v", key, v, err)
			}
		}
	}
}

// TestParse_S3CertPath: cert_path is a CA bundle to verify an endpoint
// with; where is_verify_tls would skip the verification (an endpoint of
// the user's, host, with is_verify_tls false, PGHoard's default) the
// configuration is refused, as PGHoard refuses it (rohmu's "cert_path is
// set but is_verify_tls is False"), rather than connect unverified.
func TestParse_S3CertPath(t *testing.T) {
	for _, tc := range []struct {
		name, storage string
	}{
		{"OKVerify", `"host": "minio", "port": 9000, "is_secure": true, "is_verify_tls": true`},
		{"OKAWS", `"is_verify_tls": false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("hoard.json", []byte(siteJSON(`"object_storage": {"storage_type": "s3", "region": "r", "bucket_name": "b", "cert_path": "/etc/ca.pem", `+tc.storage+`}`)), nil)
			if err != nil {
				t.Fatal(err)
			}
			sc := c.BackupSites["s1"].ObjectStorage.StorageConfig()
			if sc.CertPath != "/etc/ca.pem" || (sc.IsVerifyTLS != nil && !*sc.IsVerifyTLS) {
				t.Errorf("storage config cert_path %q, is_verify_tls %v: want the bundle, verified", sc.CertPath, sc.IsVerifyTLS)
			}
		})
	}
}
