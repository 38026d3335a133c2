package config

import (
	"fmt"
	"strings"
	"time"
)

// Site is one entry of backup_sites: a PostgreSQL cluster and where its
// backups go.
type Site struct {
	// Name is the key under backup_sites.
	Name string

	Nodes           []Node // nodes; an empty list becomes one empty node (PG* variables)
	PGDataDirectory string // pg_data_directory
	PGBinDirectory  string // pg_bin_directory (accepted for compatibility)
	Prefix          string // prefix (default <path_prefix>/<site>)
	Active          bool   // active (true); false = read-only site
	// ActiveBackupMode is active_backup_mode: pg_receivexlog (default),
	// walreceiver, archive_command, standalone_hot_backup or basic.
	ActiveBackupMode string
	// Slot is hoard's site-wide default replication slot for nodes that name
	// none ("" = no slot, as PGHoard).
	Slot string

	BasebackupMode               string // basebackup_mode (basic)
	BasebackupChunkSize          int64  // basebackup_chunk_size (2 GiB)
	BasebackupChunksInProgress   int    // basebackup_chunks_in_progress (5)
	BasebackupThreads            int    // basebackup_threads (1)
	BasebackupCompressionThreads int    // basebackup_compression_threads (0)

	BasebackupDeltaModeMinDeltaFileSize int64 // basebackup_delta_mode_min_delta_file_size (10 MiB)
	BasebackupDeltaModeChunkSize        int64 // basebackup_delta_mode_chunk_size (500 MiB)
	BasebackupDeltaModeMaxRetries       int   // basebackup_delta_mode_max_retries (10)

	BasebackupIntervalHours *float64 // basebackup_interval_hours (24; nil = no automatic backups)
	BasebackupHour          *int     // basebackup_hour (unset)
	BasebackupMinute        *int     // basebackup_minute (unset)
	BasebackupCount         *int     // basebackup_count (2; nil = unlimited)
	BasebackupCountMin      int      // basebackup_count_min (2)
	BasebackupAgeDaysMax    *float64 // basebackup_age_days_max (unset)

	EncryptionKeyID string                   // encryption_key_id ("" = no encryption)
	EncryptionKeys  map[string]EncryptionKey // encryption_keys

	ObjectStorage ObjectStorage // object_storage (default: local at backup_location)
	MovedFrom     []string      // moved_from: older site names
	PGVersion     int           // pg_version (server_version_num; 0 = ask the server)

	PGReceiveXLog PGReceiveXLog // pg_receivexlog (disk guard)

	// WALPartialUploadInterval is hoard's wal_partial_upload_interval
	// (seconds): how often the WAL receiver uploads the segment in progress
	// as a .partial object. 0 = never.
	WALPartialUploadInterval time.Duration
	// RestoreTestIntervalHours is hoard's restore_test_interval_hours: how
	// often the daemon does a real test restore (nil = never).
	RestoreTestIntervalHours *float64

	PGBasebackupPath  string // pg_basebackup_path (accepted for compatibility)
	PGReceiveXLogPath string // pg_receivexlog_path (accepted for compatibility)
	StreamCompression bool   // stream_compression: legacy alias for basebackup_mode pipe
}

// PGReceiveXLog is the site's pg_receivexlog disk-space guard.
type PGReceiveXLog struct {
	DiskSpaceCheckInterval time.Duration // disk_space_check_interval (10 s)
	MinDiskFreeBytes       *int64        // min_disk_free_bytes (null = off)
	ResumeMultiplier       float64       // resume_multiplier (1.5)
}

func newSite(name string) *Site {
	interval := 24.0
	count := 2
	return &Site{
		Name:                                name,
		Active:                              true,
		ActiveBackupMode:                    ModePGReceiveXLog,
		BasebackupMode:                      BasebackupBasic,
		BasebackupChunkSize:                 2 << 30,
		BasebackupChunksInProgress:          5,
		BasebackupThreads:                   1,
		BasebackupDeltaModeMinDeltaFileSize: 10 << 20,
		BasebackupDeltaModeChunkSize:        500 << 20,
		BasebackupDeltaModeMaxRetries:       10,
		BasebackupIntervalHours:             &interval,
		BasebackupCount:                     &count,
		BasebackupCountMin:                  2,
		EncryptionKeys:                      map[string]EncryptionKey{},
		PGReceiveXLog:                       PGReceiveXLog{DiskSpaceCheckInterval: 10 * time.Second, ResumeMultiplier: 1.5},
	}
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
func (s *Site) BasebackupInterval() (time.Duration, bool) {
	if s.BasebackupIntervalHours == nil {
		return 0, false
	}
	return hours(*s.BasebackupIntervalHours), true
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
func (s *Site) BasebackupCountMax() (int, bool) {
	if s.BasebackupCount == nil {
		return 0, false
	}
	return *s.BasebackupCount, true
}

// BasebackupMaxAge returns basebackup_age_days_max as a duration, and false
// when it is unset.
func (s *Site) BasebackupMaxAge() (time.Duration, bool) {
	if s.BasebackupAgeDaysMax == nil {
		return 0, false
	}
	return hours(*s.BasebackupAgeDaysMax * 24), true
}

// RestoreTestInterval returns restore_test_interval_hours as a duration, and
// false when scheduled test restores are off.
func (s *Site) RestoreTestInterval() (time.Duration, bool) {
	if s.RestoreTestIntervalHours == nil {
		return 0, false
	}
	return hours(*s.RestoreTestIntervalHours), true
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
	if s.StreamCompression && s.BasebackupMode == BasebackupBasic {
		return BasebackupPipe
	}
	return s.BasebackupMode
}

func hours(h float64) time.Duration {
	return time.Duration(h * float64(time.Hour))
}
