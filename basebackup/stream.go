package basebackup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
)

// server is what Run learns of the server before the backup.
type server struct {
	system  replication.System
	version int // server_version_num
	segSize uint64
	pgdata  string
	// inRecovery: the server is a standby (see waitStandbyWAL).
	inRecovery bool
	// sql is the server of the backup's first SQL session, the one of
	// the replication connection (identify): a new session must reach
	// it too (checkNewSession).
	sql sqlServer
}

// runStream takes the backup over the replication protocol: BASE_BACKUP's
// tar streams re-packed into chunks as they arrive.
func runStream(ctx context.Context, o Options, log zerolog.Logger) (*archive.BackupInfo, error) {
	sql, err := connectSQL(ctx, o.ConnString)
	if err != nil {
		return nil, err
	}
	defer sql.Close(context.WithoutCancel(ctx))
	// In English, the server's warnings name the damaged files
	// (serverChecksums).
	connect := replication.Connect
	if mayAskEnglish(ctx, sql, log) {
		connect = replication.ConnectEnglish
	}
	repl, err := connect(ctx, o.ConnString)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	if err := repl.EnglishRefused(); err != nil {
		log.Debug().Err(err).Msg("server refused lc_messages=C: its warnings about damaged data pages will not name the files " +
			"unless its lc_messages is English (GRANT SET ON PARAMETER lc_messages TO the role, PostgreSQL 15+)")
	}
	defer repl.Close(context.WithoutCancel(ctx))
	srv, err := identify(ctx, repl, sql, o.PGData)
	if err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g, gctx := errgroup.WithContext(runCtx)
	r := &run{o: o, log: log, srv: srv, sql: sql}
	defer func() {
		r.pgManifest.Close()
		r.ck.close()
		for _, c := range r.opened {
			c.Close(context.WithoutCancel(ctx))
		}
	}()
	info, err := r.backup(runCtx, gctx, g, repl)
	if err != nil {
		cancel(err)
		_ = g.Wait()
		if r.ra != nil {
			// Canceling closed the connection: the read-ahead's
			// Read returns, and the connection is free to close.
			r.ra.close()
			<-r.ra.gone
		}
		if errors.Is(err, errStillListed) {
			// Its objects go with it, when someone deletes it.
			return nil, err
		}
		if r.ck != nil {
			// The name's claim last: until it goes, the folder stays
			// used for every later choice of a name.
			keys := append(r.ck.keys(), o.Archive.Layout.NameClaimKey(r.name))
			if cerr := deleteChunks(ctx, o, keys); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		if cerr := r.unmark(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	if srv.inRecovery {
		return info, afterStandbyBackup(ctx, o, log, info)
	}
	return info, nil
}

// mayAskEnglish reports whether the backup's role may set lc_messages, so
// that its replication connection asks for English messages
// (replication.ConnectEnglish): a superuser, or from PostgreSQL 15 a role
// granted SET ON PARAMETER lc_messages. An ordinary replication role is
// not asked for: the server would refuse it with a FATAL line in its log
// at every backup, which log-watching setups alert on. Such a role's
// backup counts damaged pages but names their files only when the
// server's lc_messages is English (pageFailures); that is logged, at
// debug level, when it is not. A failed query asks nothing.
func mayAskEnglish(ctx context.Context, sql *pgx.Conn, log zerolog.Logger) bool {
	var messages string
	var may bool
	var version int
	err := sql.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version)
	if err == nil {
		q := "SELECT current_setting('lc_messages'), current_setting('is_superuser')::bool"
		if version >= 150000 {
			q = "SELECT current_setting('lc_messages'), has_parameter_privilege('lc_messages', 'SET')"
		}
		err = sql.QueryRow(ctx, q).Scan(&messages, &may)
	}
	if err != nil {
		log.Debug().Err(err).Msg("could not ask whether the role may set lc_messages: the replication connection keeps the server's")
		return false
	}
	if !may && !englishMessages(messages) {
		log.Debug().Str("lc_messages", messages).Msg("the role may not set lc_messages: the server's warnings about damaged data pages " +
			"will not name the files (GRANT SET ON PARAMETER lc_messages TO the role, PostgreSQL 15+)")
	}
	return may
}

// englishMessages reports whether lc_messages names English or no
// translation: C, POSIX, C.UTF-8, en_US.UTF-8, English_United States.1252,
// or empty (the environment's, C under a service manager).
func englishMessages(lc string) bool {
	l := strings.ToLower(lc)
	return l == "" || l == "posix" || l == "c" || strings.HasPrefix(l, "c.") ||
		l == "en" || strings.HasPrefix(l, "en_") || strings.HasPrefix(l, "en.") || strings.HasPrefix(l, "english")
}

// identify asks the server who it is: system identifier and timeline,
// version, WAL segment size and data directory.
func identify(ctx context.Context, repl *replication.Conn, sql *pgx.Conn, pgdata string) (server, error) {
	var s server
	var err error
	if s.system, err = repl.IdentifySystem(ctx); err != nil {
		return s, fmt.Errorf("basebackup: %w", err)
	}
	if s.segSize, err = repl.WALSegmentSize(ctx); err != nil {
		return s, fmt.Errorf("basebackup: %w", err)
	}
	if err := sql.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&s.version); err != nil {
		return s, fmt.Errorf("basebackup: query server version: %w", err)
	}
	if s.sql, err = querySQLServer(ctx, sql); err != nil {
		return s, fmt.Errorf("basebackup: query server identity: %w", err)
	}
	s.inRecovery = s.sql.inRecovery
	if s.sql.systemID != s.system.SystemID {
		// The connection string names several hosts, or a name that
		// moved between the two connections.
		return s, fmt.Errorf("basebackup: the SQL session reached another server (system identifier %s) than the replication connection "+
			"(system identifier %s): the connection string names several hosts or a name that moved to another server", s.sql.systemID, s.system.SystemID)
	}
	if s.version < minServerVersion {
		return s, fmt.Errorf("basebackup: server version %d: hoard needs PostgreSQL 13 or later (backup manifests)", s.version)
	}
	s.pgdata = pgdata
	if s.pgdata == "" {
		// pg_settings hides data_directory from roles without
		// pg_read_all_settings: then the manifest records no path.
		err := sql.QueryRow(ctx, "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'data_directory'), '')").Scan(&s.pgdata)
		if err != nil {
			return s, fmt.Errorf("basebackup: query data directory: %w", err)
		}
	}
	return s, nil
}

// run is one backup in progress.
type run struct {
	o   Options
	log zerolog.Logger
	srv server
	sql *pgx.Conn
	// opened holds the SQL sessions onSQL opened in place of a closed
	// one, which the run closes at its end.
	opened []*pgx.Conn

	name string   // the backup's, claimed; "" until it is chosen
	ck   *chunker // nil until the name is chosen
	// marker is the key of an incremental backup's marker of its
	// parent (archive.MarkIncrementalParent), deleted if it fails; ""
	// for a full backup.
	marker string
	// ra reads the archive being re-chunked; after a failure its
	// goroutine may still be in the stream's Read until the backup's
	// context is canceled.
	ra *readAhead

	pgControl, backupLabel, tablespaceMap *member
	pgManifest                            *spool   // closed by runStream
	sizes                                 spcSizes // nil until the tablespaces are known
}

// backup runs BASE_BACKUP and stores the chunks and the control object.
// Uploads run under g, whose context gctx ends when g.Wait returns; ctx
// is the one the control object is stored under.
func (r *run) backup(ctx, gctx context.Context, g *errgroup.Group, repl *replication.Conn) (*archive.BackupInfo, error) {
	o := r.o
	// tablespace_map only when the cluster has tablespaces, as
	// pg_basebackup does: PGHoard's backups have none, and the server's
	// backup_manifest lists the map whenever it is asked for. A tablespace
	// created after this check is still restored, from the manifest's
	// tablespaces.
	user, err := userTablespaces(gctx, r.sql)
	if err != nil {
		return nil, err
	}
	hasTablespaces := len(user) > 0
	var parent *parentBackup
	stopMarker := func() {}
	if o.Incremental {
		var err error
		if parent, err = r.prepareIncremental(gctx, repl); err != nil {
			return nil, err
		}
		stopMarker = r.keepMarker(ctx)
		defer stopMarker()
	}
	bb, err := repl.StartBaseBackup(gctx, replication.BaseBackupOptions{
		Label:    o.Label,
		Fast:     o.Fast,
		MaxRate:  o.MaxRate,
		Manifest: true,
		Progress: !o.NoEstimate,
		// A standby's wait has no end while its primary is idle:
		// Run waits itself (waitStandbyWAL).
		NoWait:        o.NoWait || r.srv.inRecovery,
		TablespaceMap: hasTablespaces,
		Incremental:   parent != nil,
	})
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", r.incrementalStartError(err, parent))
	}
	streamStart := time.Now()
	// The checkpoint is done and the start position known: the server's
	// clock now is the backup's start time, as backup_label's START TIME
	// (stamped right after the checkpoint) says, without parsing a time
	// zone abbreviation. It is recorded to the second, as in the label,
	// which is where PGHoard takes its start-time from; the name counts
	// from the milliseconds.
	var clock time.Time
	err = r.onSQL(gctx, func(sql *pgx.Conn) error { return sql.QueryRow(gctx, "SELECT clock_timestamp()").Scan(&clock) })
	if err != nil {
		return nil, fmt.Errorf("basebackup: query start time: %w", err)
	}
	startTime := clock.Truncate(time.Second)
	spc, err := r.tablespaces(gctx, bb.Tablespaces)
	if err != nil {
		return nil, err
	}
	r.sizes = newSpcSizes(spc)
	name, err := chooseName(gctx, o.Archive, clock)
	if err != nil {
		return nil, err
	}
	r.name = name
	log := r.log.With().Str("backup", name).Logger()
	log.Info().Str("lsn", bb.StartLSN.String()).Int32("tli", bb.Timeline).Msg("basebackup started")
	conc := o.CompressionThreads
	if conc == 0 {
		// One stream: compress its blocks on every core.
		conc = runtime.NumCPU()
	}
	upload := chunkUploadMemory(o.Archive.Store, o.ChunkSize)
	parallel := fitParallel(o.Parallel, o.Archive.Codec, conc, upload)
	if parallel < o.Parallel {
		log.Info().Int("chunks", o.Parallel).Int("fit", parallel).Str("compression", o.Archive.Codec.Compression).
			Int64("upload_buffer_bytes", upload).
			Msg("fewer chunks in flight, so that they fit the backup's memory budget")
	}
	r.ck = newChunker(gctx, g, o.Archive, name, o.ChunkSize, parallel, conc, o.TempDir)

	stopProgress := r.reportProgress(bb, streamStart)
	err = r.stream(gctx, bb, spc)
	if err != nil {
		stopProgress()
		err = checksumHint(err)
		r.ck.abort(err)
		return nil, err
	}
	end, endTLI, err := bb.Finish(gctx)
	stopProgress()
	var damaged *replication.ChecksumError
	if err != nil {
		if !errors.As(err, &damaged) || !damaged.Ended {
			return nil, fmt.Errorf("basebackup: %w", checksumHint(err))
		}
		// Every archive read to its end and the end position received:
		// the server failed the command only for damaged pages, after
		// all of it (perform_base_backup). The backup is stored as
		// local-tar stores one with damaged pages, the pages as sent and
		// the failures recorded; the checks below are a successful
		// backup's.
		end, endTLI = damaged.End, damaged.Timeline
	}
	var xmin, xmax int64
	var endTime time.Time
	err = r.onSQL(gctx, func(sql *pgx.Conn) error {
		var err error
		xmin, xmax, endTime, err = endSnapshot(gctx, sql)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	chunks, err := r.ck.manifestChunks()
	if err != nil {
		return nil, err
	}
	if r.pgControl == nil || r.backupLabel == nil || r.pgManifest == nil {
		return nil, fmt.Errorf("basebackup: server sent no %s", r.missing())
	}
	if parent != nil {
		// Its marker kept the chain from retention that knows it, while
		// it counted; a new one, then the last check before the backup
		// is listed (markAgain).
		stopMarker()
		if err := r.markAgain(ctx, parent); err != nil {
			return nil, err
		}
		if err := r.checkParent(ctx, parent); err != nil {
			return nil, err
		}
	}

	oc := &outcome{
		name:          name,
		source:        SourceBaseBackup,
		systemID:      r.srv.system.SystemID,
		version:       r.srv.version,
		segSize:       r.srv.segSize,
		pgdata:        r.srv.pgdata,
		start:         bb.StartLSN,
		end:           end,
		startTLI:      uint32(bb.Timeline),
		endTLI:        uint32(endTLI),
		startTime:     startTime,
		endTime:       endTime,
		xmin:          xmin,
		xmax:          xmax,
		chunks:        chunks,
		chunkFiles:    r.ck.fileLister(),
		tablespaces:   spc,
		spcSizes:      r.sizes,
		pgControl:     r.pgControl,
		backupLabel:   r.backupLabel,
		tablespaceMap: r.tablespaceMap,
		pgManifest:    r.pgManifest,
		parent:        parent,
	}
	if damaged != nil {
		oc.checksums = r.serverChecksums(log, damaged, spc)
	}
	if parent != nil {
		oc.checkStored = func(ctx context.Context) error { return r.checkStored(ctx, parent) }
	}
	info, err := storeControl(ctx, o, log, oc)
	if err != nil {
		return nil, err
	}
	if damaged != nil {
		log.Warn().Int64("blocks", oc.checksums.blocks).Int("files", len(oc.checksums.files)).
			Msg("the backup holds data pages whose checksums failed: they are damaged in the cluster itself")
	}
	if o.Progress != nil {
		done, total := bb.Progress()
		el := time.Since(streamStart)
		o.Progress(Progress{
			Bytes: done, Total: total, Rate: rate(done, el), Elapsed: el,
			Chunks: len(chunks), StoredBytes: info.TotalSizeEnc, Done: true,
		})
	}
	return info, nil
}

func (r *run) missing() string {
	var m []string
	if r.pgControl == nil {
		m = append(m, "global/pg_control")
	}
	if r.backupLabel == nil {
		m = append(m, "backup_label")
	}
	if r.pgManifest == nil {
		m = append(m, "backup_manifest")
	}
	return strings.Join(m, ", ")
}

// onSQL runs q on the backup's SQL session, and once more on a new
// session when the server or the network had ended it by then. The
// session sits idle while the server checkpoints and streams the backup,
// which may take hours: idle_session_timeout (PostgreSQL 14+), a
// firewall's idle timeout or pg_terminate_backend end it, and the server
// tells so only at the next query. The backup lives on the replication
// connection, and what the queries read (the server's clock, the
// tablespaces, the end snapshot) any session reads alike, so a new one
// does, once it is known to be a session of the same server
// (checkNewSession); a backup failed for it after its whole stream would
// fail the same way at every try. The new session replaces r.sql.
func (r *run) onSQL(ctx context.Context, q func(sql *pgx.Conn) error) error {
	err := q(r.sql)
	if err == nil || !r.sql.IsClosed() || ctx.Err() != nil {
		return err
	}
	r.log.Warn().Err(err).Msg("the SQL session beside the backup ended while it was idle (idle_session_timeout, a network idle timeout, " +
		"or terminated): opening a new one")
	sql, cerr := connectSQL(ctx, r.o.ConnString)
	if cerr != nil {
		return fmt.Errorf("%w; a new session: %w", err, cerr)
	}
	if cerr := r.checkNewSession(ctx, sql); cerr != nil {
		sql.Close(context.WithoutCancel(ctx))
		return cerr
	}
	r.sql = sql
	r.opened = append(r.opened, sql)
	return q(sql)
}

// tablespaces names the backup's tablespaces (the main data directory
// excluded) from pg_tablespace, queried after the backup began so that
// the list is the server's.
func (r *run) tablespaces(ctx context.Context, list []replication.Tablespace) ([]tablespace, error) {
	names := map[uint32]string{}
	err := r.onSQL(ctx, func(sql *pgx.Conn) error {
		rows, err := sql.Query(ctx, "SELECT oid, spcname FROM pg_tablespace")
		if err != nil {
			return err
		}
		var oid uint32
		var name string
		_, err = pgx.ForEachRow(rows, []any{&oid, &name}, func() error {
			names[oid] = name
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("basebackup: query tablespaces: %w", err)
	}
	var out []tablespace
	for _, ts := range list {
		if ts.OID == 0 {
			continue
		}
		name, ok := names[ts.OID]
		if !ok {
			return nil, fmt.Errorf("basebackup: tablespace %d at %s is not in pg_tablespace", ts.OID, ts.Location)
		}
		// The name becomes a path component of the chunk members.
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return nil, fmt.Errorf("basebackup: tablespace name %q cannot be stored (PGHoard's format uses it as a directory name)", name)
		}
		out = append(out, tablespace{oid: ts.OID, location: ts.Location, name: name})
	}
	return out, nil
}

// stream reads every archive of the backup: tablespace tars into chunks
// (and the control members aside), the manifest into memory.
func (r *run) stream(ctx context.Context, bb *replication.BaseBackup, spc []tablespace) error {
	for {
		a, err := bb.NextArchive(ctx)
		if err == io.EOF {
			return r.ck.finish()
		}
		if err != nil {
			return fmt.Errorf("basebackup: %w", err)
		}
		switch a.Kind {
		case replication.ArchiveTablespace:
			prefix := "pgdata/"
			if a.Tablespace.OID != 0 {
				prefix = ""
				for _, ts := range spc {
					if ts.oid == a.Tablespace.OID {
						prefix = "tablespaces/" + ts.name + "/"
					}
				}
				if prefix == "" {
					return fmt.Errorf("basebackup: archive %s of unknown tablespace %d", a.Name, a.Tablespace.OID)
				}
			}
			if err := r.archive(bb, a.Name, a.Tablespace.OID == 0, prefix); err != nil {
				return err
			}
		case replication.ArchiveManifest:
			// The manifest grows with the number of files, not their
			// size; it goes into the control tar, spooled on the local
			// disk until then.
			if r.pgManifest != nil {
				return fmt.Errorf("basebackup: server sent a second backup_manifest")
			}
			if r.pgManifest, err = newSpool(r.o.TempDir, "backup_manifest"); err != nil {
				return err
			}
			if _, err := io.Copy(r.pgManifest, bb); err != nil {
				return fmt.Errorf("basebackup: read backup_manifest: %w", err)
			}
		}
	}
}

// archive re-chunks one tablespace's tar stream, called name: the main data
// directory's when main is set. prefix starts the members' names in the
// chunks.
func (r *run) archive(stream io.Reader, name string, main bool, prefix string) error {
	// The stream is received on a goroutine of its own while the members
	// before are re-chunked, compressed and encrypted here.
	ra := newReadAhead(stream)
	r.ra = ra
	defer ra.close()
	src := &tarSource{ra: ra}
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			// Past the end-of-archive marker: the stream is the
			// caller's again once the rest is read.
			if err := ra.drain(); err != nil {
				return fmt.Errorf("basebackup: read %s: %w", name, err)
			}
			r.ra = nil
			return nil
		}
		if err != nil {
			return fmt.Errorf("basebackup: read %s: %w", name, err)
		}
		rel, ok := cleanName(h.Name)
		if !ok {
			return fmt.Errorf("basebackup: %s: unsafe member name %q", name, h.Name)
		}
		if rel == "" {
			continue
		}
		switch place(rel, main) {
		case placeSkip:
			continue
		case placeControl:
			if err := r.keep(rel, h, tr); err != nil {
				return fmt.Errorf("basebackup: read %s: %w", rel, err)
			}
		case placeChunk:
			var data memberData = readerData{tr, r.ck.buf}
			if direct(h) {
				data = src
			}
			if err := r.ck.add(prefix+rel, h, data); err != nil {
				return fmt.Errorf("basebackup: %w", err)
			}
			r.sizes.add(prefix+rel, h.Size)
		}
	}
}

// tarSource is what the tar reader of a server's stream reads: the
// read-ahead, through which the chunker also takes a regular member's data
// itself (copyData), straight from the buffers it was received into,
// instead of through the tar reader, which copies it out. The tar reader
// then skips that data as a member's unread rest: credit stands for it,
// and reads of it return without touching the stream.
type tarSource struct {
	ra     *readAhead
	credit int64 // bytes taken by copyData that the tar reader has not skipped yet
}

func (s *tarSource) Read(p []byte) (int, error) {
	if s.credit > 0 {
		// The member's data, which copyData took: the tar reader
		// discards what it reads here.
		n := int(min(int64(len(p)), s.credit))
		s.credit -= int64(n)
		return n, nil
	}
	return s.ra.Read(p)
}

func (s *tarSource) copyData(w io.Writer, n int64) (int64, error) {
	written, err := s.ra.writeTo(w, n)
	s.credit += written
	return written, err
}

// direct reports whether a member's data is the next h.Size bytes of the
// stream, so that copyData may take it: a regular file, not one of the
// PAX sparse formats, whose stored data differs from its size.
func direct(h *tar.Header) bool {
	if h.Typeflag != tar.TypeReg {
		return false
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return false
		}
	}
	return true
}

// keep holds a control tar member: pg_control (8 kB), backup_label or
// tablespace_map (small text files).
func (r *run) keep(rel string, h *tar.Header, tr io.Reader) error {
	if h.Typeflag != tar.TypeReg { // archive/tar reports old-style regular files as TypeReg too
		return fmt.Errorf("not a regular file")
	}
	if h.Size > 1<<20 {
		return fmt.Errorf("%d bytes is too large", h.Size)
	}
	data, err := io.ReadAll(io.LimitReader(tr, h.Size))
	if err != nil {
		return err
	}
	m := &member{h: h, data: data}
	switch rel {
	case "global/pg_control":
		r.pgControl = m
	case "backup_label":
		r.backupLabel = m
	case "tablespace_map":
		r.tablespaceMap = m
	}
	return nil
}

// checksumHint adds to a BASE_BACKUP failed for damaged data pages
// before it ended (ChecksumError.Ended unset) what to do about it.
// basebackup.c fails a backup for damaged pages only after its end
// position, so this is a server or a proxy that ended it early, and
// nothing is stored.
func checksumHint(err error) error {
	var ce *replication.ChecksumError
	if !errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("%w; the server found damaged data pages and failed the backup before its end position, "+
		"so nothing is stored (a backup the server sends in full is stored with the failures recorded): "+
		"find the damage with pg_amcheck (while the cluster runs) or pg_checksums --check "+
		"(on a stopped copy of the cluster); the server's log has the failures left out here", err)
}

// serverChecksums logs the checksum failures the server's warnings name,
// as local-tar logs those it finds (fileCheck), and returns them as the
// backup's record: the server's count of failing blocks, the files by
// their member names, the blocks the server named (five a file at most).
func (r *run) serverChecksums(log zerolog.Logger, ce *replication.ChecksumError, spc []tablespace) *checksumReport {
	report := &checksumReport{blocks: ce.Blocks, filesUnknown: ce.FilesUnknown}
	if ce.FilesUnknown {
		log.Warn().Int64("blocks", ce.Blocks).Strs("warnings", ce.Warnings).
			Msg("the server named the files with damaged data pages in another language than English: its log names them")
	}
	for _, f := range ce.Files {
		file := f.File
		if rest, ok := strings.CutPrefix(file, "./"); ok && r.srv.pgdata != "" {
			file = path.Join(r.srv.pgdata, rest)
		}
		for _, blk := range f.Blocks {
			log.Warn().Str("file", file).Uint32("block", blk).Msg("data page checksum verification failed")
		}
		log.Warn().Str("file", file).Int64("blocks", f.Count).Msg("data page checksum failures in file")
		if len(report.files) < keptFiles {
			report.files = append(report.files, archive.ChecksumFailure{File: serverMember(f.File, spc), Count: f.Count, Blocks: f.Blocks})
		}
	}
	return report
}

// serverMember returns the backup's member name of a file as the server
// names it in its warnings: "./base/5/16384" is pgdata/base/5/16384, a
// file under a tablespace's location tablespaces/<name>/...; a name it
// cannot place is kept as the server sent it.
func serverMember(file string, spc []tablespace) string {
	if rest, ok := strings.CutPrefix(file, "./"); ok {
		return "pgdata/" + rest
	}
	for _, ts := range spc {
		if rest, ok := strings.CutPrefix(file, ts.location+"/"); ok {
			return "tablespaces/" + ts.name + "/" + rest
		}
	}
	return file
}
