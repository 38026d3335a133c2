package archive

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// Format values of the "format" metadata key (pghoard-format.md c.3).
const (
	FormatBBv1    = "pghoard-bb-v1"
	FormatBBv2    = "pghoard-bb-v2"
	FormatDeltaV1 = "pghoard-delta-v1"
	FormatDeltaV2 = "pghoard-delta-v2"
)

// Metadata keys of a backup's main object. The first group is PGHoard's;
// the "hoard-" group is hoard's addition, ignored by PGHoard's readers.
const (
	MetaFormat               = "format"
	MetaStartWALSegment      = "start-wal-segment"
	MetaStartTime            = "start-time"
	MetaEndWALSegment        = "end-wal-segment"
	MetaEndTime              = "end-time"
	MetaTotalSizePlain       = "total-size-plain"
	MetaTotalSizeEnc         = "total-size-enc"
	MetaActiveBackupMode     = "active-backup-mode"
	MetaBasebackupMode       = "basebackup-mode"
	MetaBackupDecisionTime   = "backup-decision-time"
	MetaBackupReason         = "backup-reason"
	MetaNormalizedBackupTime = "normalized-backup-time"
	MetaSite                 = "site"
	MetaPGVersion            = "pg-version"
	MetaHost                 = "host"
	MetaOriginalFileSize     = "original-file-size"
	MetaCompressionAlgorithm = "compression-algorithm"
	MetaEncryptionKeyID      = "encryption-key-id"
	MetaHash                 = "hash"
	MetaHashAlgorithm        = "hash-algorithm"

	MetaStartLSN       = "hoard-start-lsn"
	MetaEndLSN         = "hoard-end-lsn"
	MetaStartTimeline  = "hoard-start-timeline"
	MetaEndTimeline    = "hoard-end-timeline"
	MetaSystemID       = "hoard-system-identifier"
	MetaWALSegmentSize = "hoard-wal-segment-size"
	MetaChunkCount     = "hoard-chunk-count"
	MetaPGManifest     = "hoard-pg-manifest" // "true" when PostgreSQL's backup_manifest is in the control tar
	MetaEndXmin        = "hoard-end-xmin"
	MetaEndXmax        = "hoard-end-xmax"
	// MetaParent names the backup a PostgreSQL 17+ incremental backup
	// was taken against; absent for a full backup.
	MetaParent = "hoard-incremental-parent"
)

// BackupInfo is what hoard knows of a stored basebackup, read from (and
// written to) the main object's metadata.
type BackupInfo struct {
	Name string // backup name without the control suffix, e.g. 2024-01-01_10-00_0
	Key  string // key of the main object

	Format          string
	StartWALSegment string
	EndWALSegment   string
	StartTime       time.Time
	EndTime         time.Time // zero when unknown
	StartLSN        pglogrepl.LSN
	EndLSN          pglogrepl.LSN
	StartTimeline   uint32
	EndTimeline     uint32
	SystemID        string
	WALSegmentSize  uint64 // 0 when not recorded (PGHoard backups: see LearnedSegmentSize)
	// LearnedSegmentSize is, for a backup that records no segment size
	// (PGHoard's), the size the first page of a segment in its site's
	// archive declares (ScanBackups, SiteSegmentSize); 0 when not learned.
	LearnedSegmentSize uint64
	PGVersion          int // server_version_num, e.g. 150004
	TotalSizePlain     int64
	TotalSizeEnc       int64
	StoredSize         int64 // size of the main object itself
	ChunkCount         int
	// PGManifest is true when PostgreSQL's backup_manifest is in the
	// control tar.
	PGManifest bool
	// EndXmin and EndXmax are the transaction snapshot taken right after
	// the backup ended (txid_current_snapshot()), 0 when not recorded:
	// restore uses them to choose a backup for an xid target. xmax is one
	// past the newest completed xid (latestCompletedXid + 1), not the next
	// xid to be assigned: transactions at or above it may already have
	// been running, but none had completed.
	EndXmin, EndXmax uint64
	// Parent is the name of the backup this one is an incremental of
	// (PostgreSQL 17+ INCREMENTAL); "" for a full backup. Restoring it
	// needs every backup of the chain down to a full one.
	Parent string

	Site             string
	Host             string
	ActiveBackupMode string
	BasebackupMode   string
	BackupReason     string // scheduled | requested
	DecisionTime     time.Time
	NormalizedTime   time.Time

	Metadata storage.Metadata // everything, as stored

	// Auth says whether the metadata authenticates (backupauth.go), set
	// by Archive.ScanBackups; AuthNone elsewhere.
	Auth BackupAuth
	// KeyMissing, set with Auth, is the key id an AuthInvalid backup's
	// HMAC names when the codec holds no public key for it (a key rotated
	// out of the configuration): its metadata cannot be checked, which is
	// the configuration's to fix, not a sign that it was altered.
	KeyMissing string `json:"-"`

	// Archive is the archive whose store holds the backup, set by
	// Archive.ListAllBackups (nil otherwise: the archive listing it). It is
	// never marshalled.
	Archive *Archive `json:"-"`
}

// SegmentSize returns the backup's WAL segment size: the one it records,
// else the one learned from its site's WAL, else 16 MiB (a site with no
// readable segment: no WAL to read at any size).
func (b *BackupInfo) SegmentSize() uint64 {
	switch {
	case b.WALSegmentSize != 0:
		return b.WALSegmentSize
	case b.LearnedSegmentSize != 0:
		return b.LearnedSegmentSize
	}
	return DefaultSegmentSize
}

// OneTar reports whether the backup is held in its main object alone, one
// tar: a pg_basebackup tar (PGHoard's basic and pipe modes, no format) or
// PGHoard's legacy pghoard-bb-v1.
func (b *BackupInfo) OneTar() bool {
	return b.Format == "" || b.Format == FormatBBv1
}

// ErrNoStartSegment is returned (wrapped) for a backup that records
// neither its start segment nor its start LSN.
var ErrNoStartSegment = errors.New("backup records no start WAL segment")

// StartSegment returns the segment holding the backup's start: its
// start-wal-segment or, failing that, the one holding hoard's start LSN on
// the start timeline.
func (b *BackupInfo) StartSegment() (wal.Segment, error) {
	segSize := b.SegmentSize()
	if b.StartWALSegment != "" {
		s, err := wal.ParseSegmentName(b.StartWALSegment, segSize)
		if err != nil {
			return s, fmt.Errorf("backup %s: start segment: %w", b.Name, err)
		}
		return s, nil
	}
	if b.StartLSN != 0 && b.StartTimeline != 0 {
		return wal.SegmentOf(b.StartTimeline, b.StartLSN, segSize), nil
	}
	return wal.Segment{}, fmt.Errorf("backup %s: %w", b.Name, ErrNoStartSegment)
}

// ToMetadata returns the main object's metadata for b. Zero values are left
// out, as rohmu drops null values.
func (b *BackupInfo) ToMetadata() storage.Metadata {
	md := storage.Metadata{}
	set := func(k, v string) {
		if v != "" {
			md[k] = v
		}
	}
	setTime := func(k string, t time.Time, format func(time.Time) string) {
		if !t.IsZero() {
			md[k] = format(t)
		}
	}
	set(MetaFormat, b.Format)
	set(MetaStartWALSegment, b.StartWALSegment)
	set(MetaEndWALSegment, b.EndWALSegment)
	// PGHoard's forms: end-time is str() of the server's now(), the others
	// datetime.isoformat(). normalized-backup-time is compared as a string
	// by PGHoard's scheduler, so its form matters.
	setTime(MetaStartTime, b.StartTime, ISOTime)
	setTime(MetaEndTime, b.EndTime, strTime)
	setTime(MetaBackupDecisionTime, b.DecisionTime, ISOTime)
	setTime(MetaNormalizedBackupTime, b.NormalizedTime, ISOTime)
	if b.StartLSN != 0 {
		md[MetaStartLSN] = b.StartLSN.String()
	}
	if b.EndLSN != 0 {
		md[MetaEndLSN] = b.EndLSN.String()
	}
	setNumber(md, MetaStartTimeline, int64(b.StartTimeline))
	setNumber(md, MetaEndTimeline, int64(b.EndTimeline))
	set(MetaSystemID, b.SystemID)
	setNumber(md, MetaWALSegmentSize, int64(b.WALSegmentSize))
	setNumber(md, MetaPGVersion, int64(b.PGVersion))
	md[MetaTotalSizePlain] = strconv.FormatInt(b.TotalSizePlain, 10)
	md[MetaTotalSizeEnc] = strconv.FormatInt(b.TotalSizeEnc, 10)
	setNumber(md, MetaChunkCount, int64(b.ChunkCount))
	if b.PGManifest {
		md[MetaPGManifest] = "true"
	}
	setNumber(md, MetaEndXmin, b.EndXmin)
	setNumber(md, MetaEndXmax, b.EndXmax)
	set(MetaParent, b.Parent)
	set(MetaSite, b.Site)
	set(MetaHost, b.Host)
	set(MetaActiveBackupMode, b.ActiveBackupMode)
	set(MetaBasebackupMode, b.BasebackupMode)
	set(MetaBackupReason, b.BackupReason)
	return md
}

// setNumber sets md[k] to v in decimal, unless v is zero (rohmu drops
// null values).
func setNumber[T int64 | uint64](md storage.Metadata, k string, v T) {
	if v != 0 {
		md[k] = fmt.Sprint(v)
	}
}

// ParseBackupInfo reads a backup's main object metadata. key is the object's
// key, size its stored size. Fields PGHoard does not write (LSNs, timeline
// ends) are derived from the WAL segment names when absent.
func ParseBackupInfo(key string, size int64, md storage.Metadata) (*BackupInfo, error) {
	return parseBackupInfo(key, size, md, 0)
}

// parseBackupInfo is ParseBackupInfo where learned (0: not known) is the
// segment size of the site's WAL, for a backup that records none.
func parseBackupInfo(key string, size int64, md storage.Metadata, learned uint64) (*BackupInfo, error) {
	b := &BackupInfo{
		Name:             BackupName(key),
		Key:              key,
		Format:           md[MetaFormat],
		StartWALSegment:  md[MetaStartWALSegment],
		EndWALSegment:    md[MetaEndWALSegment],
		SystemID:         md[MetaSystemID],
		StoredSize:       size,
		Site:             md[MetaSite],
		Host:             md[MetaHost],
		ActiveBackupMode: md[MetaActiveBackupMode],
		BasebackupMode:   md[MetaBasebackupMode],
		BackupReason:     md[MetaBackupReason],
		PGManifest:       md[MetaPGManifest] == "true",
		Parent:           md[MetaParent],
		Metadata:         md,
	}
	var err error
	fail := func(k string, e error) (*BackupInfo, error) {
		return nil, fmt.Errorf("backup %s: metadata %s=%q: %w", key, k, md[k], e)
	}
	if b.StartTime, err = parseOptionalTime(md[MetaStartTime]); err != nil {
		return fail(MetaStartTime, err)
	}
	if b.EndTime, err = parseOptionalTime(md[MetaEndTime]); err != nil {
		return fail(MetaEndTime, err)
	}
	if b.DecisionTime, err = parseOptionalTime(md[MetaBackupDecisionTime]); err != nil {
		return fail(MetaBackupDecisionTime, err)
	}
	if b.NormalizedTime, err = parseOptionalTime(md[MetaNormalizedBackupTime]); err != nil {
		return fail(MetaNormalizedBackupTime, err)
	}
	for _, f := range []struct {
		key string
		dst *pglogrepl.LSN
	}{{MetaStartLSN, &b.StartLSN}, {MetaEndLSN, &b.EndLSN}} {
		if v := md[f.key]; v != "" {
			if *f.dst, err = pglogrepl.ParseLSN(v); err != nil {
				return fail(f.key, err)
			}
		}
	}
	ints := []struct {
		key string
		set func(int64)
	}{
		{MetaStartTimeline, func(v int64) { b.StartTimeline = uint32(v) }},
		{MetaEndTimeline, func(v int64) { b.EndTimeline = uint32(v) }},
		{MetaWALSegmentSize, func(v int64) { b.WALSegmentSize = uint64(v) }},
		{MetaPGVersion, func(v int64) { b.PGVersion = int(v) }},
		{MetaTotalSizePlain, func(v int64) { b.TotalSizePlain = v }},
		{MetaTotalSizeEnc, func(v int64) { b.TotalSizeEnc = v }},
		{MetaChunkCount, func(v int64) { b.ChunkCount = int(v) }},
		{MetaEndXmin, func(v int64) { b.EndXmin = uint64(v) }},
		{MetaEndXmax, func(v int64) { b.EndXmax = uint64(v) }},
	}
	for _, f := range ints {
		if v := md[f.key]; v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return fail(f.key, fmt.Errorf("not a non-negative integer"))
			}
			f.set(n)
		}
	}
	if b.OneTar() && b.TotalSizePlain == 0 && md[MetaTotalSizePlain] == "" {
		// One tar (PGHoard's basic and pipe modes, or its legacy
		// pghoard-bb-v1), which records its length only as the object's
		// original-file-size.
		if n, err := strconv.ParseInt(md[MetaOriginalFileSize], 10, 64); err == nil && n >= 0 {
			b.TotalSizePlain = n
		}
	}
	if b.WALSegmentSize == 0 {
		b.LearnedSegmentSize = learned
	}
	seg := b.SegmentSize()
	if b.StartWALSegment != "" {
		s, err := wal.ParseSegmentName(b.StartWALSegment, seg)
		if err != nil {
			return fail(MetaStartWALSegment, err)
		}
		if b.StartTimeline == 0 {
			b.StartTimeline = s.Timeline
		}
		if b.StartLSN == 0 {
			b.StartLSN = s.StartLSN(seg)
		}
	}
	if b.EndWALSegment != "" {
		s, err := wal.ParseSegmentName(b.EndWALSegment, seg)
		if err != nil {
			return fail(MetaEndWALSegment, err)
		}
		if b.EndTimeline == 0 {
			b.EndTimeline = s.Timeline
		}
	}
	if b.BackupReason == "" {
		b.BackupReason = "scheduled"
	}
	return b, nil
}

// SortBackups orders backups oldest first by start time, then name.
func SortBackups(bs []*BackupInfo) {
	sort.Slice(bs, func(i, j int) bool {
		if !bs[i].StartTime.Equal(bs[j].StartTime) {
			return bs[i].StartTime.Before(bs[j].StartTime)
		}
		return bs[i].Name < bs[j].Name
	})
}

// ISOTime renders t in UTC as Python's datetime.isoformat() does, the form
// of PGHoard's times: 2024-01-02T03:04:05+00:00, with six digits of
// microseconds only when they are not zero (2024-01-02T03:04:05.123456+00:00).
// Nanoseconds are dropped, as a Python datetime has none.
func ISOTime(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02T15:04:05+00:00")
	}
	return t.Format("2006-01-02T15:04:05.000000+00:00")
}

// strTime renders t as Python's str(datetime): ISOTime with a space
// instead of the "T" (2024-01-02 03:04:05.123456+00:00), the form of
// PGHoard's end-time.
func strTime(t time.Time) string {
	return strings.Replace(ISOTime(t), "T", " ", 1)
}

// ParseTime parses the time forms PGHoard writes: ISO 8601 with "T" or a
// space between date and time, with or without seconds and fractional
// seconds, with "Z" or a ±HH:MM (or ±HHMM, ±HH) offset. A time without an
// offset is UTC.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time")
	}
	norm := strings.Replace(s, " ", "T", 1)
	layouts := []string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02T15:04:05.999999999Z07",
		"2006-01-02T15:04:05.999999999",
		"2006-01-02T15:04Z07:00",
		"2006-01-02T15:04Z0700",
		"2006-01-02T15:04Z07",
		"2006-01-02T15:04",
		"2006-01-02",
	}
	for _, l := range layouts {
		if t, err := time.Parse(l, norm); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("parse time %q: not an ISO 8601 time", s)
}

func parseOptionalTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return ParseTime(s)
}
