package config

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Site is one entry of backup_sites: a PostgreSQL cluster and where its
// backups go. Its fields hold the keys of siteKeys (schema.go).
type Site struct {
	// Name is the key under backup_sites.
	Name string

	Nodes            []Node // never empty once loaded: one empty node takes PG* variables
	Slot             string // default slot of the nodes that name none ("": the daemon's hoard_<site>)
	PGDataDirectory  string
	PGBinDirectory   string
	Prefix           string
	Active           bool // false = read-only site
	ActiveBackupMode string

	UploadRateLimit   int64 // bytes per second; 0 = unlimited
	DownloadRateLimit int64 // bytes per second; 0 = unlimited

	BasebackupMode                      string
	BasebackupChunkSize                 int64
	BasebackupChunksInProgress          int
	BasebackupThreads                   int
	BasebackupCompressionThreads        int
	BasebackupDeltaModeMinDeltaFileSize int64
	BasebackupDeltaModeChunkSize        int64
	BasebackupDeltaModeMaxRetries       int
	StreamCompression                   bool // PGHoard's legacy alias for basebackup_mode pipe

	BasebackupIntervalHours            *float64 // nil = no scheduled basebackups
	BasebackupIncrementalIntervalHours *float64 // nil = no incremental backups
	BasebackupHour                     *int     // with BasebackupMinute; nil = not anchored
	BasebackupMinute                   *int
	BasebackupCount                    *int // nil = unlimited
	BasebackupCountMin                 int
	BasebackupAgeDaysMax               *float64 // nil = no age limit

	EncryptionKeyID          string // "" = no encryption
	EncryptionKeys           map[string]EncryptionKey
	EncryptionKeysDir        string // key files added to EncryptionKeys at load; "" = none
	UnencryptedObjectsBefore string // RFC 3339; "" = none

	ObjectStorage ObjectStorage
	MovedFrom     []string // older names of the site
	PGVersion     int      // server_version_num; 0 = ask the server

	PGReceiveXLog            PGReceiveXLog
	WALPartialUploadInterval time.Duration // 0 = never
	WALStoredLagAlert        time.Duration // 0 = never
	WALReceiverTimeout       time.Duration
	Synchronous              bool
	WALStoredLagAlertBytes   int64    // 0 = never
	RestoreTestIntervalHours *float64 // nil = never

	PGBasebackupPath  string
	PGReceiveXLogPath string
}

// PGReceiveXLog is the site's pg_receivexlog disk-space guard.
type PGReceiveXLog struct {
	DiskSpaceCheckInterval time.Duration
	MinDiskFreeBytes       *int64 // nil = off
	ResumeMultiplier       float64
}

// Site returns the named site. With name "" it returns the only site, or an
// error listing the sites when there are several.
func (c *Config) Site(name string) (string, *Site, error) {
	names := c.SiteNames()
	if name == "" {
		switch len(names) {
		case 0:
			return "", nil, fmt.Errorf("select site: %w", ErrNoSites)
		case 1:
			return names[0], c.BackupSites[names[0]], nil
		default:
			return "", nil, fmt.Errorf("select site: config has %d sites (%s): pass --site", len(names), strings.Join(names, ", "))
		}
	}
	s, ok := c.BackupSites[name]
	if !ok {
		return "", nil, fmt.Errorf("select site %q: %w (have: %s)", name, ErrUnknownSite, strings.Join(names, ", "))
	}
	return name, s, nil
}

// BasebackupInterval returns the time between scheduled basebackups, and
// false when automatic basebackups are off (basebackup_interval_hours null).
func (s *Site) BasebackupInterval() (time.Duration, bool) { return hours(s.BasebackupIntervalHours, 1) }

// BasebackupIncrementalInterval returns the time between scheduled
// incremental backups, and false when there are none
// (basebackup_incremental_interval_hours null).
func (s *Site) BasebackupIncrementalInterval() (time.Duration, bool) {
	return hours(s.BasebackupIncrementalIntervalHours, 1)
}

// BasebackupAnchor returns basebackup_hour and basebackup_minute, and false
// when the schedule is not anchored to a time of day.
func (s *Site) BasebackupAnchor() (hour, minute int, ok bool) {
	if s.BasebackupHour == nil || s.BasebackupMinute == nil {
		return 0, 0, false
	}
	return *s.BasebackupHour, *s.BasebackupMinute, true
}

// BasebackupCountMax returns basebackup_count, and false when the number of
// kept basebackups is unlimited.
func (s *Site) BasebackupCountMax() (int, bool) { return value(s.BasebackupCount) }

// BasebackupMaxAge returns basebackup_age_days_max as a duration, and false
// when it is unset.
func (s *Site) BasebackupMaxAge() (time.Duration, bool) { return hours(s.BasebackupAgeDaysMax, 24) }

// RestoreTestInterval returns restore_test_interval_hours as a duration, and
// false when scheduled test restores are off.
func (s *Site) RestoreTestInterval() (time.Duration, bool) {
	return hours(s.RestoreTestIntervalHours, 1)
}

// EncryptionKey returns the key new uploads are encrypted with, and false
// when the site does not encrypt.
func (s *Site) EncryptionKey() (string, EncryptionKey, bool) {
	if s.EncryptionKeyID == "" {
		return "", EncryptionKey{}, false
	}
	k, ok := s.EncryptionKeys[s.EncryptionKeyID]
	return s.EncryptionKeyID, k, ok
}

// EffectiveBasebackupMode returns basebackup_mode, honouring PGHoard's legacy
// stream_compression flag (which means pipe) when the mode is the default.
func (s *Site) EffectiveBasebackupMode() string {
	if s.StreamCompression && (s.BasebackupMode == BasebackupBasic || s.BasebackupMode == "") {
		return BasebackupPipe
	}
	return s.BasebackupMode
}

// hours returns *n units of that many hours as a duration, and false when
// n is nil (the key is null). A value past what a Duration holds (about
// 292 years, 2562047 hours) is taken as the longest Duration: converting
// it would give an implementation-defined value (a negative one on amd64),
// and a negative basebackup_interval_hours made every backup older than
// basebackup_age_days_max for retention. PGHoard's timedelta holds such
// values ("basebackup_age_days_max": 999999 is no age limit there too).
func hours(n *float64, unit float64) (time.Duration, bool) {
	h, ok := value(n)
	if d := h * unit * float64(time.Hour); d < float64(math.MaxInt64) {
		return time.Duration(d), ok
	}
	return time.Duration(math.MaxInt64), ok
}

// value returns *p, and false when p is nil (the key is null).
func value[T any](p *T) (T, bool) {
	if p == nil {
		var zero T
		return zero, false
	}
	return *p, true
}
