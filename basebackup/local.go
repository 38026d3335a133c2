package basebackup

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

// sessionCheckInterval is how often a local-tar backup checks that its
// SQL session, which holds the backup open on the server, is alive.
const sessionCheckInterval = time.Second

// localServer is what a local-tar backup asks the server before it starts.
type localServer struct {
	version    int // server_version_num
	segSize    uint64
	blockSize  int
	segBlocks  uint32 // blocks per relation segment file
	checksums  bool   // data_checksums
	inRecovery bool
	systemID   string
	catVersion uint32 // catalog version: names a tablespace's directory
}

// queryServer reads the settings a local-tar backup depends on.
func queryServer(ctx context.Context, sql *pgx.Conn) (localServer, error) {
	var s localServer
	var walSeg, relSeg, checksums string
	err := sql.QueryRow(ctx, `SELECT current_setting('server_version_num')::int,
		current_setting('wal_segment_size'), current_setting('block_size')::int,
		current_setting('segment_size'), current_setting('data_checksums'), pg_is_in_recovery(),
		system_identifier::text, catalog_version_no FROM pg_control_system()`).
		Scan(&s.version, &walSeg, &s.blockSize, &relSeg, &checksums, &s.inRecovery, &s.systemID, &s.catVersion)
	if err != nil {
		return s, fmt.Errorf("basebackup: query server settings: %w", err)
	}
	if s.version < minServerVersion {
		return s, fmt.Errorf("basebackup: server version %d: hoard needs PostgreSQL 13 or later", s.version)
	}
	if s.segSize, err = replication.ParseSize(walSeg); err != nil {
		return s, fmt.Errorf("basebackup: wal_segment_size %q: %w", walSeg, err)
	}
	rs, err := replication.ParseSize(relSeg)
	if err != nil || s.blockSize <= 0 || s.blockSize%512 != 0 || rs%uint64(s.blockSize) != 0 {
		return s, fmt.Errorf("basebackup: segment_size %q with block_size %d: %v", relSeg, s.blockSize, err)
	}
	s.segBlocks = uint32(rs / uint64(s.blockSize))
	s.checksums = checksums == "on"
	return s, nil
}

// controlData is what a local-tar backup reads of a pg_control file.
type controlData struct {
	systemID string
	redo     pglogrepl.LSN
	raw      []byte
}

// readPGControl reads the data directory r's global/pg_control
// (readPGControlFile).
func readPGControl(r *root) (controlData, error) {
	raw, _, err := readPGControlFile(r)
	if err != nil {
		return controlData{}, err
	}
	if len(raw) < wal.ControlRedoOffset+8 {
		return controlData{}, fmt.Errorf("basebackup: %s has only %d bytes", r.path(pgControlPath), len(raw))
	}
	return controlData{
		systemID: strconv.FormatUint(binary.NativeEndian.Uint64(raw[wal.ControlSystemIDOffset:]), 10),
		redo:     pglogrepl.LSN(binary.NativeEndian.Uint64(raw[wal.ControlRedoOffset:])),
		raw:      raw,
	}, nil
}

// pgControlPath is pg_control's path in the data directory.
const pgControlPath = "global/pg_control"

// readPGControlFile reads the data directory r's pg_control, opened
// beneath r as a listed file is (openRegular), read again while its CRC
// fails as PostgreSQL's tools do (wal.ReadControlFileFrom): a pg_control
// that fails its CRC in a backup makes PostgreSQL refuse to start on the
// restored directory. BASE_BACKUP sends a copy taken under the server's
// lock; a local-tar backup reads the file, which the server may be
// rewriting (a checkpoint; on a standby, each time its minimum recovery
// point moves). One of a layout hoard does not know is taken as read.
// It also returns the modification time of the copy read last.
func readPGControlFile(r *root) ([]byte, time.Time, error) {
	var mtime time.Time
	raw, err := wal.ReadControlFileFrom(r.path(pgControlPath), func() (io.ReadCloser, error) {
		f, err := openRegular(r, pgControlPath)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		mtime = st.ModTime()
		return f, nil
	})
	if err != nil {
		return nil, mtime, fmt.Errorf("basebackup: %w", err)
	}
	return raw, mtime, nil
}

// localBackup is one local-tar backup in progress.
type localBackup struct {
	o      Options
	log    zerolog.Logger
	sql    *pgx.Conn
	srv    localServer
	pgdata string
	spc    []tablespace
	// trees are the data directory (first) and the tablespaces
	// (roots), each opened once, the data directory before anything is
	// read from it.
	trees []*root

	name       string
	entries    []entry
	delta      bool         // ModeDelta: see copyDelta
	deltaState *deltaBackup // set while copyDelta runs
	// stopDeltaMarker stops storing the delta backup's marker again
	// (copyDelta); nil until it is stored. Once it returned,
	// deltaMarkedAt is the storage's time of the marker's last write and
	// deltaMarkerErr why the marker may have been lost meanwhile
	// (archive.Archive.KeepDeltaRunning).
	stopDeltaMarker    func()
	deltaMarkedAt      time.Time
	deltaMarkerErr     error
	check              *pageCheck // nil without data checksums
	compressionThreads int

	mu   sync.Mutex
	keys []string // chunks whose upload began

	read        atomic.Int64 // file bytes read
	stored      atomic.Int64 // chunks stored
	storedBytes atomic.Int64
}

// runLocal takes a local-tar backup: it starts the backup over an SQL
// connection held open meanwhile, reads the data directory and the
// tablespaces with a pool of workers that compress, encrypt and store
// chunks in parallel, stops the backup and stores the control object.
// With auto set, a data directory that is not the server's, or a role that
// may not start a backup, returns a *fallbackError before anything is
// stored.
func runLocal(ctx context.Context, o Options, log zerolog.Logger, auto bool) (*archive.BackupInfo, error) {
	fallback := func(err error) error {
		if auto {
			return &fallbackError{err: err}
		}
		return err
	}
	pgdata, err := filepath.Abs(o.PGData)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	// Every path of the data directory is opened beneath this
	// descriptor (openBeneath), whatever is renamed or linked in it
	// meanwhile.
	data := &root{dir: pgdata, prefix: "pgdata/", main: true}
	err = data.open()
	if err == nil {
		err = data.readable()
	}
	defer closeRoots([]*root{data})
	if err != nil {
		return nil, fmt.Errorf("basebackup: local-tar reads pg_data_directory %s: %w (local-tar runs on the database host as a user who may read the data directory; basebackup_mode basic takes the backup over the replication protocol from any host)", pgdata, err)
	}
	sql, err := connectSQL(ctx, o.ConnString)
	if err != nil {
		return nil, err
	}
	// Closing the session ends the backup on the server if it is still
	// running (a non-exclusive backup dies with its session).
	defer sql.Close(context.WithoutCancel(ctx))
	srv, err := queryServer(ctx, sql)
	if err != nil {
		return nil, err
	}
	ctl, err := readPGControl(data)
	if err != nil {
		return nil, err
	}
	if ctl.systemID != srv.systemID {
		return nil, fallback(fmt.Errorf("basebackup: pg_data_directory %s holds the cluster with system identifier %s, but the server is %s: set pg_data_directory to the server's data directory", pgdata, ctl.systemID, srv.systemID))
	}
	spc, err := localTablespaces(ctx, sql, pgdata)
	if err != nil {
		return nil, err
	}
	upload := chunkUploadMemory(o.Archive.Store, o.ChunkSize)
	var extra int64
	if o.Mode == ModeDelta {
		// A worker reading a large file holds deltaPieces read
		// buffers, not one (readFile).
		extra = (deltaPieces - 1) * readBufferSize
	}
	if n := fitParallel(o.Parallel, o.Archive.Codec, max(o.CompressionThreads, 1), upload+extra); n < o.Parallel {
		log.Info().Int("workers", o.Parallel).Int("fit", n).Str("compression", o.Archive.Codec.Compression).
			Int64("upload_buffer_bytes", upload).
			Msg("fewer workers, so that the chunks in flight fit the backup's memory budget")
		o.Parallel = n
	}
	l := &localBackup{o: o, log: log, sql: sql, srv: srv, pgdata: pgdata, spc: spc, compressionThreads: o.CompressionThreads, delta: o.Mode == ModeDelta}
	l.trees = l.roots(data)
	defer closeRoots(l.trees)
	info, err := l.run(ctx, fallback)
	if errors.Is(err, errStillListed) {
		// Its chunks go with it, when someone deletes it.
		return nil, err
	}
	if err != nil {
		l.mu.Lock()
		keys := l.keys
		l.mu.Unlock()
		if l.name != "" {
			// The name's claim last: until it goes, the folder stays
			// used for every later choice of a name.
			keys = append(keys, o.Archive.Layout.NameClaimKey(l.name))
		}
		if cerr := deleteChunks(ctx, o, keys); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	if l.srv.inRecovery {
		return info, afterStandbyBackup(ctx, o, log, info)
	}
	return info, nil
}

// localTablespaces lists the tablespaces and where they are: the targets
// of pg_tblspc's links in the data directory.
func localTablespaces(ctx context.Context, sql *pgx.Conn, pgdata string) ([]tablespace, error) {
	user, err := userTablespaces(ctx, sql)
	if err != nil {
		return nil, err
	}
	var out []tablespace
	for _, ts := range user {
		name := ts.name
		// The name becomes a path component of the chunk members.
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return nil, fmt.Errorf("basebackup: tablespace name %q cannot be stored (PGHoard's format uses it as a directory name)", name)
		}
		link := filepath.Join(pgdata, "pg_tblspc", strconv.FormatUint(uint64(ts.oid), 10))
		loc, err := os.Readlink(link)
		if err != nil {
			return nil, fmt.Errorf("basebackup: tablespace %s: %w", name, err)
		}
		if !filepath.IsAbs(loc) {
			loc = filepath.Join(filepath.Dir(link), loc)
		}
		out = append(out, tablespace{oid: ts.oid, location: loc, name: name})
	}
	return out, nil
}

func (l *localBackup) run(ctx context.Context, fallback func(error) error) (*archive.BackupInfo, error) {
	o := l.o
	start, startTime, err := l.startBackup(ctx)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
			return nil, fallback(err)
		}
		return nil, err
	}
	// pg_backup_start's checkpoint wrote pg_control: a data directory
	// whose checkpoint is older is not the server's (a standby's copy,
	// say), and reading it would make a corrupt backup.
	ctl, err := readPGControl(l.trees[0])
	if err != nil {
		return nil, err
	}
	if ctl.redo < start {
		return nil, fallback(fmt.Errorf("basebackup: pg_data_directory %s is not the server's data directory: its last checkpoint starts at %s, before the backup's start %s", l.pgdata, ctl.redo, start))
	}
	// The start time is recorded to the second, as backup_label's START
	// TIME (PGHoard's start-time); the name counts from the milliseconds.
	if l.name, err = chooseName(ctx, o.Archive, startTime); err != nil {
		return nil, err
	}
	startTime = startTime.Truncate(time.Second)
	log := l.log.With().Str("backup", l.name).Logger()
	l.log = log
	log.Info().Str("lsn", start.String()).Str("source", SourceDataDirectory).Str("pgdata", l.pgdata).Int("workers", o.Parallel).
		Msg("basebackup started")

	// Read the tree.
	began := time.Now()
	sc := &scanner{checksums: l.srv.checksums}
	if err := sc.scan(l.trees); err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	for _, p := range sc.skipped {
		log.Warn().Str("file", p).Msg("special file left out of the backup")
	}
	l.entries = sc.entries
	var total int64
	sizes := newSpcSizes(l.spc)
	for i := range l.entries {
		total += l.entries[i].size
		sizes.add(l.entries[i].name(), l.entries[i].size)
	}
	report := &checksumReport{}
	if l.srv.checksums {
		l.check = &pageCheck{blockSize: l.srv.blockSize, segBlocks: l.srv.segBlocks, start: uint64(start), report: report, log: log}
	}
	if o.afterScan != nil {
		o.afterScan()
	}

	stopProgress := l.reportProgress(began, total)
	var results []*chunkResult
	var dr *deltaResult
	defer func() {
		if l.stopDeltaMarker != nil {
			l.stopDeltaMarker()
		}
	}()
	if l.delta {
		if dr, err = l.copyDelta(ctx, began); err == nil {
			results = dr.bundles
		}
	} else {
		results, err = l.copy(ctx, split(l.entries, o.ChunkSize))
	}
	stopProgress()
	if err != nil {
		return nil, err
	}

	// pg_control goes last, after every data file: with a backup of a
	// standby, its minimum recovery point is where the restore may
	// end (basebackup.c sends it last for the same reason).
	pgControl, ctlTime, err := readPGControlFile(l.trees[0])
	if err != nil {
		return nil, err
	}
	end, label, spcmap, err := l.stopBackup(ctx)
	if err != nil {
		return nil, err
	}
	startTLI, err := labelTimeline(label)
	if err != nil {
		return nil, err
	}
	endTLI := startTLI
	if l.srv.inRecovery {
		// A standby may have followed a new timeline meanwhile; the end
		// position is on the timeline of its minimum recovery point,
		// as BASE_BACKUP's stop timeline is.
		if err := l.sql.QueryRow(ctx, "SELECT min_recovery_end_timeline FROM pg_control_recovery()").Scan(&endTLI); err != nil {
			return nil, fmt.Errorf("basebackup: query end timeline: %w", err)
		}
	}
	xmin, xmax, endTime, err := endSnapshot(ctx, l.sql)
	if err != nil {
		return nil, err
	}

	oc := &outcome{
		name: l.name, source: SourceDataDirectory,
		systemID: l.srv.systemID, version: l.srv.version, segSize: l.srv.segSize, pgdata: l.pgdata,
		start: start, end: end, startTLI: startTLI, endTLI: endTLI,
		startTime: startTime, endTime: endTime, xmin: xmin, xmax: xmax,
		tablespaces: l.spc, spcSizes: sizes,
	}
	if l.check != nil {
		oc.checksums = report
	}
	now := time.Now()
	file := func(name string, data []byte, mtime time.Time) *member {
		return &member{h: newFileHeader(name, mtime), data: data}
	}
	oc.backupLabel = file("backup_label", []byte(label), now)
	if spcmap != "" && !l.delta {
		// A delta backup has none, as PGHoard's backups: PGHoard's
		// restore puts a delta backup's tablespace files under
		// pg_tblspc/<oid>/ in the data directory, which PostgreSQL
		// would fail to replace with the map's links at startup.
		oc.tablespaceMap = file("tablespace_map", []byte(spcmap), now)
	}
	oc.pgControl = &member{h: newFileHeader(pgControlPath, ctlTime), data: pgControl}
	for _, r := range results {
		oc.chunks = append(oc.chunks, archive.ManifestChunk{
			ChunkFilename: r.filename, InputSize: r.input, ResultSize: r.stored.StoredSize,
			HMAC: hex.EncodeToString(r.stored.HMAC),
		})
	}
	// The chunks' names are read off the scan's entries.
	oc.chunkFiles = func(i int, fn func(string) error) error {
		var err error
		for name := range results[i].fileNames {
			if err = fn(name); err != nil {
				break
			}
		}
		return err
	}
	if dr != nil {
		oc.format = archive.FormatDeltaV2
		if oc.deltaManifest, err = deltaManifestJSON(dr.manifest); err != nil {
			return nil, err
		}
		oc.deltaPlain, oc.deltaStored = dr.plain, dr.stored
	}
	// backup_manifest lists the chunks' files, the delta backup's, then
	// those of the control tar, as they are (not copied into one list).
	pgFiles := func(yield func(pgManifestFile) bool) {
		for _, r := range results {
			for f := range r.manifestFiles {
				if !yield(f) {
					return
				}
			}
		}
		if dr != nil {
			for _, f := range dr.pgFiles {
				if !yield(f) {
					return
				}
			}
		}
		for _, m := range []*member{oc.backupLabel, oc.tablespaceMap, oc.pgControl} {
			if m != nil {
				if !yield(pgManifestFile{path: m.h.Name, size: int64(len(m.data)), mtime: m.h.ModTime, crc32c: crc32c(m.data)}) {
					return
				}
			}
		}
	}
	ranges, err := l.walRanges(start, startTLI, end, endTLI)
	if err != nil {
		return nil, err
	}
	if oc.pgManifest, err = newSpool(o.TempDir, "backup_manifest"); err != nil {
		return nil, err
	}
	defer oc.pgManifest.Close()
	if err := pgManifest(oc.pgManifest, l.srv.version, l.srv.systemID, pgFiles, ranges); err != nil {
		return nil, err
	}
	if dr != nil && o.beforeControl != nil {
		o.beforeControl()
	}
	if dr != nil {
		// Retention must have seen this backup's marker all along
		// (archive/deltamark.go): fail rather than list a backup whose
		// reused delta objects a run that did not see it may have
		// deleted since they were checked.
		if err := l.checkDeltaMarker(ctx); err != nil {
			return nil, err
		}
		// The list of the delta objects it refers to, which retention
		// reads where it has only the public key, goes before the
		// control object: a listed backup has its list.
		var digests []string
		for _, h := range dr.manifest.SnapshotResult.Hashes {
			digests = append(digests, h.Hexdigest)
		}
		if err := o.Archive.StoreDeltaRefs(ctx, l.name, digests); err != nil {
			return nil, fmt.Errorf("basebackup: %w", err)
		}
	}
	info, err := storeControl(ctx, o, log, oc)
	if err != nil {
		return nil, err
	}
	if dr != nil {
		// Listed now: retention sees what it refers to. The marker must
		// have stayed until then: someone who removed it between the
		// check above and now may have let a retention run delete a
		// reused delta object before the listing. The backup is listed
		// already (a retention run may count it), so it is not deleted
		// again here: the error says to check it.
		if err := o.Archive.CheckDeltaRunning(ctx, l.name, l.deltaMarkedAt, time.Now()); err != nil {
			return nil, fmt.Errorf("basebackup: backup %s is stored, but %w: run hoard verify --restore before relying on it, and take a new backup: %w",
				l.name, err, errStillListed)
		}
		// A marker left behind (the delete failed) is harmless:
		// retention takes only the folders of unlisted backups for
		// running ones, and CheckBackupSealed does not count it as a
		// chunk.
		if err := o.Archive.UnmarkDeltaRunning(ctx, l.name); err != nil {
			log.Warn().Err(err).Msg("delta backup marker not deleted")
		}
		if o.DeltaHintFile != "" {
			if err := l.writeDeltaHint(dr.manifest); err != nil {
				log.Warn().Err(err).Str("file", o.DeltaHintFile).Msg("delta backup hint not written: the next delta backup without the private key hashes every large file before it stores it")
			}
		}
	}
	if report.blocks > 0 {
		log.Warn().Int64("blocks", report.blocks).Int("files", len(report.files)).
			Msg("the backup holds data pages whose checksums failed: they are damaged in the cluster itself")
	}
	if o.Progress != nil {
		el := time.Since(began)
		n := l.read.Load()
		o.Progress(Progress{Bytes: n, Total: total, Rate: rate(n, el), Elapsed: el,
			Chunks: len(results), StoredBytes: info.TotalSizeEnc, Done: true})
	}
	return info, nil
}

// newFileHeader is the tar header of a control tar file (mode 0600).
func newFileHeader(name string, mtime time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, ModTime: mtime}
}

// roots returns the trees to read: the data directory data, then each
// tablespace's directory of this server's version.
func (l *localBackup) roots(data *root) []*root {
	out := []*root{data}
	versionDir := fmt.Sprintf("PG_%d_%d", l.srv.version/10000, l.srv.catVersion)
	for _, ts := range l.spc {
		out = append(out, &root{
			dir:      ts.location,
			prefix:   "tablespaces/" + ts.name + "/",
			manifest: "pg_tblspc/" + strconv.FormatUint(uint64(ts.oid), 10) + "/",
			only:     versionDir,
		})
	}
	return out
}

// startBackup runs pg_backup_start (pg_start_backup before PostgreSQL 15),
// non-exclusive, and returns the backup's start position and the server's
// clock right after it: the checkpoint is done, as backup_label's START
// TIME says.
func (l *localBackup) startBackup(ctx context.Context) (pglogrepl.LSN, time.Time, error) {
	q := "SELECT pg_backup_start($1, $2)::text, clock_timestamp()"
	if l.srv.version < 150000 {
		q = "SELECT pg_start_backup($1, $2, false)::text, clock_timestamp()"
	}
	var lsn string
	var t time.Time
	if err := l.sql.QueryRow(ctx, q, l.o.Label, l.o.Fast).Scan(&lsn, &t); err != nil {
		return 0, t, fmt.Errorf("basebackup: start the backup: %w", err)
	}
	start, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		return 0, t, fmt.Errorf("basebackup: start position %q: %w", lsn, err)
	}
	return start, t, nil
}

// stopBackup runs pg_backup_stop (pg_stop_backup(false) before 15) and
// returns the end position, backup_label and tablespace_map. Unless
// Options.NoWait, the server waits until the backup's WAL is archived
// when archive_mode is on; never on a standby, where that wait (with
// archive_mode = always) has no end while the primary is idle: Run waits
// there itself, for Options.WALTimeout (waitStandbyWAL).
func (l *localBackup) stopBackup(ctx context.Context) (pglogrepl.LSN, string, string, error) {
	q := "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop($1)"
	if l.srv.version < 150000 {
		q = "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_stop_backup(false, $1)"
	}
	var lsn, label, spcmap string
	if err := l.sql.QueryRow(ctx, q, !l.o.NoWait && !l.srv.inRecovery).Scan(&lsn, &label, &spcmap); err != nil {
		return 0, "", "", fmt.Errorf("basebackup: stop the backup: %w", err)
	}
	end, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		return 0, "", "", fmt.Errorf("basebackup: end position %q: %w", lsn, err)
	}
	return end, label, spcmap, nil
}

// labelTimeline returns backup_label's START TIMELINE.
func labelTimeline(label string) (uint32, error) {
	for _, line := range strings.Split(label, "\n") {
		if v, ok := strings.CutPrefix(line, "START TIMELINE: "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err == nil && n > 0 {
				return uint32(n), nil
			}
		}
	}
	return 0, fmt.Errorf("basebackup: backup_label has no START TIMELINE:\n%s", label)
}

// walRanges returns backup_manifest's WAL-Ranges: the WAL from start to
// end across the timelines between (AddWALInfoToBackupManifest), newest
// first, read from the end timeline's history file in pg_wal.
func (l *localBackup) walRanges(start pglogrepl.LSN, startTLI uint32, end pglogrepl.LSN, endTLI uint32) ([]walRange, error) {
	if startTLI == endTLI {
		return []walRange{{tli: startTLI, start: start, end: end}}, nil
	}
	hist := fmt.Sprintf("%08X.history", endTLI)
	name := filepath.Join(l.pgdata, "pg_wal", hist)
	data, err := l.readHistory(hist)
	if err != nil {
		return nil, fmt.Errorf("basebackup: timeline history: %w", err)
	}
	h, err := wal.ParseHistory(endTLI, data)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %s: %w", name, err)
	}
	var out []walRange
	for i := len(h) - 1; i >= 0; i-- {
		e := h[i]
		if i+1 < len(h) && h[i+1].Begin < start {
			continue // ended before the backup began
		}
		from := e.Begin
		if e.Timeline == startTLI {
			from = start
		}
		out = append(out, walRange{tli: e.Timeline, start: from, end: end})
		if e.Timeline == startTLI {
			return out, nil
		}
		end = e.Begin
	}
	return nil, fmt.Errorf("basebackup: start timeline %d is not in the history of timeline %d", startTLI, endTLI)
}

// readHistory reads the history file name in the data directory's
// pg_wal. pg_wal is followed where it is a link (initdb --waldir, as
// PostgreSQL follows it; the link is the database's, as a tablespace's
// is), the file beneath it as a listed file (openRegular).
func (l *localBackup) readHistory(name string) ([]byte, error) {
	fd, err := unix.Openat(int(l.trees[0].fd.Fd()), "pg_wal", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(l.pgdata, "pg_wal"), Err: err}
	}
	walDir := &root{dir: filepath.Join(l.pgdata, "pg_wal"), fd: os.NewFile(uintptr(fd), filepath.Join(l.pgdata, "pg_wal"))}
	defer closeRoots([]*root{walDir})
	f, err := openRegular(walDir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// copy writes the chunks with o.Parallel workers, the largest chunks
// first so that the last ones to finish are small, while a watcher checks
// that the SQL session holding the backup lives. It returns the chunks in
// their order.
func (l *localBackup) copy(ctx context.Context, plans []chunkPlan) ([]*chunkResult, error) {
	order := make([]int, len(plans))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case plans[a].size > plans[b].size:
			return -1
		case plans[a].size < plans[b].size:
			return 1
		}
		return 0
	})
	return runWorkers(ctx, l, len(plans), order, func(ctx context.Context, w *worker, i int) (*chunkResult, error) {
		return w.writeChunk(ctx, plans[i])
	})
}

// runWorkers runs do for each index in order (0 to n-1 when order is nil)
// on l.o.Parallel workers, while a watcher checks that the SQL session
// holding the backup lives, and returns do's results by index.
func runWorkers[R any](ctx context.Context, l *localBackup, n int, order []int, do func(ctx context.Context, w *worker, i int) (R, error)) ([]R, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopWatch := l.watchSession(ctx, cancel)
	defer stopWatch()
	if order == nil {
		order = make([]int, n)
		for i := range order {
			order[i] = i
		}
	}
	jobs := make(chan int)
	results := make([]R, n)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(jobs)
		for _, i := range order {
			select {
			case jobs <- i:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	for range min(l.o.Parallel, max(n, 1)) {
		w := &worker{l: l, buf: make([]byte, readBufferSize)}
		g.Go(func() error {
			for i := range jobs {
				r, err := do(gctx, w, i)
				if err != nil {
					return err
				}
				results[i] = r
			}
			return nil
		})
	}
	err := g.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		// The session died: that is the story, not the canceled reads.
		return nil, cause
	}
	if err != nil {
		if cerr := context.Cause(gctx); cerr != nil && err != cerr && errors.Is(err, context.Canceled) {
			err = cerr
		}
		return nil, err
	}
	return results, nil
}

// errSessionLost is the cause of a backup canceled because its SQL session
// ended.
var errSessionLost = errors.New("the SQL session holding the backup ended, and the server aborted the backup with it")

// watchSession pings the SQL session every sessionCheckInterval until the
// returned func is called, and cancels the copy when the session is gone:
// the server has aborted the backup, so what is being read would never be
// restorable.
func (l *localBackup) watchSession(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(sessionCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				pctx, pcancel := context.WithTimeout(ctx, 30*sessionCheckInterval)
				err := l.sql.Ping(pctx)
				pcancel()
				if err != nil && ctx.Err() == nil {
					cancel(fmt.Errorf("basebackup: %w: %w", errSessionLost, err))
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// began records a chunk whose upload began, for the cleanup of a failed
// backup.
func (l *localBackup) began(key string) {
	l.mu.Lock()
	l.keys = append(l.keys, key)
	l.mu.Unlock()
}

// chunkStored counts a stored chunk for the progress reports.
func (l *localBackup) chunkStored(size int64) {
	l.stored.Add(1)
	l.storedBytes.Add(size)
}

// reportProgress calls o.Progress every o.ProgressInterval until the
// returned func is called.
func (l *localBackup) reportProgress(began time.Time, total int64) (stop func()) {
	return progressLoop(l.o, func() Progress {
		n := l.read.Load()
		el := time.Since(began)
		return Progress{Bytes: n, Total: total, Rate: rate(n, el), Elapsed: el,
			Chunks: int(l.stored.Load()), StoredBytes: l.storedBytes.Load()}
	})
}

// crc32c returns the CRC-32C of data, as backup_manifest records it.
func crc32c(data []byte) uint32 { return crc32.Update(0, castagnoli, data) }
