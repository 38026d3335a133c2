package basebackup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

// Run takes a basebackup of the server o.ConnString names and stores it in
// o.Archive in PGHoard's pghoard-bb-v2 format: data chunks first, then the
// control object, which makes the backup visible. It reads the data
// directory itself (local-tar) or takes it over the replication protocol
// (BASE_BACKUP), as o.Mode says. It returns the stored backup. On any
// failure, or when ctx is canceled, it deletes the chunks it stored and
// returns the error: nothing of a failed backup is listed.
func Run(ctx context.Context, o Options) (*archive.BackupInfo, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.DecisionTime.IsZero() {
		o.DecisionTime = time.Now()
	}
	log := o.Logger.With().Str("component", "basebackup").Str("site", o.Archive.Site).Logger()
	if o.Incremental {
		return runStream(ctx, o, log)
	}
	switch o.Mode {
	case ModeLocal, ModeDelta:
		return runLocal(ctx, o, log, false)
	case ModeAuto:
		if err := dataDirReadable(o.PGData); err != nil {
			if o.PGData != "" {
				log.Info().Err(err).Msg("data directory not readable here: basebackup over the replication protocol")
			}
			break
		}
		info, err := runLocal(ctx, o, log, true)
		var fb *fallbackError
		if !errors.As(err, &fb) {
			return info, err
		}
		log.Warn().Err(fb.err).Msg("local-tar basebackup not possible: basebackup over the replication protocol")
	}
	return runStream(ctx, o, log)
}

// fallbackError says why a local-tar backup in ModeAuto gave way to
// BASE_BACKUP before it stored anything.
type fallbackError struct{ err error }

func (e *fallbackError) Error() string { return e.err.Error() }
func (e *fallbackError) Unwrap() error { return e.err }

// dataDirReadable checks that dir looks like a data directory this
// process may read (root.readable).
func dataDirReadable(dir string) error {
	if dir == "" {
		return errors.New("pg_data_directory is not set")
	}
	r := &root{dir: dir}
	if err := r.open(); err != nil {
		return err
	}
	defer closeRoots([]*root{r})
	return r.readable()
}

// applicationName is the SQL session's application_name unless the
// connection string sets one.
const applicationName = "hoard basebackup"

// connectSQL opens an ordinary (non-replication) connection for the
// queries around the backup.
func connectSQL(ctx context.Context, connString string) (*pgx.Conn, error) {
	connString, note := replication.SecurePassfile(connString)
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("basebackup: parse connection string: %w", replication.RedactParseError(err))
	}
	delete(cfg.RuntimeParams, "replication")
	if cfg.RuntimeParams["application_name"] == "" {
		// pg_stat_activity shows the session holding a backup open.
		cfg.RuntimeParams["application_name"] = applicationName
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("basebackup: %w", replication.PassfileNote(replication.ConnErrorFor(err, &cfg.Config), note))
	}
	return conn, nil
}

// member is a file held for the control tar.
type member struct {
	h    *tar.Header
	data []byte
}

// tablespace is one tablespace of the backup, the main data directory
// excluded.
type tablespace struct {
	oid      uint32
	location string // its directory on the server
	name     string // spcname: the chunks' tablespaces/<name>/ directory
}

// endSnapshot reads txid_current_snapshot()'s xmin and xmax and the
// server's time, right after a backup's end (outcome's xmin, xmax and
// endTime), whichever way the backup read the cluster.
func endSnapshot(ctx context.Context, conn *pgx.Conn) (xmin, xmax int64, endTime time.Time, err error) {
	err = conn.QueryRow(ctx, "SELECT txid_snapshot_xmin(s), txid_snapshot_xmax(s), now() FROM txid_current_snapshot() AS s").
		Scan(&xmin, &xmax, &endTime)
	if err != nil {
		err = fmt.Errorf("basebackup: query end snapshot: %w", err)
	}
	return xmin, xmax, endTime, err
}

// outcome is what a backup gathered for its control object, whichever
// way it read the cluster.
type outcome struct {
	name     string
	source   string // MetaSource
	systemID string
	version  int // server_version_num
	segSize  uint64
	pgdata   string

	start, end       pglogrepl.LSN
	startTLI, endTLI uint32
	startTime        time.Time // to the second, as backup_label's START TIME
	endTime          time.Time
	xmin, xmax       int64 // txid_current_snapshot() right after the end

	chunks []archive.ManifestChunk
	// chunkFiles, when set, holds the chunks' lists of member names,
	// which chunks leave nil (the lists grow with the number of files:
	// they are not kept in memory).
	chunkFiles  fileLister
	tablespaces []tablespace
	spcSizes    spcSizes // the tablespaces' parts of the chunks

	pgControl, backupLabel, tablespaceMap *member
	// pgManifest is PostgreSQL's backup_manifest, spooled (the caller
	// closes it).
	pgManifest *spool
	// checksums is hoard's page checksum verification, or the server's
	// failures in a BASE_BACKUP it ended with XX001 after sending all of
	// it; nil when hoard did not verify, or the server found none.
	checksums *checksumReport
	// parent is the backup an incremental one was taken against; nil
	// for a full backup.
	parent *parentBackup
	// checkStored, when set, runs once the control object is stored,
	// before the backup counts as stored: an error withdraws the backup
	// (withdraw) and fails it.
	checkStored func(ctx context.Context) error

	// A delta backup's: its format (archive.FormatDeltaV2; "" for
	// pghoard-bb-v2), its manifest, and the decoded and stored bytes of
	// its delta objects and embedded files.
	format                  string
	deltaManifest           []byte
	deltaPlain, deltaStored int64
}

// storeControl writes the control object of a backup whose chunks are all
// stored: the backup becomes visible.
func storeControl(ctx context.Context, o Options, log zerolog.Logger, oc *outcome) (*archive.BackupInfo, error) {
	seg := oc.segSize
	info := &archive.BackupInfo{
		Name:             oc.name,
		Key:              o.Archive.Layout.BackupKey(oc.name),
		Format:           archive.FormatBBv2,
		StartWALSegment:  wal.SegmentOf(oc.startTLI, oc.start, seg).Name(seg),
		EndWALSegment:    endSegment(oc.endTLI, oc.end, seg),
		StartTime:        oc.startTime,
		EndTime:          oc.endTime,
		StartLSN:         oc.start,
		EndLSN:           oc.end,
		StartTimeline:    oc.startTLI,
		EndTimeline:      oc.endTLI,
		SystemID:         oc.systemID,
		WALSegmentSize:   seg,
		PGVersion:        oc.version,
		ChunkCount:       len(oc.chunks),
		Site:             o.Archive.Site,
		Host:             o.Host,
		ActiveBackupMode: o.ActiveBackupMode,
		BasebackupMode:   o.BasebackupMode,
		BackupReason:     o.Reason,
		DecisionTime:     o.DecisionTime,
		NormalizedTime:   o.NormalizedTime,
		PGManifest:       true,
		EndXmin:          uint64(oc.xmin),
		EndXmax:          uint64(oc.xmax),
	}
	for _, c := range oc.chunks {
		info.TotalSizePlain += c.InputSize
		info.TotalSizeEnc += c.ResultSize
	}
	if oc.format != "" {
		// PGHoard's total-size-* count a delta backup's every file,
		// reused delta objects included.
		info.Format = oc.format
		info.TotalSizePlain += oc.deltaPlain
		info.TotalSizeEnc += oc.deltaStored
	}
	m := &archive.Manifest{
		BackupStartTime:       archive.LabelTime{Time: oc.startTime},
		BackupStartWALSegment: info.StartWALSegment,
		BackupEndTime:         archive.ManifestTime{Time: oc.endTime},
		BackupEndWALSegment:   info.EndWALSegment,
		PGData:                oc.pgdata,
		PGHoardObject:         "basebackup",
		PGHoardVersion:        o.Version,
		Host:                  o.Host,
		Tablespaces:           map[string]archive.ManifestTablespace{},
		Chunks:                oc.chunks,
		Hoard: &archive.HoardManifest{
			StartLSN:       oc.start.String(),
			EndLSN:         oc.end.String(),
			StartTimeline:  info.StartTimeline,
			EndTimeline:    info.EndTimeline,
			SystemID:       info.SystemID,
			WALSegmentSize: seg,
			PGVersion:      info.PGVersion,
			PGManifest:     true,
			Source:         oc.source,
		},
	}
	if oc.checksums != nil {
		m.Hoard.ChecksumFailures = oc.checksums.manifest()
	}
	if oc.parent != nil {
		info.Parent = oc.parent.info.Name
		m.Hoard.Incremental = &archive.IncrementalParent{Parent: oc.parent.info.Name, StartLSN: oc.parent.start, Timeline: oc.parent.timeline}
	}
	m.DeltaManifest = oc.deltaManifest
	for _, ts := range oc.tablespaces {
		m.Tablespaces[ts.name] = archive.ManifestTablespace{Path: ts.location, OID: ts.oid}
	}
	if len(oc.tablespaces) > 0 {
		m.Hoard.TablespaceSizes = oc.spcSizes
	}
	control, err := writeControl(o.TempDir, m, oc)
	if err != nil {
		return nil, err
	}
	defer control.Close()
	controlData, err := control.reader()
	if err != nil {
		return nil, err
	}
	md := info.ToMetadata()
	md[MetaSource] = oc.source
	if oc.checksums != nil {
		md[MetaChecksumFailures] = strconv.FormatInt(oc.checksums.blocks, 10)
	}
	// Retention with the public key only trusts no metadata but this
	// (archive/backupauth.go).
	if err := o.Archive.Codec.SignBackup(info.Name, md); err != nil {
		return nil, fmt.Errorf("basebackup: sign metadata of %s: %w", info.Key, err)
	}
	if err := o.Archive.Codec.SignChecksumFailures(info.Name, md); err != nil {
		return nil, fmt.Errorf("basebackup: sign checksum failures of %s: %w", info.Key, err)
	}
	// The control object goes last: once it exists the backup is listed.
	st, err := o.Archive.Codec.Put(ctx, o.Archive.Store, info.Key, controlData, control.size(), md)
	if err != nil {
		// The storage may have stored it all the same: a PUT whose
		// answer was lost (a connection reset, a storage stopped or ctx
		// canceled just then) fails here with the object in place, and
		// the backup listed. Its chunks go only once it is deleted
		// again (unstore), or a listed backup would be left without them.
		return nil, unstore(ctx, o, info.Key, fmt.Errorf("basebackup: store control object %s: %w", info.Key, err))
	}
	if oc.checkStored != nil {
		if err := oc.checkStored(ctx); err != nil {
			return nil, withdraw(ctx, o, info.Key, err)
		}
	}
	// Listed now: its name is taken by the control object.
	if err := o.Archive.Store.Delete(ctx, o.Archive.Layout.NameClaimKey(info.Name)); err != nil {
		// An object of the folder, not a chunk (archive.CheckBackupSealed):
		// it goes with the folder when retention deletes the backup.
		log.Warn().Err(err).Str("key", o.Archive.Layout.NameClaimKey(info.Name)).Msg("claim of the backup's name not deleted")
	}
	info.StoredSize = st.StoredSize
	info.Metadata = st.Metadata
	info.Auth = o.Archive.Codec.BackupAuth(info.Name, st.Metadata)
	if err := o.Archive.MarkSigned(ctx); err != nil {
		// The backup is stored; the marker only guards against its
		// HMAC being stripped later, and the next backup stores it.
		log.Warn().Err(err).Msg("signed-backups marker not stored")
	}
	ev := log.Info().Str("backup", oc.name).Str("source", oc.source).Str("lsn", oc.end.String()).Int("chunks", len(oc.chunks)).
		Int64("bytes", info.TotalSizePlain).Int64("stored", info.TotalSizeEnc)
	if oc.checksums != nil {
		ev = ev.Int64("checksum_failures", oc.checksums.blocks)
	}
	if oc.parent != nil {
		ev = ev.Str("parent", oc.parent.info.Name)
	}
	ev.Msg("basebackup stored")
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

// errStillListed is wrapped by the error of a backup whose control
// object may be stored (withdraw's and unstore's, when it could not be
// deleted; a delta backup's whose marker check failed once it was
// stored): the backup may be listed, so the caller must leave its chunks
// (and an incremental backup's marker) in place.
var errStillListed = errors.New("backup still listed")

// unstore deletes the control object key, whose Put failed with err,
// under a context that outlives ctx's cancellation, and returns err. A
// Put that fails may have stored the object: then the backup is listed,
// whole, since its chunks are all stored. When the delete fails the
// backup may stay listed, and the error (wrapping errStillListed) says
// so: its chunks are kept.
func unstore(ctx context.Context, o Options, key string, err error) error {
	if derr := deleteControl(ctx, o, key); derr != nil {
		return fmt.Errorf("%w; the storage may have stored it, and it could not be deleted again: the backup may be listed, "+
			"so its chunks are kept (hoard list shows it if it is; hoard verify checks it, or delete %s by hand): %w: %w",
			err, key, errStillListed, derr)
	}
	return err
}

// deleteControl deletes a backup's control object, under a context that
// outlives ctx's cancellation.
func deleteControl(ctx context.Context, o Options, key string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	return o.Archive.Store.Delete(cctx, key)
}

// withdraw deletes the control object key of a backup whose check after
// storing it failed with err (outcome.checkStored), under a context that
// outlives ctx's cancellation, and returns err: the backup is not listed
// any more and fails as one whose control object never stored. Deleting
// it cannot lose a restorable backup: the check fails only when the
// backup cannot be restored, or may not be by the time it is used. When
// the delete fails the backup stays listed, and the error (wrapping
// errStillListed) says what to do.
func withdraw(ctx context.Context, o Options, key string, err error) error {
	if derr := deleteControl(ctx, o, key); derr != nil {
		return fmt.Errorf("%w; its control object %s could not be deleted again, so it is listed although it may not restore: "+
			"delete that object by hand, or run hoard verify --restore before relying on it: %w: %w", err, key, errStillListed, derr)
	}
	return err
}

// deleteChunks deletes the chunks of a failed backup, under a context
// that outlives ctx's cancellation.
func deleteChunks(ctx context.Context, o Options, keys []string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var errs []error
	for _, key := range keys {
		if err := o.Archive.Store.Delete(cctx, key); err != nil {
			errs = append(errs, fmt.Errorf("delete chunk %s of the failed backup: %w", key, err))
		}
	}
	return errors.Join(errs...)
}
