package basebackup

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
)

// Defaults of Options.
const (
	DefaultChunkSize        = 2 << 30 // PGHoard's basebackup_chunk_size
	DefaultParallel         = 2
	DefaultLabel            = "hoard basebackup"
	DefaultProgressInterval = time.Second
	// cleanupTimeout bounds the deletion of the chunks of a failed backup.
	cleanupTimeout = 2 * time.Minute
	// minServerVersion is the first version with backup manifests.
	minServerVersion = 130000
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

	Label      string // BASE_BACKUP label; "" means DefaultLabel
	Fast       bool   // immediate checkpoint instead of a spread one
	MaxRate    int    // server send rate limit in kB/s (32 to 1048576); 0 is unlimited
	NoWait     bool   // do not wait for the server to archive the backup's WAL
	NoEstimate bool   // skip BASE_BACKUP's PROGRESS size estimate: no total, no ETA

	ChunkSize int64 // chunk tar size (basebackup_chunk_size); 0 means DefaultChunkSize
	Parallel  int   // chunks in flight; 0 means DefaultParallel

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
}

// Progress reports how far a running backup is.
type Progress struct {
	Bytes       int64         // archive bytes received from the server
	Total       int64         // the server's size estimate; -1 when unknown
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
	if o.ChunkSize < 0 || o.Parallel < 0 || o.MaxRate < 0 {
		return errors.New("basebackup: negative chunk size, parallelism or rate")
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Parallel == 0 {
		o.Parallel = DefaultParallel
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
