package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// walIndex is what the site's archive, and the sites it moved from, hold
// of WAL: the segments under xlog/ and the timelines with a history file,
// each the copy recovery reads.
type walIndex struct {
	// WALListing holds the segments (Segments) and history files
	// (Histories); it reads the .partial tail's content once for
	// loadTail and the archive's end.
	*archive.WALListing
	// tail is the .partial that ends the archive, standing in for its
	// missing segment (restore.FindPartialTail); nil when none does or
	// when it is damaged.
	tail *restore.PartialTail
	// damagedTail, when not "", is the problem of a .partial tail that
	// is not WAL recovery could read: recovery ends before it.
	damagedTail string
	// ends holds, by name with the suffix, the .partial objects that end
	// a backup's system's WAL with another system's WAL after them
	// (endSystem), which its chain ends in.
	ends map[string]archive.WALFile
	// endsAt holds endSystem's answers by segment and system: each
	// .partial and the WAL after it are read once per run.
	endsAt map[systemAt]systemEnd
	// marked is WALListing read through marking archives, for
	// endSystem's reads (markedListing).
	marked *archive.WALListing
	// own holds, by segment name without the suffix, the .partial that
	// ends the WAL a backup's recovery reads where that is not the end
	// of the archive (tailFor): nil for a segment whose .partial is not
	// WAL recovery could read.
	own map[string]*restore.PartialTail
	// ownFiles holds those .partial objects by name with the suffix,
	// for file.
	ownFiles map[string]archive.WALFile
	// parsed holds Segments parsed at each segment size, by number, and
	// paths the segments recovery reads along each path (onPath).
	parsed map[uint64][]storedSegment
	paths  map[pathKey]*pathSegments
	// hist and markedHist are the history files of WALListing, read
	// through the archives listed, and through marking ones (histories):
	// each backup's recovery path is found in them, not in a listing of
	// timeline/ of its own.
	hist, markedHist *restore.Histories
	// server is the history the daemon's server gave it
	// (CheckContinuityWith), set on hist; zero: none.
	server restore.ServerHistory
}

// histories returns the timeline history files the listing holds, their
// reads marked (marking) when marked is set.
func (w *walIndex) histories(marked bool) *restore.Histories {
	if marked {
		if w.markedHist == nil {
			w.markedHist = restore.HistoriesOf(&archive.WALListing{Histories: markFiles(w.Histories, fileMarker()), Damaged: w.Damaged})
		}
		return w.markedHist
	}
	if w.hist == nil {
		w.hist = restore.HistoriesOf(w.WALListing)
		w.hist.SetServerHistory(w.server)
	}
	return w.hist
}

// systemAt is a segment name and a database system.
type systemAt struct {
	name   string
	system uint64
}

// systemEnd is an answer of restore.SystemEndTail.
type systemEnd struct {
	tail *restore.PartialTail
	end  *archive.SystemEnd
}

// loadTail finds the .partial tail of the archive listed (WAL of segment
// size segSize). A .partial the storage failed to send (storageFailed:
// listWAL marks the .partial objects' reads) ends it with an error saying
// that it could not be checked (uncheckedTail), not that it is damaged.
func (w *walIndex) loadTail(ctx context.Context, segSize uint64) error {
	t, err := restore.PartialTailOf(ctx, w.WALListing, segSize)
	if err != nil {
		return uncheckedTail(archiveTail, err)
	}
	if t != nil && t.Damaged != nil {
		w.damagedTail = fmt.Sprintf("WAL segment %s: %v", t.Key, t.Damaged)
		t = nil
	}
	w.tail = t
	return nil
}

// tailFor returns the .partial that stands in for its missing segment
// at the end of the WAL the recovery of b (of database system system,
// 0: not known) reads, as restore and wal-fetch find it
// (archive.Archive.RecoveryListing): after a pg_upgrade into the site
// whose old cluster reached a later timeline, the upgraded cluster's
// .partial ends its WAL although the old cluster's timeline is stored
// above it. Otherwise the archive's tail (loadTail). A .partial that is
// not WAL recovery could read is returned with Damaged set. The error
// is for a timeline history file or the .partial the storage failed to
// send (storageFailed; for the .partial, uncheckedTail's, saying what it
// is), or another read error.
func (w *walIndex) tailFor(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, system uint64) (*restore.PartialTail, error) {
	l, err := a.RecoveryListing(ctx, w.WALListing, b.StartTimeline, system, b.ReplayStart())
	if err != nil {
		return nil, err
	}
	if l == w.WALListing {
		return w.tail, nil
	}
	for name := range l.Partials {
		if _, ok := l.StandIn(name); !ok {
			continue
		}
		if t, ok := w.own[name]; ok {
			return t, nil
		}
		t, err := restore.PartialTailOf(ctx, l, b.SegmentSize())
		if err != nil {
			return nil, uncheckedTail(fmt.Sprintf("the WAL segment in progress of backup %s's database system (the .partial that ends "+
				"the WAL its recovery reads: the later timeline stored above it is another database system's, from before a "+
				"pg_upgrade into this site)", b.Name), err)
		}
		if w.own == nil {
			w.own, w.ownFiles = map[string]*restore.PartialTail{}, map[string]archive.WALFile{}
		}
		w.own[name] = t
		if t != nil {
			w.ownFiles[t.Segment+wal.PartialSuffix] = t.File
		}
		return t, nil
	}
	return nil, nil
}

// end returns the newest WAL byte stored (WALListing.End), the error of a
// .partial the storage failed to send as loadTail's.
func (w *walIndex) end(ctx context.Context, segSize uint64) (archive.WALEnd, error) {
	e, err := w.End(ctx, segSize)
	if err != nil {
		return e, uncheckedTail(archiveTail, err)
	}
	return e, nil
}

// endUpTo returns the newest WAL byte stored on timelines up to top, as
// end does for all of them (archive.WALListing.UpTo): the stored WAL a
// recovery that follows timelines up to top reads. The .partial data
// sizes end read are not read again.
func (w *walIndex) endUpTo(ctx context.Context, segSize uint64, top uint32) (archive.WALEnd, error) {
	e, err := w.UpTo(top).End(ctx, segSize)
	if err != nil {
		return e, uncheckedTail(fmt.Sprintf("the WAL segment in progress on timeline %d (the .partial that ends the WAL "+
			"a restore of the newest backup reads: the later timelines stored are not on its path; after a pg_upgrade "+
			"into this site, another database system's)", top), err)
	}
	return e, nil
}

// newestTimeline returns the newest timeline of a stored segment or
// .partial (0: none).
func (w *walIndex) newestTimeline() uint32 {
	var top uint32
	for _, files := range []map[string]archive.WALFile{w.Segments, w.Partials} {
		for n := range files {
			top = max(top, wal.SegmentTimeline(n))
		}
	}
	return top
}

// archiveTail is uncheckedTail's what for the .partial that ends the
// archive.
const archiveTail = "the WAL segment in progress (the .partial that ends the archive)"

// uncheckedTailError is uncheckedTail's error: verify's whole message,
// which callers return as it is rather than wrap in their own.
type uncheckedTailError struct {
	what string
	err  error
}

func (e *uncheckedTailError) Error() string {
	return fmt.Sprintf("verify: %s could not be checked: the storage failed, and nothing was found wrong with it "+
		"(no backup is reported; run verify again once the storage answers): %v", e.what, e.err)
}

func (e *uncheckedTailError) Unwrap() error { return e.err }

// uncheckedTail returns err, from reading a .partial that ends WAL (the
// segment in progress; what says which: archiveTail, or one that ends
// the WAL of a backup's system below another system's later timeline),
// as verify's error when the storage failed to send it (storageFailed):
// the WAL it holds could not be checked, and nothing was found wrong
// with it. Any other err is returned as it is.
func uncheckedTail(what string, err error) error {
	if !storageFailed(err) {
		return err
	}
	return &uncheckedTailError{what: what, err: err}
}

// file returns the stored file called name: a segment, or the .partial
// tail of the archive or of a backup's recovery.
func (w *walIndex) file(name string) archive.WALFile {
	if t := w.tail; t != nil && name == t.Segment+wal.PartialSuffix {
		return t.File
	}
	if f, ok := w.ends[name]; ok {
		return f
	}
	if f, ok := w.ownFiles[name]; ok {
		return f
	}
	return w.Segments[name]
}

// listWAL lists the segments and timeline histories of a. Its .partial
// objects are read through marking archives, so that loadTail tells the
// storage's failure to send one (storageFailed) from its damage.
func listWAL(ctx context.Context, a *archive.Archive) (*walIndex, error) {
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		return nil, err
	}
	l.Partials = markFiles(l.Partials, fileMarker())
	return &walIndex{WALListing: l}, nil
}

// damaged adds to rep's problems each file under xlog/ or timeline/ the listing found
// stored in a state no read returns (archive.WALListing.Damaged), and
// returns the names of the segments among them (nil: none), which end
// recovery as missing ones do.
func (w *walIndex) damaged(rep *Report) map[string]bool {
	var out map[string]bool
	for _, name := range slices.Sorted(maps.Keys(w.Damaged)) {
		d := w.Damaged[name]
		what := "WAL file"
		if wal.IsHistoryFile(name) {
			what = "timeline history file"
		}
		if wal.IsSegmentName(name) {
			what = "WAL segment"
			if out == nil {
				out = map[string]bool{}
			}
			out[name] = true
		}
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s %s is stored damaged, and no read returns it: %v", what, d.Key, d.Err))
	}
	return out
}

// missingHistories returns the timelines above 1 that have segments in
// xlog/ but no history file: recovery following the latest timeline cannot
// find its way onto them (PostgreSQL's findNewestTimeLine probes history
// files, never segments).
func (w *walIndex) missingHistories() []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for name := range w.Segments {
		tli := wal.SegmentTimeline(name)
		if _, ok := w.Histories[tli]; tli > 1 && !ok && !seen[tli] {
			seen[tli] = true
			out = append(out, tli)
		}
	}
	slices.Sort(out)
	return out
}

// Gap is a run of consecutive WAL segments missing from the archive, named
// on the timeline recovery would read each from.
type Gap = wal.Run

// Chain is the WAL a backup's recovery reads, as the archive holds it:
// from the backup's start segment along the timelines recovery follows
// (recovery_target_timeline latest) through the newest stored segment.
type Chain struct {
	Path        wal.History // the timelines followed, oldest first
	SegmentSize uint64      // the backup's WAL segment size
	Start       string      // the backup's start segment
	End         string      // the last segment recovery needs to become consistent
	Newest      string      // the newest stored segment on the path ("" when none)
	Segments    []string    // stored segments on the path from Start, in order
	// LastContinuous is the last segment of the unbroken run from Start
	// ("" when Start itself is missing); ReachLSN is where it ends, the
	// furthest point recovery can replay to.
	LastContinuous string
	ReachLSN       pglogrepl.LSN
	// Partial is the .partial that continues the unbroken run and ends
	// it ("" when none): its segment is not stored, and the copy stands
	// in for it at the end of the archive. ReachLSN is then the end of
	// its data.
	Partial string
	// SystemEnd, when not nil, says that Partial ends the WAL of the
	// backup's database system and another system's WAL follows it in
	// the archive (archive.WALListing.SystemEndAt: pg_upgrade into the
	// same prefix).
	SystemEnd *archive.SystemEnd
	Gaps      []Gap // every run of missing segments from Start to Newest (or End)
	// Restorable is true when no gap lies between Start and End: recovery
	// can reach a consistent state.
	Restorable bool
	// DamagedHistory, when not nil, says that a timeline history file
	// PostgreSQL asks restore_command for while it recovers the backup
	// along Path (recovery_target_timeline latest, or current where the
	// newest timeline forked before the backup ended) and promotes is
	// stored damaged (restore.DamagedHistory: in local storage, a FIFO,
	// a socket or a directory under its name): wal-fetch fails on it
	// (exit 255) and hoard restore refuses such a restore, whatever
	// Restorable says of the WAL. The latest probe stops below it as if
	// it were absent, so Path and the gaps are those below it.
	DamagedHistory error
}

// holds reports whether the segment called name is one of g, a gap of
// c, named on the timeline recovery would read it from.
func (c *Chain) holds(g Gap, name string) bool {
	s, err := wal.ParseSegmentName(name, c.SegmentSize)
	if err != nil {
		return false
	}
	first, err := wal.ParseSegmentName(g.First, c.SegmentSize)
	if err != nil {
		return false
	}
	start, err := wal.ParseSegmentName(c.Start, c.SegmentSize)
	if err != nil {
		return false
	}
	return s.No >= first.No && s.No-first.No < g.Count && nameOn(c.Path, start, s.No, c.SegmentSize) == name
}

// Continuous reports whether the chain has no gap at all.
func (c *Chain) Continuous() bool { return len(c.Gaps) == 0 }

// CheckContinuity follows b's WAL in a's archive, as Run does for every
// backup. It returns an error only when the archive cannot be listed or
// b's timeline history, or the WAL that says where b's system's WAL
// ends (endSystem), cannot be read; gaps are in the Chain.
func CheckContinuity(ctx context.Context, a *archive.Archive, b *archive.BackupInfo) (*Chain, error) {
	idx, err := listWAL(ctx, a)
	if err != nil {
		return nil, err
	}
	return idx.continuity(ctx, a, b, false, true)
}

// CheckContinuityOf is CheckContinuity of each of bs, in that order, from
// one listing of a's archive, for the daemon's periodic check that the
// WAL of every kept backup is stored (daemon/walgaps.go): the .partial
// that may end a chain is not read (no download of the segment being
// received every time), so a chain ends at its newest complete segment
// and a gap before a .partial alone is not seen until a segment after
// it is stored. A backup the newest timeline forked from before it ended
// is followed on its own timeline (recovery_target_timeline current), as
// Run does, rather than failing the check of every backup. The error
// names the backup whose WAL could not be followed.
func CheckContinuityOf(ctx context.Context, a *archive.Archive, bs []*archive.BackupInfo) ([]*Chain, error) {
	return CheckContinuityWith(ctx, a, bs, restore.ServerHistory{})
}

// CheckContinuityWith is CheckContinuityOf with the history of the
// timeline the daemon streams as its server gave it (server; zero:
// none): the recovery path of a backup of server's system onto a
// timeline of server's path is taken from it, not read from the archive
// (restore.Histories.SetServerHistory). A daemon holding only the public
// key of an encrypted site cannot read the archived history files: with
// them alone, no check after a failover or promotion could be made.
func CheckContinuityWith(ctx context.Context, a *archive.Archive, bs []*archive.BackupInfo, server restore.ServerHistory) ([]*Chain, error) {
	idx, err := listWAL(ctx, a)
	if err != nil {
		return nil, err
	}
	idx.server = server
	chains := make([]*Chain, 0, len(bs))
	for _, b := range bs {
		ch, err := idx.continuity(ctx, a, b, true, false)
		if err != nil {
			return nil, fmt.Errorf("the WAL of backup %s: %w", b.Name, err)
		}
		chains = append(chains, ch)
	}
	return chains, nil
}

// continuity is CheckContinuity of b in the archive w lists. forked
// follows b on its own timeline when the newest one forked before b
// ended (restore.ErrBadTarget); otherwise that is the error. Without
// tail, the .partial that ends b's WAL is not read (nor followed).
func (w *walIndex) continuity(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, forked, tail bool) (*Chain, error) {
	if tail {
		if err := w.loadTail(ctx, b.SegmentSize()); err != nil {
			return nil, err
		}
	}
	spec := "latest"
	hist := w.histories(false)
	path, err := restore.RecoveryPathIn(ctx, a, hist, b, spec)
	if forked && errors.Is(err, restore.ErrBadTarget) {
		spec = "current"
		path, err = restore.RecoveryPathIn(ctx, a, hist, b, spec)
	}
	if err != nil {
		return nil, err
	}
	// The latest probe stops below a history file stored damaged as if
	// it were absent: the WAL is followed below it, and the chain says
	// that restore refuses.
	damagedHistory := restore.DamagedHistoryIn(ctx, a, hist, b, path, spec, true)
	if damagedHistory != nil && !errors.Is(damagedHistory, storage.ErrObjectDamaged) {
		return nil, damagedHistory
	}
	var t *restore.PartialTail
	if tail {
		if t, err = w.tailFor(ctx, a, b, restore.BackupSystem(b)); err != nil {
			return nil, err
		}
		if t != nil && t.Damaged != nil {
			t = nil
		}
	}
	ch, err := followWAL(w, t, b, path, nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.endSystem(ctx, b, restore.BackupSystem(b), ch, nil); err != nil {
		return nil, err
	}
	ch.DamagedHistory = damagedHistory
	return ch, nil
}

// Missing returns the names of the segments of g, a gap of c, each on
// the timeline recovery would read it from (as g.First and g.Last are
// named).
func (c *Chain) Missing(g Gap) ([]string, error) {
	start, err := wal.ParseSegmentName(c.Start, c.SegmentSize)
	if err != nil {
		return nil, err
	}
	first, err := wal.ParseSegmentName(g.First, c.SegmentSize)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, g.Count)
	for no := first.No; no < first.No+g.Count; no++ {
		names = append(names, nameOn(c.Path, start, no, c.SegmentSize))
	}
	return names, nil
}

// endSystem ends ch, b's chain, at the .partial of its first gap's first
// segment where that .partial ends the WAL of b's database system and
// another system's WAL follows it (restore.SystemEndTail: pg_upgrade into
// the same prefix): recovery of b ends there, as at the end of the
// archive, and what follows is no gap of b's WAL. Only for a gap after
// b's end, and a .partial not in bad; system is b's (0: not known, ch
// is left as it was). It returns the end, nil when ch is left as it was.
// Its reads are marked (markedListing): an error storageFailed takes
// for the storage's says nothing about b's WAL.
func (w *walIndex) endSystem(ctx context.Context, b *archive.BackupInfo, system uint64, ch *Chain, bad map[string]bool) (*archive.SystemEnd, error) {
	if system == 0 || len(ch.Gaps) == 0 || lastNo(ch.Gaps[0].First, b) <= lastNo(ch.End, b) || bad[ch.Gaps[0].First+wal.PartialSuffix] {
		return nil, nil
	}
	first := ch.Gaps[0].First
	k := systemAt{first, system}
	ans, ok := w.endsAt[k]
	if !ok {
		if w.marked == nil {
			w.marked = markedListing(w.WALListing)
		}
		t, e, err := restore.SystemEndTail(ctx, w.marked, b, system, first)
		if err != nil {
			return nil, err
		}
		ans = systemEnd{t, e}
		if w.endsAt == nil {
			w.endsAt = map[systemAt]systemEnd{}
		}
		w.endsAt[k] = ans
	}
	t, e := ans.tail, ans.end
	if t == nil {
		return nil, nil
	}
	name := first + wal.PartialSuffix
	if w.ends == nil {
		w.ends = map[string]archive.WALFile{}
	}
	w.ends[name] = t.File
	// The run before the gap, then the .partial: the segments after it
	// are the other system's.
	i := slices.IndexFunc(ch.Segments, func(n string) bool { return n[:24] > first })
	if i >= 0 {
		ch.Segments = ch.Segments[:i]
	}
	// Segments is a view of names other chains share (onPath): Clip
	// makes the append copy them.
	ch.Segments = append(slices.Clip(ch.Segments), name)
	ch.LastContinuous, ch.Partial, ch.ReachLSN, ch.Newest = name, name, t.End, name
	ch.Gaps, ch.SystemEnd = nil, e
	ch.Restorable = true
	return e, nil
}

// followWAL walks the stored segments of path from b's start segment,
// then tail, the .partial that ends the WAL b's recovery reads (nil:
// none; walIndex.tailFor). Segments in bad (damaged objects) count as
// missing.
//
// Which stored segment recovery reads for each number depends on the
// path, not on b: the segments on a path are chosen once per path and
// tail (walIndex.onPath) and each backup's chain walks them from its
// start, its Segments a view of theirs. Chosen again for every backup,
// a site of hundreds of backups and a long archive parsed, mapped and
// sorted every segment name once per backup (docs/benchmarks.md, Large
// archives), and held a copy of the names per backup.
func followWAL(idx *walIndex, tail *restore.PartialTail, b *archive.BackupInfo, path wal.History, bad map[string]bool) (*Chain, error) {
	segSize := b.SegmentSize()
	start, err := b.StartSegment()
	if err != nil {
		return nil, err
	}
	endNo, err := restore.LastSegment(b, start)
	if err != nil {
		return nil, err
	}
	on := idx.onPath(path, segSize, tail, bad)
	first, _ := slices.BinarySearch(on.nos, start.No)
	nos := on.nos[first:]

	c := &Chain{Path: path, SegmentSize: segSize, Start: start.Name(segSize), End: nameOn(path, start, endNo, segSize)}
	missing := func(from, to uint64) {
		c.Gaps = append(c.Gaps, Gap{
			First: nameOn(path, start, from, segSize),
			Last:  nameOn(path, start, to, segSize),
			Count: to - from + 1,
		})
	}
	next := start.No
	lastCont := uint64(0)
	continuous := true
	for i, no := range nos {
		if no > next {
			missing(next, no-1)
			continuous = false
		}
		if continuous {
			c.LastContinuous = on.names[first+i]
			lastCont = no
		}
		next = no + 1
	}
	// A view of the names chosen, its capacity cut to its length: an
	// append (endSystem's) copies rather than writing into the other
	// chains' names.
	n := len(on.nos)
	c.Segments = on.names[first:n:n]
	if c.LastContinuous != "" {
		c.ReachLSN = wal.Segment{No: lastCont + 1}.StartLSN(segSize)
	}
	restorable := c.LastContinuous != "" && lastCont >= endNo
	if t := tail; t != nil && on.tail {
		// on.names[n] is the tail's name (onPath).
		s, err := wal.ParseSegmentName(t.Segment, segSize)
		if err == nil && s.No >= next {
			name := t.Segment + wal.PartialSuffix
			if s.No > next {
				missing(next, s.No-1)
				continuous = false
			}
			if continuous {
				c.LastContinuous, c.Partial, c.ReachLSN = name, name, t.End
				restorable = s.No > endNo || s.No == endNo && b.EndLSN != 0 && t.End >= b.EndLSN
			}
			c.Segments = on.names[first : n+1 : n+1]
			next = s.No + 1
		}
	}
	if endNo >= next {
		missing(next, endNo)
	}
	if len(c.Segments) > 0 {
		c.Newest = c.Segments[len(c.Segments)-1]
	}
	c.Restorable = restorable
	return c, nil
}

// pathSegments are the stored segments recovery reads along a path,
// each number once, in order: for each number the segment on the newest
// timeline of the path that has it. names[len(nos)], when tail is set,
// is the name of the .partial that may end the WAL (followWAL).
type pathSegments struct {
	nos   []uint64
	names []string
	tail  bool
}

// pathKey identifies the segments onPath chose: the path, the segment
// size and the .partial tail.
type pathKey struct {
	path    string
	segSize uint64
	tail    *restore.PartialTail
}

// storedSegment is a stored segment's name parsed at a segment size.
type storedSegment struct {
	no   uint64
	tli  uint32
	name string
}

// onPath returns the stored segments recovery reads along path (of
// segments of segSize bytes), those in bad (damaged objects) left out,
// and tail's name after them where its timeline is on the path. The
// listing is parsed once per segment size, and the choice made once per
// path and tail; with bad, whose contents vary, it is made anew.
func (w *walIndex) onPath(path wal.History, segSize uint64, tail *restore.PartialTail, bad map[string]bool) *pathSegments {
	key := pathKey{fmt.Sprint(path), segSize, tail}
	if p, ok := w.paths[key]; ok && len(bad) == 0 {
		return p
	}
	parsed, ok := w.parsed[segSize]
	if !ok {
		for name := range w.Segments {
			if s, err := wal.ParseSegmentName(name, segSize); err == nil {
				parsed = append(parsed, storedSegment{s.No, s.Timeline, name})
			}
		}
		slices.SortFunc(parsed, func(x, y storedSegment) int { return cmp.Compare(x.no, y.no) })
		if w.parsed == nil {
			w.parsed = map[uint64][]storedSegment{}
		}
		w.parsed[segSize] = parsed
	}
	p := &pathSegments{}
	rank := -1
	for _, s := range parsed {
		if bad[s.name] {
			continue
		}
		i := slices.Index(path.Timelines(s.no, segSize), s.tli)
		if i < 0 {
			continue
		}
		if n := len(p.nos); n > 0 && p.nos[n-1] == s.no {
			if i < rank {
				p.names[n-1], rank = s.name, i
			}
			continue
		}
		p.nos, p.names, rank = append(p.nos, s.no), append(p.names, s.name), i
	}
	if tail != nil && !bad[tail.Segment+wal.PartialSuffix] {
		s, err := wal.ParseSegmentName(tail.Segment, segSize)
		if err == nil && slices.Contains(path.Timelines(s.No, segSize), s.Timeline) {
			p.names, p.tail = append(p.names, tail.Segment+wal.PartialSuffix), true
		}
	}
	if len(bad) == 0 {
		if w.paths == nil {
			w.paths = map[pathKey]*pathSegments{}
		}
		w.paths[key] = p
	}
	return p
}

// nameOn names segment no on the timeline recovery reads it from: the
// newest of path's timelines that has it.
func nameOn(path wal.History, start wal.Segment, no, segSize uint64) string {
	tli := start.Timeline
	if tlis := path.Timelines(no, segSize); len(tlis) > 0 {
		tli = tlis[0]
	}
	return wal.Segment{Timeline: tli, No: no}.Name(segSize)
}
