package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

// server is what Run learns of the server before the backup.
type server struct {
	system  replication.System
	version int // server_version_num
	segSize uint64
	pgdata  string
}

// Run takes a basebackup of the server o.ConnString names and stores it in
// o.Archive in PGHoard's pghoard-bb-v2 format: data chunks first, then the
// control object, which makes the backup visible. It returns the stored
// backup. On any failure, or when ctx is canceled, it deletes the chunks it
// stored and returns the error: nothing of a failed backup is listed.
func Run(ctx context.Context, o Options) (*archive.BackupInfo, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.DecisionTime.IsZero() {
		o.DecisionTime = time.Now()
	}
	log := o.Logger.With().Str("component", "basebackup").Str("site", o.Archive.Site).Logger()

	repl, err := replication.Connect(ctx, o.ConnString)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	defer repl.Close(context.WithoutCancel(ctx))
	sql, err := connectSQL(ctx, o.ConnString)
	if err != nil {
		return nil, err
	}
	defer sql.Close(context.WithoutCancel(ctx))
	srv, err := identify(ctx, repl, sql, o.PGData)
	if err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g, gctx := errgroup.WithContext(runCtx)
	r := &run{o: o, log: log, srv: srv, sql: sql}
	info, err := r.backup(runCtx, gctx, g, repl)
	if err != nil {
		cancel(err)
		_ = g.Wait()
		if cerr := r.cleanup(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return info, nil
}

// connectSQL opens an ordinary (non-replication) connection for the
// queries Run needs around the backup.
func connectSQL(ctx context.Context, connString string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("basebackup: parse connection string: %w", err)
	}
	delete(cfg.RuntimeParams, "replication")
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("basebackup: connect: %w", err)
	}
	return conn, nil
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

	ck *chunker // nil until the name is chosen

	pgControl, backupLabel, tablespaceMap *member
	pgManifest                            []byte
}

// member is a file held for the control tar.
type member struct {
	h    *tar.Header
	data []byte
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
	var hasTablespaces bool
	if err := r.sql.QueryRow(gctx, "SELECT EXISTS (SELECT 1 FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global'))").Scan(&hasTablespaces); err != nil {
		return nil, fmt.Errorf("basebackup: query tablespaces: %w", err)
	}
	bb, err := repl.StartBaseBackup(gctx, replication.BaseBackupOptions{
		Label:         o.Label,
		Fast:          o.Fast,
		MaxRate:       o.MaxRate,
		Manifest:      true,
		Progress:      !o.NoEstimate,
		NoWait:        o.NoWait,
		TablespaceMap: hasTablespaces,
	})
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	streamStart := time.Now()
	// The checkpoint is done and the start position known: the server's
	// clock now is the backup's start time, as backup_label's START TIME
	// (stamped right after the checkpoint) says, without parsing a time
	// zone abbreviation. It is recorded to the second, as in the label,
	// which is where PGHoard takes its start-time from; the name counts
	// from the milliseconds.
	var clock time.Time
	if err := r.sql.QueryRow(gctx, "SELECT clock_timestamp()").Scan(&clock); err != nil {
		return nil, fmt.Errorf("basebackup: query start time: %w", err)
	}
	startTime := clock.Truncate(time.Second)
	spc, err := r.tablespaces(gctx, bb.Tablespaces)
	if err != nil {
		return nil, err
	}
	name, err := chooseName(gctx, o.Archive, clock)
	if err != nil {
		return nil, err
	}
	log := r.log.With().Str("backup", name).Logger()
	log.Info().Str("lsn", bb.StartLSN.String()).Int32("tli", bb.Timeline).Msg("basebackup started")
	r.ck = newChunker(gctx, g, o.Archive, name, o.ChunkSize, o.Parallel)

	stopProgress := r.reportProgress(bb, streamStart)
	err = r.stream(gctx, bb, spc)
	if err != nil {
		stopProgress()
		r.ck.abort(err)
		return nil, err
	}
	end, endTLI, err := bb.Finish(gctx)
	stopProgress()
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", err)
	}
	var xmin, xmax int64
	var endTime time.Time
	err = r.sql.QueryRow(gctx, "SELECT txid_snapshot_xmin(s), txid_snapshot_xmax(s), now() FROM txid_current_snapshot() AS s").
		Scan(&xmin, &xmax, &endTime)
	if err != nil {
		return nil, fmt.Errorf("basebackup: query end snapshot: %w", err)
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

	seg := r.srv.segSize
	info := &archive.BackupInfo{
		Name:             name,
		Key:              o.Archive.Layout.BackupKey(name),
		Format:           archive.FormatBBv2,
		StartWALSegment:  wal.SegmentOf(uint32(bb.Timeline), bb.StartLSN, seg).Name(seg),
		EndWALSegment:    endSegment(uint32(endTLI), end, seg),
		StartTime:        startTime,
		EndTime:          endTime,
		StartLSN:         bb.StartLSN,
		EndLSN:           end,
		StartTimeline:    uint32(bb.Timeline),
		EndTimeline:      uint32(endTLI),
		SystemID:         r.srv.system.SystemID,
		WALSegmentSize:   seg,
		PGVersion:        r.srv.version,
		ChunkCount:       len(chunks),
		Site:             o.Archive.Site,
		Host:             o.Host,
		ActiveBackupMode: o.ActiveBackupMode,
		BasebackupMode:   o.BasebackupMode,
		BackupReason:     o.Reason,
		DecisionTime:     o.DecisionTime,
		NormalizedTime:   o.NormalizedTime,
		PGManifest:       true,
		EndXmin:          uint64(xmin),
		EndXmax:          uint64(xmax),
	}
	for _, c := range chunks {
		info.TotalSizePlain += c.InputSize
		info.TotalSizeEnc += c.ResultSize
	}
	m := &archive.Manifest{
		BackupStartTime:       archive.LabelTime{Time: startTime},
		BackupStartWALSegment: info.StartWALSegment,
		BackupEndTime:         archive.ManifestTime{Time: endTime},
		BackupEndWALSegment:   info.EndWALSegment,
		PGData:                r.srv.pgdata,
		PGHoardObject:         "basebackup",
		PGHoardVersion:        o.Version,
		Host:                  o.Host,
		Tablespaces:           map[string]archive.ManifestTablespace{},
		Chunks:                chunks,
		Hoard: &archive.HoardManifest{
			StartLSN:       bb.StartLSN.String(),
			EndLSN:         end.String(),
			StartTimeline:  info.StartTimeline,
			EndTimeline:    info.EndTimeline,
			SystemID:       info.SystemID,
			WALSegmentSize: seg,
			PGVersion:      info.PGVersion,
			PGManifest:     true,
		},
	}
	for _, ts := range spc {
		m.Tablespaces[ts.name] = archive.ManifestTablespace{Path: ts.Location, OID: ts.OID}
	}
	control, err := r.controlTar(m, endTime)
	if err != nil {
		return nil, err
	}
	md := info.ToMetadata()
	// The control object goes last: once it exists the backup is listed.
	st, err := o.Archive.Codec.Put(ctx, o.Archive.Store, info.Key, bytes.NewReader(control), int64(len(control)), md)
	if err != nil {
		return nil, fmt.Errorf("basebackup: store control object %s: %w", info.Key, err)
	}
	info.StoredSize = st.StoredSize
	info.Metadata = st.Metadata
	if o.Progress != nil {
		done, total := bb.Progress()
		el := time.Since(streamStart)
		o.Progress(Progress{
			Bytes: done, Total: total, Rate: rate(done, el), Elapsed: el,
			Chunks: len(chunks), StoredBytes: info.TotalSizeEnc, Done: true,
		})
	}
	log.Info().Str("lsn", end.String()).Int("chunks", len(chunks)).Int64("bytes", info.TotalSizePlain).
		Int64("stored", info.TotalSizeEnc).Msg("basebackup stored")
	return info, nil
}

// endSegment names the last segment a backup needs: the one holding the
// byte before its end position, as pg_walfile_name does (an end exactly on
// a segment boundary needs nothing of the next segment).
func endSegment(tli uint32, end pglogrepl.LSN, segSize uint64) string {
	if end > 0 {
		end--
	}
	return wal.SegmentOf(tli, end, segSize).Name(segSize)
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

// tablespace is one BASE_BACKUP tablespace with its name.
type tablespace struct {
	replication.Tablespace
	name string
}

// tablespaces names the backup's tablespaces (the main data directory
// excluded) from pg_tablespace, queried after the backup began so that
// the list is the server's.
func (r *run) tablespaces(ctx context.Context, list []replication.Tablespace) ([]tablespace, error) {
	rows, err := r.sql.Query(ctx, "SELECT oid, spcname FROM pg_tablespace")
	if err != nil {
		return nil, fmt.Errorf("basebackup: query tablespaces: %w", err)
	}
	names := map[uint32]string{}
	var oid uint32
	var name string
	_, err = pgx.ForEachRow(rows, []any{&oid, &name}, func() error {
		names[oid] = name
		return nil
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
		out = append(out, tablespace{Tablespace: ts, name: name})
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
					if ts.OID == a.Tablespace.OID {
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
			// size; it goes into the control tar.
			if r.pgManifest, err = io.ReadAll(bb); err != nil {
				return fmt.Errorf("basebackup: read backup_manifest: %w", err)
			}
		}
	}
}

// archive re-chunks one tablespace's tar stream, called name: the main data
// directory's when main is set. prefix starts the members' names in the
// chunks.
func (r *run) archive(stream io.Reader, name string, main bool, prefix string) error {
	tr := tar.NewReader(stream)
	for {
		h, err := tr.Next()
		if err == io.EOF {
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
			if err := r.ck.add(prefix+rel, h, tr); err != nil {
				return fmt.Errorf("basebackup: %w", err)
			}
		}
	}
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

// cleanup deletes every chunk whose upload began, under a context that
// outlives ctx's cancellation.
func (r *run) cleanup(ctx context.Context) error {
	if r.ck == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var errs []error
	for _, key := range r.ck.keys() {
		if err := r.o.Archive.Store.Delete(cctx, key); err != nil {
			errs = append(errs, fmt.Errorf("delete chunk %s of the failed backup: %w", key, err))
		}
	}
	return errors.Join(errs...)
}
