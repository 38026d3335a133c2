package restore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// ErrMissingWAL is returned (wrapped) when a WAL segment recovery needs is
// not in the archive.
var ErrMissingWAL = errors.New("WAL segment missing from archive")

// walIndex maps the archived segment names of a site and the sites it
// moved from to the archive holding the copy recovery reads.
type walIndex map[string]*archive.Archive

// listWAL lists the segments of a and of the sites it moved from
// (Archive.ListWAL). A segment in several is read from the first, in the
// order wal-fetch searches them: a, then a.MovedFrom.
func listWAL(ctx context.Context, a *archive.Archive) (walIndex, error) {
	files, err := a.ListWAL(ctx)
	if err != nil {
		return nil, err
	}
	return holders(archive.SegmentIndex(files)), nil
}

// PartialTail is the .partial object that ends the archive and stands in
// for its missing segment (archive.WALListing.StandIn): recovery replays
// it up to End, the end of its data, and ends there.
type PartialTail struct {
	Segment string          // the segment it stands in for
	Key     string          // the .partial object
	File    archive.WALFile // the .partial object, as listed
	// End is where its WAL ends, read from its decoded content
	// (archive.Archive.PartialDataSize), never from its metadata alone:
	// a restore must not promise WAL the object does not hold.
	End pglogrepl.LSN
	// Damaged, when not nil, says why the object is not WAL recovery
	// could read (archive.NotWAL: it does not decode, or it is another
	// segment's); End is then the segment's start. wal-fetch refuses it.
	Damaged error
}

// FindPartialTail returns the .partial that stands in at the end of a's
// archive (with the sites it moved from), nil when none does. At most one
// can: it must be the newest WAL of the newest timeline.
func FindPartialTail(ctx context.Context, a *archive.Archive, segSize uint64) (*PartialTail, error) {
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		return nil, err
	}
	return PartialTailOf(ctx, l, segSize)
}

// PartialTailOf is FindPartialTail in the listing l: the .partial's
// content is read through l (WALListing.PartialDataSize), so a caller
// that asks l for its End too downloads it once.
func PartialTailOf(ctx context.Context, l *archive.WALListing, segSize uint64) (*PartialTail, error) {
	for name := range l.Partials {
		p, ok := l.StandIn(name)
		if !ok {
			continue
		}
		seg, err := wal.ParseSegmentName(name, segSize)
		if err != nil {
			return nil, err
		}
		n, err := l.PartialDataSize(ctx, p)
		if archive.NotWAL(err) {
			return &PartialTail{Segment: name, Key: p.Key, File: p, End: seg.StartLSN(segSize), Damaged: err}, nil
		}
		if err != nil {
			return nil, err
		}
		if uint64(n) > segSize || n < wal.PageHeaderSize {
			// Not WAL recovery could read; wal-fetch's checks refuse it.
			return nil, fmt.Errorf("%s holds %d bytes of WAL, not between %d and the %d-byte segment size: damaged object",
				p.Key, n, wal.PageHeaderSize, segSize)
		}
		return &PartialTail{Segment: name, Key: p.Key, File: p, End: seg.StartLSN(segSize) + pglogrepl.LSN(n)}, nil
	}
	return nil, nil
}

// recoveryTail is PartialTailOf in what of stored the recovery of b
// reads (archive.Archive.RecoveryListing), as wal-fetch delivers it to
// the restored cluster (its system and timeline from pg_control, b's):
// after a pg_upgrade into the site, the upgraded cluster's .partial ends
// its WAL although the old cluster's later timeline is there.
func recoveryTail(ctx context.Context, a *archive.Archive, stored *archive.WALListing, b *archive.BackupInfo) (*PartialTail, error) {
	own, err := a.RecoveryListing(ctx, stored, b.StartTimeline, BackupSystem(b), b.ReplayStart())
	if err != nil {
		return nil, err
	}
	return PartialTailOf(ctx, own, b.SegmentSize())
}

// holders maps each key of files to the archive holding its file.
func holders[K comparable](files map[K]archive.WALFile) map[K]*archive.Archive {
	out := make(map[K]*archive.Archive, len(files))
	for k, f := range files {
		out[k] = f.Archive
	}
	return out
}

// historyIndex maps the timelines with an archived history file to the
// archive holding it.
type historyIndex map[uint32]*archive.Archive

// damagedHistories maps the timelines whose history file wal-fetch
// reads first is stored damaged (archive.DamagedWAL: a local store's
// FIFO, socket or directory under its name) to that entry. wal-fetch
// fails on it with the store's error (exit 255), never "not archived"
// (exit 1): PostgreSQL stops where it asks for it, so to a restore it is
// neither a history file nor an absent one.
type damagedHistories map[uint32]archive.DamagedWAL

// listHistories lists the timelines whose .history file is archived in a
// or a site it moved from (Archive.ListStoredHistories); the first of
// them holding a file wins. A timeline whose file wal-fetch reads first
// is stored damaged is in the second map only, even where a later site
// holds a readable copy: wal-fetch never reaches it.
func listHistories(ctx context.Context, a *archive.Archive) (historyIndex, damagedHistories, error) {
	files, damaged, err := a.ListStoredHistories(ctx)
	if err != nil {
		return nil, nil, err
	}
	h := holders(files)
	var dmg damagedHistories
	for name, d := range damaged {
		tli, err := wal.ParseHistoryFileName(name)
		if err != nil {
			continue
		}
		delete(h, tli)
		if dmg == nil {
			dmg = damagedHistories{}
		}
		dmg[tli] = d
	}
	return h, dmg, nil
}

// damagedHistoryError says that d, the history file of timeline tli, is
// stored damaged, with what is there and what to do (the store's words,
// wrapped), as hoard verify names it, with its site where a, the archive
// restored from, has moved_from sites, and where a good copy is; asks
// says when PostgreSQL asks restore_command for it and what follows.
func damagedHistoryError(a *archive.Archive, d archive.DamagedWAL, tli uint32, asks string) error {
	return fmt.Errorf("timeline history file %s%s is stored damaged, and no read returns it: %w; %s. "+
		"A server on timeline %d or later holds a good copy of %s in pg_wal to store in its place",
		d.Key, a.InSite(d.Archive), d.Err, asks, tli, d.Name)
}

// targetTimeline resolves recovery_target_timeline as PostgreSQL does:
// current is the backup's timeline, latest the newest timeline reached by
// probing history files upwards from it (findNewestTimeLine).
func targetTimeline(spec string, start uint32, h historyIndex) uint32 {
	switch spec {
	case "current":
		return start
	case "", "latest":
		t := start
		for h[t+1] != nil {
			t++
		}
		return t
	}
	n, _ := strconv.ParseUint(spec, 10, 32)
	return uint32(n)
}

// RecoveryPath reads the target timeline's history (spec is
// recovery_target_timeline: latest, current or a number) from a or a site
// it moved from, and returns the timelines recovery of b follows. It fails when the target timeline does
// not descend from the backup's.
func RecoveryPath(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, spec string) (wal.History, error) {
	hs, err := ListHistories(ctx, a)
	if err != nil {
		return nil, err
	}
	return RecoveryPathIn(ctx, a, hs, b, spec)
}

// Histories is a listing of the timeline history files of an archive and
// of the sites it moved from, as recovery reads them (ListHistories),
// for a caller that judges many backups against one listing
// (RecoveryPathIn, DamagedHistoryIn): hoard verify and the daemon's
// check of the kept backups' WAL, which would otherwise list timeline/
// again for each backup, each listing a request to the storage.
type Histories struct {
	h   historyIndex
	dmg damagedHistories

	// server is the history of the timeline the daemon streams, as the
	// server gave it (SetServerHistory); zero: none.
	server ServerHistory

	mu sync.Mutex
	// othersOf holds the answers of others, the other systems' history
	// files above a timeline.
	othersOf map[othersKey][]*archive.OtherSystemHistoryError
	// wal is the listing of the WAL walFiles made; nil until then.
	wal []archive.WALFile
}

// ListHistories lists the timeline history files of a and the sites it
// moved from: the first site holding one wins, and one stored damaged
// that wal-fetch reads first is listed as damaged (listHistories). Their
// reads go through the archives listed: pass a marking archive to have
// them marked.
func ListHistories(ctx context.Context, a *archive.Archive) (*Histories, error) {
	h, dmg, err := listHistories(ctx, a)
	if err != nil {
		return nil, err
	}
	return &Histories{h: h, dmg: dmg}, nil
}

// HistoriesOf is ListHistories from l, a listing of the archive's WAL
// (archive.Archive.ListStoredWAL), which lists its history files too:
// its readable ones (Histories) and those stored damaged (in Damaged, by
// name).
func HistoriesOf(l *archive.WALListing) *Histories {
	hs := &Histories{h: holders(l.Histories)}
	for name, d := range l.Damaged {
		tli, err := wal.ParseHistoryFileName(name)
		if err != nil {
			continue // a file under xlog/
		}
		delete(hs.h, tli)
		if hs.dmg == nil {
			hs.dmg = damagedHistories{}
		}
		hs.dmg[tli] = d
	}
	return hs
}

// RecoveryPathIn is RecoveryPath with the history files listed in hs
// (ListHistories of a), not listed again; the other systems' history
// files above b's timeline, for b's system, are found once in hs for all
// the backups it judges (latestFor).
func RecoveryPathIn(ctx context.Context, a *archive.Archive, hs *Histories, b *archive.BackupInfo, spec string) (wal.History, error) {
	h, dmg := hs.h, hs.dmg
	tli := targetTimeline(spec, b.StartTimeline, h)
	if spec == "" || spec == "latest" {
		var refused, err error
		if tli, refused, err = latestFor(ctx, a, hs, b.StartTimeline, BackupSystem(b), b.ReplayStart()); err != nil || refused != nil {
			return nil, errors.Join(err, refused)
		}
	}
	if tli == b.StartTimeline {
		return wal.History{{Timeline: tli}}, nil
	}
	p := hs.server.pathOf(tli, BackupSystem(b))
	if p == nil {
		var err error
		if p, err = readHistory(ctx, a, h, dmg, tli, BackupSystem(b)); err != nil {
			return nil, err
		}
	}
	if !p.Contains(b.StartTimeline, backupEndLSN(b)) {
		return nil, fmt.Errorf("%w: timeline %d does not descend from backup %s (timeline %d at %s)",
			ErrBadTarget, tli, b.Name, b.StartTimeline, backupEndLSN(b))
	}
	return p, nil
}

// ServerHistory is the history of timeline Path.Timeline() of database
// system System as its server gave it over the replication protocol
// (TIMELINE_HISTORY) to the daemon streaming it, which holds only the
// public key of an encrypted site as it should and cannot read the
// archived copy. For that system it is authoritative: the archived copy
// is an object anyone who can write the bucket can replace, and its
// metadata is not authenticated.
type ServerHistory struct {
	System uint64
	Path   wal.History
}

// pathOf returns the history of timeline tli, one of the timelines of
// h's path, for the recovery of a backup of database system system:
// the path up to tli, as tli's own history file reads. nil when h does
// not speak of tli or of system (a backup recording none: PGHoard's).
func (h ServerHistory) pathOf(tli uint32, system uint64) wal.History {
	if h.System == 0 || system != h.System {
		return nil
	}
	for i, e := range h.Path {
		if e.Timeline == tli {
			return slices.Clone(h.Path[:i+1])
		}
	}
	return nil
}

// SetServerHistory has RecoveryPathIn take the history of the timelines
// of s's path for the backups of s's system from s, not from the
// archive: the daemon's WAL archive check, with the history the server
// it streams gave it. Which timeline recovery reaches is still found
// from the archive's listing, as PostgreSQL's probe does; a timeline
// that is not on s's path is read from the archive.
func (hs *Histories) SetServerHistory(s ServerHistory) { hs.server = s }

// BackupSystem returns the system identifier b's metadata records, 0 when
// none (PGHoard's backups): the history files recovery of b follows must
// not be signed for another system (a site sharing the key pair).
func BackupSystem(b *archive.BackupInfo) uint64 {
	n, _ := strconv.ParseUint(b.SystemID, 10, 64)
	return n
}

// readHistory reads and parses the history of timeline tli, the archive
// holding it found in h, for the cluster whose system identifier is
// system (0: not checked). Timeline 1 has none: its path is itself. One
// stored damaged (dmg) is named as such, not as not archived. a is the
// archive restored from: an object is named with its site where a has
// moved_from sites (Archive.InSite).
func readHistory(ctx context.Context, a *archive.Archive, h historyIndex, dmg damagedHistories, tli uint32, system uint64) (wal.History, error) {
	name := wal.HistoryFileName(tli)
	if d, ok := dmg[tli]; ok {
		return nil, fmt.Errorf("timeline %d: %w", tli, damagedHistoryError(a, d, tli, fmt.Sprintf(
			"PostgreSQL asks restore_command for it to recover along timeline %d, and wal-fetch refuses it (exit 255), "+
				"so PostgreSQL would stop with the data directory written", tli)))
	}
	src := h[tli]
	if src == nil {
		if tli == 1 {
			return wal.History{{Timeline: 1}}, nil
		}
		return nil, fmt.Errorf("timeline %d: %s is not archived: %w", tli, name, ErrMissingWAL)
	}
	p, err := archive.WALFile{Name: name, Key: src.Layout.WALKey(name), Archive: src}.ReadHistory(ctx, system)
	if err == nil || ctx.Err() != nil || errors.Is(err, storage.ErrNotFound) || errors.Is(err, archive.ErrNoPrivateKey) {
		return p, err
	}
	// The file is there and does not read: wal-fetch refuses it too, and
	// the error says what can be done (a store that failed reads the same,
	// hence the "if").
	where := ""
	if in := a.InSite(src); in != "" {
		where = fmt.Sprintf("timeline history file %s%s: ", src.Layout.WALKey(name), in)
	}
	return nil, fmt.Errorf("%s%w; PostgreSQL asks restore_command for %s to recover along timeline %d, and wal-fetch delivers it only "+
		"when it reads and passes these checks: if it is damaged or planted, store a good copy in its place (a server on timeline %d "+
		"or later holds one in pg_wal), or delete a planted one; hoard verify names the history files that fail their checks",
		where, err, name, tli, tli)
}

// TargetPath reads the path of timelines that leads to a numeric
// recovery_target_timeline spec from a and the sites it moved from, for
// SelectBackup; nil for latest and current, which depend on the backup.
func TargetPath(ctx context.Context, a *archive.Archive, spec string) (wal.History, error) {
	t := Target{Timeline: spec}
	tli := t.timelineLimit()
	if tli == 0 {
		return nil, nil
	}
	h, dmg, err := listHistories(ctx, a)
	if err != nil {
		return nil, err
	}
	// No backup is chosen yet: RecoveryPath checks the system.
	return readHistory(ctx, a, h, dmg, tli, 0)
}

// LatestPaths reads, for each start timeline of backups, the history of
// the timeline recovery_target_timeline 'latest' reaches from it for the
// cluster of database system system (as RecoveryPath would for its
// backups; latestFor), from a and the sites it moved from, for
// SelectBackup. Each history is read once. The search for system's own
// WAL behind another system's history file is bounded by where its
// backups' recovery starts (systemReplayStart).
func LatestPaths(ctx context.Context, a *archive.Archive, backups []*archive.BackupInfo, system uint64) (map[uint32]wal.History, error) {
	h, dmg, err := listHistories(ctx, a)
	if err != nil {
		return nil, err
	}
	hs := &Histories{h: h, dmg: dmg}
	read := map[uint32]wal.History{}
	paths := map[uint32]wal.History{}
	from := systemReplayStart(backups, system)
	for _, b := range backups {
		start := b.StartTimeline
		if _, ok := paths[start]; ok {
			continue
		}
		// A history file wal-fetch refuses for system: the probe's
		// timeline as before (RecoveryPath refuses the backup chosen).
		// Shared by the backups of one start timeline, bounded by where
		// the recovery of system's backups starts (from).
		tli, _, err := latestFor(ctx, a, hs, start, system, from)
		if err != nil {
			return nil, err
		}
		if tli == start {
			paths[start] = wal.History{{Timeline: tli}}
			continue
		}
		p, ok := read[tli]
		if !ok {
			// Not checked against b's system: one planted backup of
			// another would fail the choice among all. RecoveryPath
			// checks it for the backup chosen.
			if p, err = readHistory(ctx, a, h, dmg, tli, 0); err != nil {
				return nil, fmt.Errorf("timeline %d: %w", tli, err)
			}
			read[tli] = p
		}
		paths[start] = p
	}
	return paths, nil
}

// systemReplayStart returns a lower bound of where the recovery of every
// backup of system in backups starts (archive.LowestReplayStart), no
// bound where none is of system. The paths LatestPaths reads are
// system's recovery: only its own WAL at or after that bound can be WAL a
// history file of its own would lead it to (archive.IgnoreOtherHistory),
// so another system's segments below it are not read. After a
// pg_upgrade into the same site, the old cluster's segments on its later
// timelines all lie below the upgraded cluster's backups.
func systemReplayStart(backups []*archive.BackupInfo, system uint64) archive.ReplayStart {
	var rs []archive.ReplayStart
	for _, b := range backups {
		if BackupSystem(b) == system {
			rs = append(rs, b.ReplayStart())
		}
	}
	return archive.LowestReplayStart(rs)
}

// backupEndLSN returns the backup's end, or its start when the end is not
// recorded.
func backupEndLSN(b *archive.BackupInfo) pglogrepl.LSN {
	if e := endLSN(b); e != 0 {
		return e
	}
	return b.StartLSN
}

// LastSegment returns the number of the last segment recovery of b must
// read to become consistent: the one holding the byte before the end LSN
// when hoard recorded it, else the end segment PGHoard recorded, else the
// start segment (PGHoard records no end for a backup of a standby).
func LastSegment(b *archive.BackupInfo, start wal.Segment) (uint64, error) {
	segSize := b.SegmentSize()
	if b.EndLSN > b.StartLSN {
		return uint64(b.EndLSN-1) / segSize, nil
	}
	if b.EndWALSegment != "" {
		end, err := wal.ParseSegmentName(b.EndWALSegment, segSize)
		if err != nil {
			return 0, fmt.Errorf("backup %s: end segment: %w", b.Name, err)
		}
		return end.No, nil
	}
	return start.No, nil
}

// checkWAL checks that every segment from b's start to its end, and on to
// upTo (when beyond the end), is archived on the timelines of path, and
// returns the last segment of the unbroken run that follows. The first gap
// is named in the error, on the timeline recovery would read it from.
func checkWAL(w walIndex, b *archive.BackupInfo, p wal.History, upTo pglogrepl.LSN) (string, error) {
	last, _, err := checkWALGap(w, nil, b, p, upTo)
	return last, err
}

// checkWALGap is checkWAL that also returns the gap, if any, where the
// unbroken run ends while stored WAL of the path lies beyond it. tail,
// when not nil, is the .partial that ends the archive: where the run
// reaches its segment, it continues into it and ends there (its name,
// with the .partial suffix, is then the last returned), and upTo must
// lie within its data.
func checkWALGap(w walIndex, tail *PartialTail, b *archive.BackupInfo, p wal.History, upTo pglogrepl.LSN) (string, *WALGap, error) {
	segSize := b.SegmentSize()
	start, err := wal.ParseSegmentName(b.StartWALSegment, segSize)
	if err != nil {
		return "", nil, fmt.Errorf("backup %s: start segment: %w", b.Name, err)
	}
	end, err := LastSegment(b, start)
	if err != nil {
		return "", nil, err
	}
	need := end
	if uint64(upTo)/segSize > need {
		need = uint64(upTo) / segSize
	}
	last := ""
	for no := start.No; ; no++ {
		tlis := p.Timelines(no, segSize)
		found := ""
		for _, tli := range tlis {
			if n := (wal.Segment{Timeline: tli, No: no}).Name(segSize); w[n] != nil {
				found = n
				break
			}
		}
		if found != "" {
			last = found
			continue
		}
		if tail != nil && slices.ContainsFunc(tlis, func(tli uint32) bool {
			return wal.Segment{Timeline: tli, No: no}.Name(segSize) == tail.Segment
		}) {
			if tail.Damaged != nil {
				return tail.Segment + wal.PartialSuffix, nil, fmt.Errorf("the archive ends in %s, which is damaged (%v); "+
					"delete it to restore up to the WAL before it: %w", tail.Key, tail.Damaged, ErrMissingWAL)
			}
			if upTo > tail.End {
				return tail.Segment + wal.PartialSuffix, nil, fmt.Errorf("WAL up to the recovery target %s: the archive ends at %s, in %s%s: "+
					"if that WAL was written since, run select pg_switch_wal() on the primary, wait until hoard list shows "+
					"the stored WAL past the target, then restore again; or restore to a target at or before LSN %s: %w",
					upTo, tail.End, tail.Segment, wal.PartialSuffix, tail.End, ErrMissingWAL)
			}
			if no <= end && uint64(backupEndLSN(b)) > uint64(tail.End) {
				return tail.Segment + wal.PartialSuffix, nil, fmt.Errorf("the backup's WAL: the archive ends at %s, in %s%s, before the backup's end %s: %w",
					tail.End, tail.Segment, wal.PartialSuffix, backupEndLSN(b), ErrMissingWAL)
			}
			return tail.Segment + wal.PartialSuffix, nil, nil
		}
		if no > need {
			return last, findGap(w, tail, p, no, segSize, start, last), nil
		}
		tli := start.Timeline
		if len(tlis) > 0 {
			tli = tlis[0]
		}
		missing := wal.Segment{Timeline: tli, No: no}.Name(segSize)
		if no <= end {
			return last, nil, fmt.Errorf("the backup's WAL: %s is not archived, and the backup cannot become consistent without it: "+
				"it is archived by hoard daemon (streaming the site) or archive_command; hoard archive-sync on the primary "+
				"stores what its pg_wal still holds; or restore an older backup with --basebackup NAME (hoard list): %w",
				missing, ErrMissingWAL)
		}
		// The target lies past the WAL the backup needs: say where
		// recovery would stop, and what gets it further.
		if g := findGap(w, tail, p, no, segSize, start, last); g != nil {
			return last, nil, fmt.Errorf("WAL up to the recovery target %s: %s; store the missing segments "+
				"(hoard archive-sync from the primary's pg_wal, or another copy), or restore to a target before LSN %s: %w",
				upTo, g, g.ReachLSN, ErrMissingWAL)
		}
		return last, nil, fmt.Errorf("WAL up to the recovery target %s: %s is not archived, the archive ends at LSN %s (end of %s): "+
			"if that WAL was written since, run select pg_switch_wal() on the primary, wait until hoard list shows "+
			"the stored WAL past the target, then restore again: %w",
			upTo, missing, pglogrepl.LSN(no*segSize), last, ErrMissingWAL)
	}
}

// ErrWALGap is returned (wrapped) when the archived WAL after a backup's
// end has a gap with stored WAL beyond it: recovery to the end of the
// archive would stop at the gap and promote, and every transaction in the
// WAL after it would be lost without a word from PostgreSQL.
var ErrWALGap = errors.New("gap in the archived WAL")

// WALGap is a run of missing segments after a backup's end, followed by
// stored WAL that recovery cannot reach.
type WALGap struct {
	First, Last string // the missing segments, on the timeline recovery reads
	Next        string // the first stored segment after the gap
	// ReachSegment is the last segment recovery replays and ReachLSN where
	// it ends: the furthest point recovery reaches.
	ReachSegment string
	ReachLSN     pglogrepl.LSN
	// Damaged are the gap's segments stored in a state no read returns
	// (archive.WALListing.Damaged: a local store's FIFO, socket or
	// directory under the name), by name: missing to recovery all the
	// same, but named with what is there.
	Damaged []archive.DamagedWAL
	// a is the archive restored from, whose Archive.InSite names the
	// site holding each Damaged entry where it has moved_from sites.
	a *archive.Archive
}

// String describes the gap for people.
func (g *WALGap) String() string {
	missing := g.First
	if g.Last != g.First {
		missing += " through " + g.Last
	}
	return fmt.Sprintf("%s missing, %s and later stored; recovery stops at LSN %s (end of %s)%s",
		missing, g.Next, g.ReachLSN, g.ReachSegment, damagedNote(g.a, g.Damaged))
}

// gapDamaged adds to e, a log event about gap, the gap's segments stored
// damaged (WALGap.Damaged), as the daemon's WAL archive check logs them:
// how many, the first one's object and the store's words for it (what is
// there, what to do). Nothing when there are none: the gap is missing WAL.
func gapDamaged(e *zerolog.Event, gap *WALGap) *zerolog.Event {
	if len(gap.Damaged) == 0 {
		return e
	}
	return e.Int("stored_damaged", len(gap.Damaged)).Str("damaged", gap.Damaged[0].Key).Str("damaged_error", gap.Damaged[0].Err.Error())
}

// storedDamaged returns the entries of damaged (archive.WALListing.Damaged)
// stored under the name of a segment numbered from to to (inclusive) on
// one of path p's timelines, by name: segments a check found missing
// that are stored damaged rather than absent.
func storedDamaged(damaged map[string]archive.DamagedWAL, p wal.History, from, to, segSize uint64) []archive.DamagedWAL {
	var out []archive.DamagedWAL
	for name, d := range damaged {
		seg, err := wal.ParseSegmentName(name, segSize)
		if err != nil || seg.No < from || seg.No > to || !slices.Contains(p.Timelines(seg.No, segSize), seg.Timeline) {
			continue
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b archive.DamagedWAL) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// damagedNote says, for an error or a gap, that the segments of ds are
// stored damaged, with what is there and what to do (the store's words),
// as hoard verify names them, each with its site where a, the archive
// restored from, has moved_from sites; "" when ds is empty.
func damagedNote(a *archive.Archive, ds []archive.DamagedWAL) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "; WAL segment %s%s is stored damaged, and no read returns it: %v", d.Key, a.InSite(d.Archive), d.Err)
	}
	return b.String()
}

// missingDamaged returns, for checkWALGap's error, the damaged entries
// (archive.WALListing.Damaged) stored under the name of the segment it
// found missing: the one after last on p (b's start segment when last is
// empty). None when last is a .partial (the error is the tail's).
func missingDamaged(damaged map[string]archive.DamagedWAL, b *archive.BackupInfo, p wal.History, last string) []archive.DamagedWAL {
	if len(damaged) == 0 || wal.IsPartialName(last) {
		return nil
	}
	segSize := b.SegmentSize()
	name := b.StartWALSegment
	if last != "" {
		name = last
	}
	seg, err := wal.ParseSegmentName(name, segSize)
	if err != nil {
		return nil
	}
	if last != "" {
		seg.No++
	}
	return storedDamaged(damaged, p, seg.No, seg.No, segSize)
}

// findGap returns the gap that starts at segment no of the path p, when a
// segment of one of p's timelines, or the .partial tail, is stored after
// it; last is the last segment of the unbroken run before it. nil when no
// WAL lies beyond.
func findGap(w walIndex, tail *PartialTail, p wal.History, no, segSize uint64, start wal.Segment, last string) *WALGap {
	var next *wal.Segment
	names := slices.Collect(maps.Keys(w))
	if tail != nil {
		names = append(names, tail.Segment)
	}
	for _, name := range names {
		seg, err := wal.ParseSegmentName(name, segSize)
		if err != nil || seg.No <= no || !slices.Contains(p.Timelines(seg.No, segSize), seg.Timeline) {
			continue // not WAL recovery along p would read
		}
		if next == nil || seg.No < next.No || seg.No == next.No && seg.Timeline > next.Timeline {
			next = &seg
		}
	}
	if next == nil {
		return nil
	}
	tli := func(n uint64) uint32 {
		if tl := p.Timelines(n, segSize); len(tl) > 0 {
			return tl[0]
		}
		return start.Timeline
	}
	g := &WALGap{
		First:        wal.Segment{Timeline: tli(no), No: no}.Name(segSize),
		Last:         wal.Segment{Timeline: tli(next.No - 1), No: next.No - 1}.Name(segSize),
		Next:         next.Name(segSize),
		ReachSegment: last,
		ReachLSN:     pglogrepl.LSN(no * segSize),
	}
	return g
}
