package basebackup

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
)

// Defaults of Options.
const (
	DefaultChunkSize        = 2 << 30 // PGHoard's basebackup_chunk_size
	DefaultLabel            = "hoard basebackup"
	DefaultProgressInterval = time.Second
	// cleanupTimeout bounds the deletion of the chunks of a failed backup.
	cleanupTimeout = 2 * time.Minute
	// minServerVersion is the first version with backup manifests.
	minServerVersion = 130000
)

// MetaSource is the metadata key saying how the cluster was read:
// SourceDataDirectory or SourceBaseBackup.
const MetaSource = "hoard-source"

// MetaChecksumFailures is the metadata key of the number of data pages
// whose checksum failed when a local-tar backup read them (0 when all
// passed; absent when hoard did not verify them), or that the server
// counted in a BASE_BACKUP it ended with XX001 after sending all of it
// (absent when it did not).
//
// In a site with keys it is signed with archive.MetaChecksumFailuresMAC.
const MetaChecksumFailures = archive.MetaChecksumFailures

// Values of MetaSource.
const (
	SourceDataDirectory = "data-directory" // local-tar: hoard read the files
	SourceBaseBackup    = "base-backup"    // the server sent them (BASE_BACKUP)
)

// Mode chooses how Run reads the cluster.
type Mode int

const (
	// ModeAuto reads the data directory (ModeLocal) when Options.PGData
	// is set and readable here, else uses BASE_BACKUP (ModeStream). It
	// also gives way to BASE_BACKUP, with a warning, when the directory
	// is another cluster's or the role may not run pg_backup_start.
	ModeAuto Mode = iota
	// ModeLocal is PGHoard's local-tar: pg_backup_start and
	// pg_backup_stop over an SQL connection around a pool of workers that
	// read Options.PGData and the tablespaces and store the chunks.
	ModeLocal
	// ModeStream is BASE_BACKUP over a replication connection.
	ModeStream
	// ModeDelta is PGHoard's delta mode: ModeLocal, but the files of
	// Options.DeltaMinFileSize bytes or more are stored once each as
	// basebackup_delta/<digest>, shared by every backup holding the same
	// bytes (see copyDelta). The format is pghoard-delta-v2.
	ModeDelta
)

// Backup reasons (backup-reason metadata).
const (
	ReasonScheduled = "scheduled"
	ReasonRequested = "requested"
)

// Options configure Run.
type Options struct {
	// ConnString is a libpq connection string or URI for the server (PG*
	// variables fill in the rest). Run adds replication=true itself for the
	// replication connection and opens a second, ordinary one for SQL.
	ConnString string
	Archive    *archive.Archive

	Label   string // BASE_BACKUP label; "" means DefaultLabel
	Fast    bool   // immediate checkpoint instead of a spread one
	MaxRate int    // server send rate limit in kB/s (32 to 1048576); 0 is unlimited
	NoWait  bool   // do not wait for the backup's WAL to be archived
	// WALTimeout bounds the wait, after a backup of a standby is stored,
	// for the archive to hold its WAL (see waitStandbyWAL); 0 means
	// DefaultWALTimeout.
	WALTimeout time.Duration
	// NoStandbyWait skips that wait, with a log line naming the WAL the
	// backup needs: the daemon, which retries a failed backup, would
	// take a backup again and again while its primary is idle.
	NoStandbyWait bool
	// OnStandby, when set, is called after a backup of a standby is
	// stored, before the wait (or the log line of NoStandbyWait): the
	// daemon, which streams WAL from the standby, then stores the
	// backup's WAL itself.
	OnStandby  func(*archive.BackupInfo)
	NoEstimate bool // skip BASE_BACKUP's PROGRESS size estimate: no total, no ETA

	// Mode chooses local-tar or BASE_BACKUP; the zero value is ModeAuto.
	Mode Mode

	// Incremental takes a PostgreSQL 17+ incremental backup over the
	// replication protocol (whatever Mode says, except ModeLocal, which
	// it refuses) against the newest stored backup of the same system
	// and timeline. The server needs summarize_wal = on.
	Incremental bool

	ChunkSize int64 // chunk tar size (basebackup_chunk_size); 0 means DefaultChunkSize
	// DeltaMinFileSize (basebackup_delta_mode_min_delta_file_size; 0:
	// DefaultDeltaMinFileSize) and DeltaChunkSize (its bundles' size,
	// basebackup_delta_mode_chunk_size; 0: ChunkSize) are ModeDelta's.
	DeltaMinFileSize int64
	DeltaChunkSize   int64
	// TempDir is where ModeDelta stages each new delta object, compressed
	// and encrypted, before storing it, and where every backup spools the
	// parts of its control object (the chunks' lists of member names
	// while it runs; at its end PostgreSQL's backup_manifest, the
	// manifest's JSON, the control tar; writeControl)
	// (created if missing; each file is unlinked as soon as it is created,
	// so none outlives its upload or a crash); "" means os.TempDir(). It
	// needs room for Parallel delta objects as stored, each at most one
	// relation segment (1 GiB), and twice the control tar (about 400
	// bytes a file of the cluster).
	TempDir string
	// DeltaHintFile, when set, is where ModeDelta keeps the sizes and
	// modification times of the large files of its last backup, for the
	// next one where the previous backup's manifest cannot be read (a
	// site configured with the public key only): a file that differs is
	// stored in one read instead of being hashed first. It is only a
	// hint, never trusted for what a backup refers to.
	DeltaHintFile string
	// Parallel is the number of chunks in flight: being read,
	// compressed, encrypted and stored at once (local-tar: the workers;
	// BASE_BACKUP: the chunk being written and those still uploading).
	// 0 means the number of CPUs.
	Parallel int
	// CompressionThreads is the number of goroutines compressing each
	// chunk (lz4 and zstd). 0 means automatic: one per CPU for
	// BASE_BACKUP's single stream, one for local-tar, whose workers
	// already compress in parallel.
	CompressionThreads int

	// Recorded in the backup's metadata and manifest.
	Reason           string    // ReasonScheduled or ReasonRequested ("" is requested)
	ActiveBackupMode string    // active_backup_mode
	BasebackupMode   string    // basebackup_mode
	DecisionTime     time.Time // when the backup was decided; zero means when Run began
	NormalizedTime   time.Time // schedule slot; zero when there is none
	PGData           string    // source data directory; "" asks the server (if it may say)
	Host             string    // "" means the codec's Host, else the host name
	Version          string    // hoard's version, for the manifest's pghoard_version

	// Progress, when set, is called every ProgressInterval while data
	// flows, and once more at the end with Done set, from a goroutine Run
	// owns.
	Progress         func(Progress)
	ProgressInterval time.Duration // 0 means DefaultProgressInterval

	Logger zerolog.Logger

	// afterScan, when set, runs after a local-tar backup has listed the
	// files and before it reads them (tests change files there).
	afterScan func()
	// afterBundles, when set, runs after a delta backup stored its
	// bundles and before its delta objects (tests run retention there).
	afterBundles func()
	// beforeStore, when set, runs before a delta backup reads a file
	// again to store it as a new delta object (tests change it there).
	beforeStore func(path string)
	// beforePut, when set, runs after a delta backup staged a file's
	// delta object in tmp and before it stores it (tests change tmp).
	beforePut func(path string, tmp *os.File)
	// storeRead, when set, runs before each read of a file that a delta
	// backup compresses and stores, with the offset about to be read
	// (tests change the file there).
	storeRead func(path string, off int64)
	// retentionWait, when set, runs each time a delta backup finds the
	// marker of a retention run that may be deleting delta objects
	// (tests let that run go on there).
	retentionWait func(key string)
	// deltaMarkerTick, when set, replaces the ticker of every
	// archive.DeltaRunningRefresh at which a delta backup stores its
	// marker again (tests tick it).
	deltaMarkerTick <-chan time.Time
	// beforeControl, when set, runs after a delta backup checked its
	// reused objects again and before it stores its reference list and
	// control object (tests run retention there).
	beforeControl func()
}

// Progress reports how far a running backup is.
type Progress struct {
	Bytes       int64         // bytes read: archive bytes received from the server, or files read
	Total       int64         // the server's size estimate, or the files' size; -1 when unknown
	Rate        float64       // bytes per second since the data began to flow
	Elapsed     time.Duration // since the data began to flow
	Chunks      int           // chunks stored
	StoredBytes int64         // their stored (compressed, encrypted) size
	Done        bool          // the last call: the backup is stored
}

// ETA estimates the time left, and false when it cannot.
func (p Progress) ETA() (time.Duration, bool) {
	if p.Total <= 0 || p.Rate <= 0 {
		return 0, false
	}
	left := p.Total - p.Bytes
	if left < 0 {
		left = 0
	}
	return time.Duration(float64(left) / p.Rate * float64(time.Second)), true
}

// Percent returns Bytes as a percentage of Total (capped at 100), or -1
// when the total is unknown.
func (p Progress) Percent() float64 {
	if p.Total <= 0 {
		return -1
	}
	return min(100, float64(p.Bytes)*100/float64(p.Total))
}

func (o *Options) validate() error {
	if o.Archive == nil || o.Archive.Store == nil || o.Archive.Codec == nil {
		return errors.New("basebackup: no archive")
	}
	if o.ChunkSize < 0 || o.Parallel < 0 || o.MaxRate < 0 || o.WALTimeout < 0 {
		return errors.New("basebackup: negative chunk size, parallelism, rate or WAL timeout")
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.DeltaMinFileSize < 0 || o.DeltaChunkSize < 0 {
		return errors.New("basebackup: negative delta file or bundle size")
	}
	if o.DeltaMinFileSize == 0 {
		o.DeltaMinFileSize = DefaultDeltaMinFileSize
	}
	if o.DeltaChunkSize == 0 {
		o.DeltaChunkSize = o.ChunkSize
	}
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
	if o.Parallel == 0 {
		o.Parallel = runtime.NumCPU()
	}
	if o.CompressionThreads < 0 {
		return errors.New("basebackup: negative compression threads")
	}
	if o.Incremental && (o.Mode == ModeLocal || o.Mode == ModeDelta) {
		return errors.New("basebackup: incremental backups are taken over the replication protocol (BASE_BACKUP), not by reading the data directory (local-tar)")
	}
	if (o.Mode == ModeLocal || o.Mode == ModeDelta) && o.PGData == "" {
		return errors.New("basebackup: local-tar needs the data directory: set pg_data_directory, or basebackup_mode basic to take the backup over the replication protocol")
	}
	if o.Label == "" {
		o.Label = DefaultLabel
	}
	switch o.Reason {
	case "":
		o.Reason = ReasonRequested
	case ReasonScheduled, ReasonRequested:
	default:
		return fmt.Errorf("basebackup: reason %q is neither %s nor %s", o.Reason, ReasonScheduled, ReasonRequested)
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.Host == "" {
		o.Host = o.Archive.Codec.Host
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.Version == "" {
		o.Version = "hoard"
	}
	return nil
}
