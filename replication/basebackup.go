package replication

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgproto3"
)

// BaseBackupOptions are the BASE_BACKUP options hoard uses.
type BaseBackupOptions struct {
	Label string // backup label, recorded in backup_label
	// Fast requests an immediate checkpoint (CHECKPOINT 'fast'); otherwise
	// the checkpoint is spread out as checkpoint_completion_target says.
	Fast bool
	// MaxRate limits the server's send rate in kB/s (32 to 1048576); 0
	// means unlimited.
	MaxRate int
	// Manifest asks for PostgreSQL's backup_manifest, delivered as the
	// last archive.
	Manifest bool
	// ManifestChecksums is the manifest's file checksum algorithm (NONE,
	// CRC32C, SHA224, SHA256, SHA384, SHA512); empty keeps the server's
	// default, CRC32C.
	ManifestChecksums string
	// Progress asks the server to compute each tablespace's size first, so
	// Progress can report a total. It makes the backup read the data
	// directory twice.
	Progress bool
	// NoWait returns as soon as the backup ends, without waiting for the
	// WAL it needs to be archived (NOWAIT, WAIT false). hoard streams WAL
	// itself, so waiting on archive_command would be pointless.
	NoWait bool
	// TablespaceMap includes a tablespace_map file in the main archive
	// instead of pg_tblspc symbolic links' targets only.
	TablespaceMap bool
	// Incremental takes the backup relative to the manifest sent before
	// with UploadManifest (INCREMENTAL, PostgreSQL 17+): relation files
	// changed since then come as INCREMENTAL.<name> files holding the
	// changed blocks only.
	Incremental bool
}

// command builds the BASE_BACKUP command for a server version: the
// parenthesized option list from PostgreSQL 15, the bare keyword list
// before.
func (o BaseBackupOptions) command(serverVersion int) string {
	parens := serverVersion >= 150000
	fast, noWait := "FAST", "NOWAIT"
	if parens {
		fast, noWait = "CHECKPOINT 'fast'", "WAIT false"
	}
	opts := []string{"LABEL " + quoteLiteral(o.Label)}
	if o.Progress {
		opts = append(opts, "PROGRESS")
	}
	if o.Fast {
		opts = append(opts, fast)
	} else if parens {
		opts = append(opts, "CHECKPOINT 'spread'")
	}
	if o.NoWait {
		opts = append(opts, noWait)
	}
	if o.MaxRate > 0 {
		opts = append(opts, "MAX_RATE "+strconv.Itoa(o.MaxRate))
	}
	if o.TablespaceMap {
		opts = append(opts, "TABLESPACE_MAP")
	}
	if o.Manifest {
		opts = append(opts, "MANIFEST 'yes'")
		if o.ManifestChecksums != "" {
			opts = append(opts, "MANIFEST_CHECKSUMS "+quoteLiteral(o.ManifestChecksums))
		}
	}
	if parens {
		if o.Incremental {
			opts = append(opts, "INCREMENTAL")
		}
		return "BASE_BACKUP (" + strings.Join(opts, ", ") + ")"
	}
	return "BASE_BACKUP " + strings.Join(opts, " ")
}

// Tablespace is one row of BASE_BACKUP's tablespace list.
type Tablespace struct {
	OID      uint32 // 0 for the main data directory
	Location string // absolute path on the server; "" for the main data directory
	Size     int64  // approximate size in bytes, -1 when unknown (no PROGRESS)
}

// ArchiveKind tells what an archive of a base backup holds.
type ArchiveKind int

const (
	// ArchiveTablespace is a tar stream of one tablespace, or of the main
	// data directory.
	ArchiveTablespace ArchiveKind = iota + 1
	// ArchiveManifest is the backup_manifest file (JSON).
	ArchiveManifest
)

// Archive describes the archive NextArchive moved to.
type Archive struct {
	Kind ArchiveKind
	// Name is the archive's name: "base.tar" for the main data directory,
	// "<oid>.tar" for a tablespace, "backup_manifest" for the manifest.
	Name       string
	Tablespace Tablespace // for ArchiveTablespace
}

// BaseBackup is a running BASE_BACKUP. Walk it with NextArchive and Read,
// then call Finish. See the package documentation for the wire forms.
type BaseBackup struct {
	StartLSN    pglogrepl.LSN // the backup's start (redo) position
	Timeline    int32         // the timeline of StartLSN
	Tablespaces []Tablespace  // in the server's order; the main data directory comes last

	conn     *Conn
	newForm  bool // PostgreSQL 15+: one COPY, typed CopyData messages
	manifest bool // a manifest was requested
	stop     func() bool

	cur     Archive
	inCopy  bool   // inside a COPY OUT
	ended   bool   // the current archive (or no archive yet) has no more data
	pending []byte // unread archive bytes; aliases pgconn's buffer
	trailer int    // zero bytes still to append to an old-form tar
	copies  int    // old form: COPY OUTs begun so far
	// sent are the locations of the tablespaces whose archive began,
	// and sentManifest whether the manifest did: Finish counts a
	// backup the server failed after its end position as complete
	// only when it sent all of them (ChecksumError.Ended).
	sent         map[string]bool
	sentManifest bool
	peeked       pgproto3.BackendMessage
	finished     bool // all archives are done
	closed       bool // Finish was called
	err          error
	// framed: the connection's framer follows message boundaries, and
	// Read takes archive payloads from it directly (in a payload while
	// direct is set).
	framed bool
	direct bool

	// warnings are the server's WARNING messages so far (up to
	// maxWarnings, the rest counted in omitted), for a ChecksumError.
	warnings []string
	omitted  int
	// failures are the checksum failures the warnings name.
	failures pageFailures

	canceled atomic.Pointer[error]
	received atomic.Int64
	server   atomic.Int64
	total    int64
}

// StartBaseBackup starts a base backup (BASE_BACKUP) and reads the start
// position and the tablespace list. The backup then belongs to the
// returned BaseBackup until Finish; the connection is unusable for
// anything else. Canceling ctx at any point before Finish returns closes
// the connection, which aborts the backup on the server.
func (c *Conn) StartBaseBackup(ctx context.Context, opts BaseBackupOptions) (*BaseBackup, error) {
	if c.streaming {
		return nil, fmt.Errorf("base backup: connection is streaming WAL")
	}
	b := &BaseBackup{
		conn:     c,
		newForm:  c.ServerVersion() >= 150000,
		manifest: opts.Manifest,
		ended:    true,
	}
	b.stop = context.AfterFunc(ctx, func() {
		err := ctx.Err()
		b.canceled.Store(&err)
		// Closing the socket wakes a blocked Read; the server sees the
		// client go away and aborts the backup.
		_ = c.pg.Conn().Close()
	})
	// Between commands pgx holds nothing and the next byte starts a
	// message: the framer can follow the boundaries from here.
	if fr := c.framer; fr != nil && c.pg.Frontend().ReadBufferLen() == 0 && fr.rp == fr.wp {
		fr.start()
		b.framed = true
	}
	if err := b.start(ctx, opts); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

// start sends the command and reads up to the first CopyOutResponse.
func (b *BaseBackup) start(ctx context.Context, opts BaseBackupOptions) error {
	pg := b.conn.pg
	pg.Frontend().Send(&pgproto3.Query{String: opts.command(b.conn.ServerVersion())})
	if err := b.conn.flush(ctx); err != nil {
		// A write cut short leaves part of a message on the wire, and
		// a Terminate after it would only wait on the same full
		// buffer: drop the connection.
		_ = pg.Conn().Close()
		return b.fail(fmt.Errorf("send command: %w", err))
	}

	rows, next, err := b.readResult(ctx, nil)
	if err != nil {
		return err
	}
	b.StartLSN, b.Timeline, err = parsePosition(rows)
	if err != nil {
		return b.fail(fmt.Errorf("start position: %w", err))
	}

	rows, next, err = b.readResult(ctx, next)
	if err != nil {
		return err
	}
	b.total = 0
	for _, row := range rows {
		ts, err := parseTablespace(row)
		if err != nil {
			return b.fail(err)
		}
		b.Tablespaces = append(b.Tablespaces, ts)
		if ts.Size < 0 || b.total < 0 {
			b.total = -1
		} else {
			b.total += ts.Size
		}
	}
	if len(b.Tablespaces) == 0 {
		return b.fail(fmt.Errorf("%w: empty tablespace list", ErrProtocol))
	}

	if next == nil {
		if next, err = b.receive(ctx); err != nil {
			return err
		}
	}
	if _, ok := next.(*pgproto3.CopyOutResponse); !ok {
		return b.fail(fmt.Errorf("%w: got %T, want CopyOutResponse", ErrProtocol, next))
	}
	if b.newForm {
		b.inCopy = true
	} else {
		// The old form's first COPY is the first tablespace's tar.
		b.peeked = next
	}
	return nil
}

// Progress reports the archive bytes received so far and the expected
// total (-1 unless PROGRESS was requested). The total is the server's
// estimate; done may exceed it. Safe to call from any goroutine.
func (b *BaseBackup) Progress() (done, total int64) {
	return b.received.Load(), b.total
}

// ServerProgress reports the bytes the server says it has sent, from the
// PostgreSQL 15+ progress messages; 0 before 15. Safe to call from any
// goroutine.
func (b *BaseBackup) ServerProgress() int64 {
	return b.server.Load()
}

// parsePosition reads a (recptr text, tli int8) result: BASE_BACKUP's start
// and end positions.
func parsePosition(rows [][][]byte) (pglogrepl.LSN, int32, error) {
	if len(rows) != 1 || len(rows[0]) != 2 {
		return 0, 0, fmt.Errorf("%w: want one row of two columns", ErrProtocol)
	}
	lsn, err := pglogrepl.ParseLSN(string(rows[0][0]))
	if err != nil {
		return 0, 0, fmt.Errorf("parse LSN: %w", err)
	}
	tli, err := strconv.ParseInt(string(rows[0][1]), 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("parse timeline: %w", err)
	}
	return lsn, int32(tli), nil
}

// parseTablespace reads one (spcoid oid, spclocation text, size int8) row.
// The main data directory has NULL oid and location; size is NULL without
// PROGRESS, and in kilobytes otherwise.
func parseTablespace(row [][]byte) (Tablespace, error) {
	if len(row) != 3 {
		return Tablespace{}, fmt.Errorf("%w: tablespace row has %d columns, want 3", ErrProtocol, len(row))
	}
	ts := Tablespace{Size: -1}
	if row[0] != nil {
		oid, err := strconv.ParseUint(string(row[0]), 10, 32)
		if err != nil {
			return Tablespace{}, fmt.Errorf("parse tablespace oid: %w", err)
		}
		ts.OID = uint32(oid)
	}
	ts.Location = string(row[1])
	if row[2] != nil {
		kb, err := strconv.ParseInt(string(row[2]), 10, 64)
		if err != nil {
			return Tablespace{}, fmt.Errorf("parse tablespace size: %w", err)
		}
		ts.Size = kb * 1024
	}
	return ts, nil
}
