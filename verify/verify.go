package verify

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// DefaultParallel is how many objects Run checks at once.
const DefaultParallel = 4

// Options configure Run.
type Options struct {
	Archive *archive.Archive
	// Full downloads and decodes every chunk and every WAL segment the
	// backups need, and compares every file with the backup's
	// backup_manifest, instead of checking that the chunks exist with
	// their recorded sizes.
	Full     bool
	Parallel int // objects checked at once; 0: DefaultParallel
	Logger   zerolog.Logger
}

// Status of a backup in a Report.
const (
	// StatusOK: the backup and all WAL from its start through the newest
	// stored segment are sound.
	StatusOK = "ok"
	// StatusLimited: the backup is restorable, but a WAL gap after its end
	// (or damage elsewhere) keeps recovery from reaching the newest WAL.
	StatusLimited = "limited"
	// StatusBroken: the backup cannot be restored.
	StatusBroken = "broken"
	// StatusDeleted: the backup was deleted while it was checked
	// (by retention, or by hand): its problems are a deleted backup's
	// and do not count (Report.OK).
	StatusDeleted = "deleted"
)

// Report is the result of Run.
type Report struct {
	Site    string         `json:"site"`
	Full    bool           `json:"full"`
	Checked time.Time      `json:"checked"`
	Backups []BackupReport `json:"backups"`
	// Segments and Newest describe the stored WAL: how many segments, and
	// the newest by position.
	Segments int    `json:"wal_segments"`
	Newest   string `json:"newest_wal_segment"`
	// WALEnd is the newest WAL byte stored, a .partial's included, and
	// how long ago it was stored: the recovery point a restore reaches
	// now. nil when no WAL is stored.
	WALEnd *WALEnd `json:"wal_end"`
	// Problems are findings that belong to no single backup: a missing
	// timeline history, damaged WAL objects, a backup whose metadata cannot
	// be read (listed as damaged and left out of Backups).
	Problems []string `json:"problems"`
	// Notes are findings that belong to no single backup and are no
	// problem: a backup history file newer than every listed backup
	// (archive.NewerBackupHistories).
	Notes   []string `json:"notes"`
	Elapsed Duration `json:"elapsed_seconds"`
}

// BackupReport is what Run found for one backup.
type BackupReport struct {
	Name string `json:"name"`
	// Site names the site whose storage holds the backup: set for every
	// backup of a site that moved from others (archive.Archive.MovedFrom),
	// whose backups restore counts as the site's own; "" otherwise.
	Site         string        `json:"site,omitempty"`
	Status       string        `json:"status"`
	Restorable   bool          `json:"restorable"`
	StartTime    time.Time     `json:"start_time"`
	EndTime      *time.Time    `json:"end_time"`
	StartLSN     pglogrepl.LSN `json:"-"`
	EndLSN       pglogrepl.LSN `json:"-"`
	StartSegment string        `json:"start_wal_segment"`
	EndSegment   string        `json:"end_wal_segment"`
	Chunks       int           `json:"chunks"`
	// ReachSegment is the last segment of the unbroken run of WAL from the
	// backup's start and ReachLSN where it ends: the furthest recovery
	// point. ReachTimeAtLeast is the end time of the newest backup whose
	// end lies within that run, a lower bound of the time recovery
	// reaches (the time of the last record is not read); nil when none.
	ReachSegment     string     `json:"reach_wal_segment"`
	ReachLSN         string     `json:"reach_lsn"`
	ReachTimeAtLeast *time.Time `json:"reach_time_at_least"`
	Gaps             []Gap      `json:"wal_gaps"`
	Problems         []string   `json:"problems"`
	// Notes are findings that are no problem: a backup without a
	// metadata HMAC that predates the site's signed ones (checkUnsigned).
	Notes []string `json:"notes"`
	// Parent names the backup an incremental one was taken against; its
	// chain down to a full backup must be sound for it to restore.
	Parent string `json:"parent,omitempty"`

	reach pglogrepl.LSN
	// objectsBroken is set when the backup's own objects cannot be
	// restored (not its WAL): then no incremental backup on it can.
	objectsBroken bool
	// controlRead is set when the backup's control object was read;
	// hoard is what hoard recorded in its manifest (nil in PGHoard's):
	// the authenticated parent, start and system that checkChains
	// compares, as restore does, instead of the metadata's.
	controlRead bool
	hoard       *archive.HoardManifest
	// parentErr, when set, says why no incremental backup on this one
	// can be restored although it can (readControl).
	parentErr error
	// forked is set when the latest timeline forked before the backup
	// ended: its WAL was followed along its own timeline (backupChain).
	forked bool
}

// WALEnd is the newest WAL byte an archive holds, as Report shows it.
//
// It is what the archive alone can tell about the recovery point
// objective: where the stored WAL ends (LSN) and when the object holding
// that end was written (StoredAt). How many bytes the server has written
// since is not in the archive; the daemon, which knows the server's
// position, reports it (hoard_wal_stored_lag_bytes). AgeSeconds, the
// time since StoredAt, bounds what a loss of the server now costs from
// below: every transaction committed since StoredAt is lost (and those
// of the upload before it), if the server wrote any.
type WALEnd struct {
	File       string    `json:"file"` // the newest segment, or the .partial after it
	Partial    bool      `json:"partial"`
	Timeline   uint32    `json:"timeline"`
	LSN        string    `json:"lsn"`
	StoredAt   time.Time `json:"stored_at"`
	AgeSeconds float64   `json:"age_seconds"`
}

// NewWALEnd converts e for a report taken at now; nil when nothing is
// stored.
func NewWALEnd(e archive.WALEnd, now time.Time) *WALEnd {
	if e.File == "" {
		return nil
	}
	return &WALEnd{File: e.File, Partial: e.Partial, Timeline: e.Timeline, LSN: e.LSN.String(),
		StoredAt: e.Stored.UTC(), AgeSeconds: max(0, now.Sub(e.Stored).Seconds())}
}

// OK reports whether everything checked is sound: there is at least one
// backup, every backup is StatusOK, and there are no other problems.
func (r *Report) OK() bool {
	if len(r.Problems) > 0 {
		return false
	}
	left := 0
	for _, b := range r.Backups {
		switch b.Status {
		case StatusDeleted:
			continue
		case StatusOK:
			left++
		default:
			return false
		}
	}
	return left > 0
}

// deleted makes r the report of a backup deleted while it was checked.
func deleted(r *BackupReport) {
	r.Notes = append(r.Notes, fmt.Sprintf("deleted while verify checked it (by retention, or by hand); "+
		"what the check found then (not counted): %s", strings.Join(r.Problems, "; ")))
	r.Status, r.Restorable, r.Problems, r.Gaps = StatusDeleted, false, []string{}, []Gap{}
}

// Duration is a time.Duration written to JSON as seconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(d).Seconds())), nil
}

// Run checks every basebackup of o.Archive and the WAL each needs.
//
// For every backup listed, the control object is downloaded and decoded
// (its integrity checks run) and its manifest parsed, which must list as
// many chunks as the backup's metadata counts (chunkCount); each chunk it
// lists must exist with the manifest's result_size; PostgreSQL's
// backup_manifest, where the backup carries one, is read as restore reads
// it (pgManifest). With Full, every chunk is
// also downloaded and decoded to its end as a tar of the manifest's input_size,
// every file compared with backup_manifest as restore compares it,
// and every WAL segment from each backup's start through the newest stored
// one is decoded, its hash metadata compared and its page header checked
// against its name. The WAL must continue without a gap from each backup's
// start along the timelines recovery follows (the history files), through
// the newest stored segment.
//
// Findings are in the Report; the error is for what stopped the checks
// (listing the archive failed, ctx ended, an object the storage failed
// to answer for or to send whole: a chunk, a delta object, a control
// object, a timeline history file, the .partial that ends the archive,
// with full a WAL segment:
// storageFailed, which says nothing about the backup, so no report calls
// it broken).
func Run(ctx context.Context, o Options) (*Report, error) {
	began := time.Now()
	a := o.Archive
	if a == nil || a.Store == nil || a.Codec == nil {
		return nil, errors.New("verify: no archive")
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	log := o.Logger.With().Str("component", "verify").Str("site", a.Site).Logger()
	rep := &Report{Site: a.Site, Full: o.Full, Checked: began.UTC(), Backups: []BackupReport{}, Problems: []string{}, Notes: []string{}}

	// The backups restore chooses among: the site's own and those of the
	// sites it moved from, each read from the site that holds it
	// (Archive.ArchiveOf), with that site's codec.
	listed, err := a.ScanAllBackups(ctx)
	if err != nil {
		return nil, err
	}
	moved := len(a.MovedFrom) > 0
	backups := listed.Sound
	for _, d := range listed.Damaged {
		of := ""
		if moved && d.Archive != nil {
			of = " of site " + d.Archive.Site
		}
		rep.Problems = append(rep.Problems, fmt.Sprintf("backup %s%s is damaged (%s): %v", d.Name, of, d.Key, d.Err))
	}
	idx, err := listWAL(ctx, a)
	if err != nil {
		return nil, err
	}
	segSize := archive.NewestSegmentSize(backups)
	if err := idx.loadTail(ctx, segSize); err != nil {
		return nil, err
	}
	if idx.damagedTail != "" {
		rep.Problems = append(rep.Problems, idx.damagedTail)
	}
	// From the same listing: the tail's content is read once.
	end, err := idx.end(ctx, segSize)
	if err != nil {
		return nil, err
	}
	rep.WALEnd = NewWALEnd(end, time.Now())
	rep.Segments = len(idx.Segments)
	for name := range idx.Segments {
		if rep.Newest == "" || name[8:] > rep.Newest[8:] || name[8:] == rep.Newest[8:] && name > rep.Newest {
			rep.Newest = name
		}
	}
	if len(backups) == 0 {
		rep.Problems = append(rep.Problems, "no basebackups: nothing is restorable; take one with hoard basebackup "+
			"(if there should be some, check the site's storage settings: hoard list shows what it finds)")
	}
	rep.Notes = append(rep.Notes, archive.NewerBackupHistories(idx.BackupHistories, backups, segSize)...)
	for _, tli := range idx.missingHistories() {
		if d, ok := idx.Damaged[wal.HistoryFileName(tli)]; ok {
			// Stored, but as nothing a read returns: named with the
			// archive's problems (damaged, below).
			rep.Problems = append(rep.Problems, fmt.Sprintf("timeline %d has WAL segments but %s is stored damaged (see the archive's problems): "+
				"recovery cannot follow it; move it away, then store the file again: PostgreSQL keeps history files in pg_wal: "+
				"hoard archive-sync on the database host stores it (or hoard wal-push of that file)", tli, d.Key))
			continue
		}
		rep.Problems = append(rep.Problems, fmt.Sprintf("timeline %d has WAL segments but %s is not archived: recovery cannot follow it; "+
			"PostgreSQL keeps history files in pg_wal: hoard archive-sync on the database host stores it (or hoard wal-push of that file)",
			tli, wal.HistoryFileName(tli)))
	}

	// WAL stored in a state no read returns (a local store's FIFO,
	// socket or directory under a segment's name) is named, and ends
	// recovery as a missing segment does, but is not called missing.
	odd := idx.damaged(rep)

	reps := make([]BackupReport, len(backups))
	paths := make([]wal.History, len(backups))
	chains := make([]*Chain, len(backups))
	for i, b := range backups {
		reps[i] = newBackupReport(b)
		if moved {
			reps[i].Site = a.ArchiveOf(b).Site
		}
		var err error
		if paths[i], chains[i], err = backupChain(ctx, a, idx, b, &reps[i], odd); err != nil {
			return nil, err
		}
		if b.Auth == archive.AuthInvalid {
			// Its objects may all be sound: what it says of itself
			// (the times and positions restore and retention choose
			// by) is what was altered.
			why, suspect := a.ArchiveOf(b).Codec.InvalidWhy(b)
			why += ": retention keeps it uncounted and keeps every WAL file, restore chooses it only by name"
			if suspect {
				why += "; take a new backup and delete it"
			}
			reps[i].Problems = append(reps[i].Problems, why)
		}
	}

	if err := checkUnsigned(ctx, a, backups, reps); err != nil {
		return nil, err
	}

	// Objects: control objects always, chunks by Stat or by decoding,
	// WAL segments by decoding with Full.
	c := &checker{a: a, log: log, full: o.Full, parents: map[string]bool{}}
	for _, b := range backups {
		if b.Parent != "" {
			c.parents[b.Parent] = true
		}
	}
	chunks, err := c.controls(ctx, backups, reps, o.Parallel)
	if err != nil {
		return nil, err
	}
	if err := c.chunks(ctx, chunks, o.Full, o.Parallel); err != nil {
		return nil, err
	}
	// A gap may be the end of the backup's system's WAL (endSystem),
	// and the WAL its recovery reads may end in a .partial below another
	// system's later timeline (walIndex.tailFor): both take its system,
	// in a site without keys known only now, from its control object.
	// The second only where a timeline above the backup's path is stored
	// (after a pg_upgrade into the site, the old cluster's).
	for i, b := range backups {
		ch := chains[i]
		if ch == nil || reps[i].hoard == nil || b.Auth == archive.AuthOK {
			continue
		}
		below := ch.Partial == "" && len(paths[i]) > 0 && paths[i][len(paths[i])-1].Timeline < idx.newestTimeline()
		if !ch.Continuous() || below {
			reps[i].Gaps, reps[i].Problems = nil, slices.DeleteFunc(reps[i].Problems, isWALProblem)
			reps[i].Notes = slices.DeleteFunc(reps[i].Notes, isWALProblem)
			// The WAL is followed again, its system known: a gap before
			// the backup's end may be the .partial that ends its
			// system's WAL (walIndex.tailFor).
			reps[i].Restorable = !reps[i].objectsBroken
			var err error
			if paths[i], chains[i], err = backupChain(ctx, a, idx, b, &reps[i], odd); err != nil {
				return nil, err
			}
		}
	}
	if o.Full {
		systems := make([]uint64, len(backups))
		for i, b := range backups {
			systems[i] = backupSystem(b, &reps[i])
		}
		bad, err := c.segments(ctx, idx, chains, systems, o.Parallel)
		if err != nil {
			return nil, err
		}
		if len(bad) > 0 {
			names := make([]string, 0, len(bad))
			for name, why := range bad {
				names = append(names, name)
				rep.Problems = append(rep.Problems, why)
			}
			sort.Strings(rep.Problems[len(rep.Problems)-len(bad):])
			// A damaged segment ends recovery as a missing one does.
			flags := maps.Clone(odd)
			if flags == nil {
				flags = map[string]bool{}
			}
			for _, n := range names {
				flags[n] = true
			}
			for i, b := range backups {
				if paths[i] == nil {
					continue
				}
				reps[i].Gaps, reps[i].Problems = nil, slices.DeleteFunc(reps[i].Problems, isWALProblem)
				reps[i].Notes = slices.DeleteFunc(reps[i].Notes, isWALProblem)
				if _, _, err := backupChain(ctx, a, idx, b, &reps[i], flags); err != nil {
					return nil, err
				}
			}
		}
		var newest *upgraded
		if n := newestSystem(systems); n >= 0 {
			var starts []archive.ReplayStart
			for i, b := range backups {
				if systems[i] == systems[n] {
					starts = append(starts, b.ReplayStart())
				}
			}
			newest = &upgraded{systems[n], backups[n].StartTimeline, &reps[n], archive.LowestReplayStart(starts)}
		}
		if err := c.histories(ctx, idx, rep, newest); err != nil {
			return nil, err
		}
	}
	// The WAL end a restore now reaches: that of the timelines the
	// newest backup's recovery follows, where they stop below the
	// newest timeline stored. After a pg_upgrade into the site, the old
	// cluster's later timelines (their history files another system's,
	// absent to the upgraded cluster's recovery) hold WAL it stored
	// before the upgrade, which is not where the site's WAL ends now.
	if i := newestFollowed(backups, paths, reps); i >= 0 {
		if top := paths[i][len(paths[i])-1].Timeline; top < idx.newestTimeline() {
			end, err := idx.endUpTo(ctx, segSize, top)
			if err != nil {
				return nil, err
			}
			rep.WALEnd = NewWALEnd(end, time.Now())
		}
	}
	checkChains(a, backups, listed.Damaged, reps)
	for i := range reps {
		finish(&reps[i], backups, chains[i] != nil)
		// Retention may delete a backup while it is checked (its main
		// object first, then its chunks): that is no damage.
		if reps[i].Status != StatusOK && a.ArchiveOf(backups[i]).BackupGone(ctx, backups[i]) {
			deleted(&reps[i])
		}
	}
	rep.Backups = reps
	rep.Elapsed = Duration(time.Since(began))
	log.Info().Int("backups", len(reps)).Bool("ok", rep.OK()).Int64("elapsed_ms", time.Since(began).Round(time.Millisecond).Milliseconds()).Msg("verify done")
	return rep, nil
}

// newestFollowed returns the index of the newest of backups (oldest
// first) whose WAL was followed along the latest timeline (paths[i], not
// the current one for a timeline that forked before it ended) and whose
// metadata is not altered; -1 when none.
func newestFollowed(backups []*archive.BackupInfo, paths []wal.History, reps []BackupReport) int {
	for i, b := range slices.Backward(backups) {
		if len(paths[i]) > 0 && !reps[i].forked && b.Auth != archive.AuthInvalid {
			return i
		}
	}
	return -1
}

// walProblemPrefix starts the problems (and notes) backupChain records,
// so that a second pass can replace them.
const walProblemPrefix = "WAL: "

func isWALProblem(p string) bool {
	return len(p) >= len(walProblemPrefix) && p[:len(walProblemPrefix)] == walProblemPrefix
}

func newBackupReport(b *archive.BackupInfo) BackupReport {
	r := BackupReport{
		Name: b.Name, StartTime: b.StartTime, StartLSN: b.StartLSN, EndLSN: b.EndLSN,
		StartSegment: b.StartWALSegment, EndSegment: b.EndWALSegment, Restorable: true,
		Gaps: []Gap{}, Problems: []string{}, Notes: []string{}, Parent: b.Parent,
	}
	if !b.EndTime.IsZero() {
		t := b.EndTime
		r.EndTime = &t
	}
	return r
}

// backupChain follows b's WAL and records the gaps in r. It returns the
// recovery path and the chain, nil when the WAL could not be followed.
// The error is for a timeline history file, or the WAL read to find
// where b's system's WAL ends (walIndex.endSystem), the storage failed to
// send (storageFailed): the WAL was not followed, and nothing found wrong.
func backupChain(ctx context.Context, a *archive.Archive, idx *walIndex, b *archive.BackupInfo, r *BackupReport, bad map[string]bool) (wal.History, *Chain, error) {
	fail := func(format string, args ...any) (wal.History, *Chain, error) {
		r.Restorable = false
		r.Problems = append(r.Problems, walProblemPrefix+fmt.Sprintf(format, args...))
		return nil, nil, nil
	}
	spec := "latest"
	// The history files of the WAL listing, not a listing of timeline/
	// for each backup.
	hist := idx.histories(true)
	path, err := restore.RecoveryPathIn(ctx, marking(a), hist, b, spec)
	if errors.Is(err, restore.ErrBadTarget) {
		// The newest timeline forked before this backup ended: a restore
		// must ask for recovery_target_timeline current.
		r.Problems = append(r.Problems, walProblemPrefix+fmt.Sprintf("%v; restore it with --target-timeline current", err))
		r.forked = true
		spec = "current"
		path, err = restore.RecoveryPathIn(ctx, marking(a), hist, b, spec)
	}
	if err == nil {
		// The latest probe stops below a history file stored damaged as
		// if it were absent; PostgreSQL asks for it, wal-fetch fails on
		// it, and hoard restore refuses (a plain restore, which
		// promotes).
		err = restore.DamagedHistoryIn(ctx, marking(a), hist, b, path, spec, true)
	}
	if err != nil && storageFailed(err) {
		return nil, nil, fmt.Errorf("verify: the WAL of backup %s could not be checked: the storage failed to send a timeline history file, "+
			"and nothing was found wrong with it (no backup is reported; run verify again once the storage answers): %w", b.Name, err)
	}
	if err != nil {
		return fail("%v", err)
	}
	tail, err := idx.tailFor(ctx, marking(a), b, backupSystem(b, r))
	if tu := (*uncheckedTailError)(nil); errors.As(err, &tu) {
		// The .partial: the message says what it is.
		return nil, nil, err
	}
	if err != nil && storageFailed(err) {
		return nil, nil, fmt.Errorf("verify: the WAL of backup %s could not be checked: the storage failed to send a timeline history file, "+
			"and nothing was found wrong with it (no backup is reported; run verify again once the storage answers): %w", b.Name, err)
	}
	if err != nil {
		return fail("%v", err)
	}
	if tail != nil && tail.Damaged != nil {
		// Not the archive's tail (loadTail reports that one): the
		// .partial that ends this backup's system's WAL.
		r.Problems = append(r.Problems, walProblemPrefix+fmt.Sprintf("WAL segment %s: %v", tail.Key, tail.Damaged))
		tail = nil
	}
	ch, err := followWAL(idx, tail, b, path, bad)
	if err != nil {
		return fail("%v", err)
	}
	switch e, err := idx.endSystem(ctx, b, backupSystem(b, r), ch, bad); {
	case err != nil && storageFailed(err):
		return nil, nil, fmt.Errorf("verify: the WAL of backup %s could not be checked: the storage failed to send the WAL "+
			"that says where its database system's WAL ends, and nothing was found wrong with it (no backup is reported; "+
			"run verify again once the storage answers): %w", b.Name, err)
	case err != nil:
		return fail("%v", err)
	case e != nil:
		r.Notes = append(r.Notes, walProblemPrefix+e.String()+": recovery of this backup ends there, at the end of its system's WAL")
	}
	r.Gaps = ch.Gaps
	r.ReachSegment = ch.LastContinuous
	r.reach = ch.ReachLSN
	if ch.ReachLSN != 0 {
		r.ReachLSN = ch.ReachLSN.String()
	}
	if !ch.Restorable {
		r.Restorable = false
	}
	for _, g := range ch.Gaps {
		what := gapKind(ch, g, bad) + " after the backup's end: recovery stops before it; " + storeMissing +
			", otherwise take a new basebackup, whose recovery reaches the newest WAL (this backup stays limited until retention deletes it)"
		if firstNo(g, b) <= lastNo(ch.End, b) {
			what = gapKind(ch, g, bad) + " between the backup's start and end: the backup cannot be restored at all without it (restore another backup); " +
				storeMissing + ", otherwise take a new basebackup"
		}
		r.Problems = append(r.Problems, walProblemPrefix+g.String()+" "+what)
	}
	return path, ch, nil
}

// storeMissing is what a gap's problem says to do first: WAL the primary
// has not recycled yet can still be stored. archive-sync stores what the
// archive lacks from the newest backup's start on; wal-push stores one
// file, for an older segment.
const storeMissing = "if pg_wal on the primary still holds it, run hoard archive-sync on the database host " +
	"(or hoard wal-push of a segment before the newest backup's start)"

// gapKind says what the segments of g, a gap of ch, are: missing, or
// stored damaged (in bad: a damaged entry of the listing, or a segment
// --full found damaged), which the archive's problems name with what is
// wrong.
func gapKind(ch *Chain, g Gap, bad map[string]bool) string {
	n, first := 0, ""
	for name := range bad {
		if ch.holds(g, name) {
			n++
			if first == "" || name < first {
				first = name
			}
		}
	}
	switch {
	case n == 0:
		return "missing"
	case uint64(n) == g.Count:
		return "stored damaged (see the archive's problems)"
	}
	if n == 1 {
		return fmt.Sprintf("missing, but %s stored damaged (see the archive's problems)", first)
	}
	return fmt.Sprintf("missing, %d of them stored damaged (%s first; see the archive's problems)", n, first)
}

func firstNo(g Gap, b *archive.BackupInfo) uint64 { return lastNo(g.First, b) }

func lastNo(name string, b *archive.BackupInfo) uint64 {
	s, _ := wal.ParseSegmentName(name, b.SegmentSize())
	return s.No
}

// finish sets the backup's status and reach time.
func finish(r *BackupReport, backups []*archive.BackupInfo, followed bool) {
	if followed && r.reach != 0 {
		var best time.Time
		for _, b := range backups {
			if b.EndLSN != 0 && b.EndLSN <= r.reach && b.EndLSN >= r.EndLSN && b.EndTime.After(best) {
				best = b.EndTime
			}
		}
		if !best.IsZero() {
			r.ReachTimeAtLeast = &best
		}
	}
	switch {
	case !r.Restorable:
		r.Status = StatusBroken
	case len(r.Problems) > 0:
		r.Status = StatusLimited
	default:
		r.Status = StatusOK
	}
}

// checker runs the object checks; problems go into the reports under mu.
type checker struct {
	a    *archive.Archive
	full bool
	log  zerolog.Logger
	mu   sync.Mutex
	// parents are the backups an incremental backup's metadata names as
	// its parent (see readControl).
	parents map[string]bool
}

func (c *checker) problem(r *BackupReport, broken bool, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	if broken {
		r.Restorable = false
		r.objectsBroken = true
	}
}

// chunkCheck is one chunk of one backup to check.
type chunkCheck struct {
	r *BackupReport
	// src is the archive holding the backup (Archive.ArchiveOf): the
	// site's, or that of a site it moved from.
	src      *archive.Archive
	key      string
	manifest *archive.Manifest
	chunk    archive.ManifestChunk
	// single, when set, is the backup held in this one tar (no format or
	// pghoard-bb-v1), whose members restore.TarCheck checks.
	single *archive.BackupInfo
	// pgm, when set, compares each file with the backup's
	// backup_manifest (full only).
	pgm    *pgmCheck
	bundle bool // a delta backup's bundle (members named relative to the data directory)
	// object, when set, makes this a delta backup's delta object (key)
	// rather than a chunk.
	object *deltaObject
}

// controls reads the control object of every backup, parallel at a time,
// and returns the chunks they list. The control objects are read to the
// end before any chunk is checked: a task that waited for tasks queued
// on its own bounded pool would hold a slot each, and with as many
// backups as slots none would ever run.
func (c *checker) controls(ctx context.Context, backups []*archive.BackupInfo, reps []BackupReport, parallel int) ([]chunkCheck, error) {
	lists := make([][]chunkCheck, len(backups))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, b := range backups {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			var err error
			lists[i], err = c.control(gctx, b, &reps[i])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var all []chunkCheck
	for _, l := range lists {
		all = append(all, l...)
	}
	return all, nil
}

// control checks b's control object and returns the chunks it lists.
func (c *checker) control(ctx context.Context, b *archive.BackupInfo, r *BackupReport) ([]chunkCheck, error) {
	src := c.a.ArchiveOf(b)
	if b.OneTar() {
		// One tar (PGHoard's basic or pipe mode, or its legacy
		// pghoard-bb-v1): the main object is the backup's only chunk, of
		// the listed size, decoding to its original-file-size.
		if _, err := restore.NewTarCheck(b); err != nil {
			c.problem(r, true, "%v", err)
			return nil, nil
		}
		c.mu.Lock()
		r.Chunks = 1
		c.mu.Unlock()
		ch := archive.ManifestChunk{ChunkFilename: b.Key, ResultSize: b.StoredSize, InputSize: -1}
		if n, err := strconv.ParseInt(b.Metadata[archive.MetaOriginalFileSize], 10, 64); err == nil && n >= 0 {
			ch.InputSize = n
		}
		return []chunkCheck{{r: r, src: src, key: b.Key, chunk: ch, single: b}}, nil
	}
	if b.Format == archive.FormatDeltaV1 || b.Format == archive.FormatDeltaV2 {
		return c.deltaControl(ctx, b, r)
	}
	if b.Format != archive.FormatBBv2 {
		c.problem(r, true, "format %q: hoard checks and restores %s and %s backups, PGHoard's delta backups and single pg_basebackup tars only", b.Format, archive.FormatBBv2, archive.FormatBBv1)
		return nil, nil
	}
	ctrl, pgmErr, err := c.readControl(ctx, b, r, c.parents[b.Name])
	if ctrl == nil {
		return nil, err
	}
	m := ctrl.Manifest
	c.chunkCount(b, r, m)
	c.checksumFailures(b, r, m)
	pgm, err := c.pgManifest(ctx, b, r, ctrl, pgmErr, len(m.Chunks))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	r.Chunks = len(m.Chunks)
	c.mu.Unlock()
	list := make([]chunkCheck, 0, len(m.Chunks))
	for _, ch := range m.Chunks {
		list = append(list, chunkCheck{r: r, src: src, key: src.Layout.ChunkKey(ch.ChunkFilename), manifest: m, chunk: ch, pgm: pgm})
	}
	return list, nil
}

// chunkCount compares the chunks b's manifest m lists with the count
// b's metadata records (hoard-chunk-count: hoard writes both from one
// list, and signs the count in a site with keys). Restore reads only
// the chunks the manifest lists: listing fewer, it restores a cluster
// without the others' files, which PostgreSQL may start on all the same,
// so b is broken; listing more, what b's metadata says of it is wrong,
// a problem. Not compared where the metadata records no count (PGHoard's
// backups) or does not authenticate (that is a problem already, and an
// altered count would call a sound backup broken).
func (c *checker) chunkCount(b *archive.BackupInfo, r *BackupReport, m *archive.Manifest) {
	n := len(m.Chunks)
	switch {
	case b.ChunkCount <= 0 || b.Auth == archive.AuthInvalid || n == b.ChunkCount:
	case n < b.ChunkCount:
		c.problem(r, true, "control object %s: its manifest lists %d of the %d chunks the backup's metadata counts: "+
			"restore would leave out the files of the others (restore another backup)", b.Key, n, b.ChunkCount)
	default:
		c.problem(r, false, "control object %s: its manifest lists %d chunks, the backup's metadata counts %d", b.Key, n, b.ChunkCount)
	}
}

// open opens object key for decoding, checking its HMAC against hmac
// unless it is "" (archive.DecodeExpected); an object that is not there
// is reported as missing.
func (c *checker) open(ctx context.Context, src *archive.Archive, key, hmac string) (io.ReadCloser, error) {
	rc, _, err := src.Codec.OpenExpected(ctx, src.Store, key, hmac)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errors.New("missing")
	}
	var de *archive.DecodeError
	if err != nil && !errors.As(err, &de) {
		return nil, storeFailure(err) // the store's own: Codec.Open decodes nothing before it
	}
	return rc, err
}

// readControl reads backup b's control object as restore reads it.
// Without full, it reads b's backup_manifest in the same pass
// (restore.ReadControlPGManifest), for pgManifest to report: one
// download of the object, not two. With full, pgManifest reads it when
// the first of b's objects is checked (pgmCheck), so that verify holds
// the manifests of the backups whose objects it checks at the time, not
// of every backup.
//
// With parent (an incremental backup names b as its parent), a full
// backup b's backup_manifest is read in the same pass as restore reads
// each backup's of a chain it restores, whatever b's metadata says:
// every backup of a chain holds one (basebackup sends the parent's with
// UPLOAD_MANIFEST and takes none without one as a parent), and restore
// refuses the chain of a parent without one, or whose backup_manifest
// does not parse. In a site without keys whoever can write the bucket
// can remove it and clear the metadata's flag (hoard-pg-manifest), which
// nothing authenticates: the incremental backups on b are then broken
// (checkChains, by r.parentErr), while b alone restores as PGHoard's
// backups do and stays ok. An incremental backup b reads its own
// whatever its metadata says (pgManifest).
//
// An object that cannot be read or is broken is a problem of r:
// readControl reports it and returns nil and no error; err is ctx's
// only. pgmErr is what makes b broken in its backup_manifest (without
// full).
func (c *checker) readControl(ctx context.Context, b *archive.BackupInfo, r *BackupReport, parent bool) (ctrl *archive.Control, pgmErr, err error) {
	var parentErr error
	ctrl, pgmErr, parentErr, err = restore.ReadControlPGManifest(ctx, marking(c.a.ArchiveOf(b)), b, !c.full, parent)
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	if err != nil && storageFailed(err) {
		return nil, nil, unchecked("control object", b.Key, err)
	}
	if err != nil {
		c.problem(r, true, "%v", err)
		return nil, nil, nil
	}
	c.mu.Lock()
	r.controlRead, r.hoard = true, ctrl.Manifest.Hoard
	if parentErr != nil {
		r.parentErr = altered(parentErr)
	}
	c.mu.Unlock()
	return ctrl, pgmErr, nil
}

// chunks checks every chunk, parallel at a time: by Stat, or with full by
// decoding it.
func (c *checker) chunks(ctx context.Context, list []chunkCheck, full bool, parallel int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, cc := range list {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			var pgm *restore.PGManifestCheck
			if cc.pgm != nil {
				var err error
				if pgm, err = cc.pgm.get(gctx); err != nil {
					return err
				}
			}
			var err error
			switch {
			case cc.object != nil && full:
				err = c.decodeDeltaObject(gctx, cc.src, cc.key, cc.object, pgm)
			case cc.object != nil:
				err = c.statDeltaObject(gctx, cc.src, cc.key)
			case full:
				err = c.decodeChunk(gctx, cc.src, cc.key, cc.manifest, cc.chunk, cc.single, cc.bundle, pgm)
			case cc.single != nil && cc.single.Format != archive.FormatBBv1:
				if err = c.statChunk(gctx, cc.src, cc.key, cc.chunk); err == nil {
					err = c.labelFirst(gctx, cc.src, cc.key)
				}
			default:
				err = c.statChunk(gctx, cc.src, cc.key, cc.chunk)
			}
			if gctx.Err() != nil {
				return gctx.Err()
			}
			what := "chunk"
			if cc.object != nil {
				what = "delta object"
			}
			if err != nil && storageFailed(err) {
				if cc.pgm != nil {
					cc.pgm.done()
				}
				return unchecked(what, cc.key, err)
			}
			if err != nil {
				c.log.Debug().Err(err).Str("key", cc.key).Msg("chunk damaged")
				c.problem(cc.r, true, "%s %s: %v", what, cc.key, altered(err))
			}
			if cc.pgm != nil {
				cc.pgm.done() // after the problem, which it looks at
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// statChunk checks that a chunk exists in src with the size the manifest
// records.
func (c *checker) statChunk(ctx context.Context, src *archive.Archive, key string, ch archive.ManifestChunk) error {
	st, err := src.Store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return errors.New("missing")
	}
	if err != nil {
		return storeFailure(err)
	}
	if ch.ResultSize > 0 && st.Size != ch.ResultSize {
		return fmt.Errorf("stored size %d, manifest says %d", st.Size, ch.ResultSize)
	}
	return nil
}

// maxLabelHead bounds what labelFirst decodes: the header of the tar's
// first member (pg_basebackup writes 512 bytes; a pax header before it is
// at most this).
const maxLabelHead = 64 << 10

// labelFirst checks that the object key, a backup in one pg_basebackup tar
// (PGHoard's basic or pipe mode), starts with backup_label: the server
// sends it first in the main tablespace's tar (perform_base_backup,
// basebackup.c), and restore refuses a backup without it. It decodes no
// more than the first member's header (maxLabelHead), so the quick check
// finds a tar that lacks it without reading the tar; --full reads the rest.
//
// It asks the storage for the object's first archive.FirstBlockRange
// bytes only (a backup tar may hold gigabytes, and a GET closed early
// may still be sent whole). Where that range ends the stream before a
// header is decoded (an object written with larger blocks), the header is
// read from the whole object, whose answer counts.
func (c *checker) labelFirst(ctx context.Context, src *archive.Archive, key string) error {
	if decided, err := c.labelFirstRanged(ctx, src, key); decided {
		return err
	}
	rc, err := c.open(ctx, src, key, "")
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = labelHead(rc)
	return err
}

// labelFirstRanged is labelFirst from the object's first
// archive.FirstBlockRange stored bytes. decided is false when the range
// ended the stream before a verdict.
func (c *checker) labelFirstRanged(ctx context.Context, src *archive.Archive, key string) (decided bool, err error) {
	obj, err := src.Store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return true, errors.New("missing")
	}
	if err != nil {
		return true, storeFailure(err)
	}
	n := min(obj.Size, archive.FirstBlockRange)
	rc, err := src.Store.OpenRange(ctx, key, 0, n)
	if errors.Is(err, storage.ErrNotFound) {
		return true, errors.New("missing")
	}
	if err != nil {
		return true, storeFailure(err)
	}
	defer rc.Close()
	dec, err := src.Codec.DecodeObject(key, rc, obj)
	if err != nil {
		return true, err
	}
	defer dec.Close()
	decided, err = labelHead(dec)
	// The whole object in range: its answer counts.
	return decided || n == obj.Size, err
}

// labelHead checks that the tar r starts with backup_label. decided is
// false when r ended, or failed to decode, before the first member's
// header.
func labelHead(r io.Reader) (decided bool, err error) {
	h, err := tar.NewReader(io.LimitReader(r, maxLabelHead)).Next()
	if err == io.EOF {
		return false, fmt.Errorf("the tar holds no member: %w", restore.ErrNoBackupLabel)
	}
	if err != nil {
		return false, fmt.Errorf("read tar: %w", err)
	}
	if path.Clean(h.Name) != "backup_label" || h.Typeflag != tar.TypeReg {
		return true, fmt.Errorf("first member %s, not backup_label, which pg_basebackup writes first: not a pg_basebackup tar as written "+
			"(restore refuses one without backup_label; verify --full reads all of it)", archive.Quoted(h.Name))
	}
	return true, nil
}

// decodeChunk checks a chunk's stored size as statChunk does, then decodes
// it to its end as a tar stream and checks its decoded size against the
// manifest's input_size (decoding stops just past it), and each member as
// restore would (restore.CheckChunkMember, or a restore.TarCheck for a
// backup held in one tar, whose input_size is -1 when not recorded, or
// restore.CheckBundleMember for a delta backup's bundle), and that the
// manifest's file list for the chunk, when it has one, holds each member.
// With pgm, each member's data is compared with the backup's
// backup_manifest as it is read (size and CRC-32C); when one differs,
// the chunk is still read to its end, so that a chunk that fails its own
// checks (another backup's, tampered, truncated) is reported as such,
// the more precise cause, as restore does.
func (c *checker) decodeChunk(ctx context.Context, src *archive.Archive, key string, m *archive.Manifest, ch archive.ManifestChunk, single *archive.BackupInfo, bundle bool, pgm *restore.PGManifestCheck) error {
	if err := c.statChunk(ctx, src, key, ch); err != nil {
		return err
	}
	rc, err := c.open(ctx, src, key, ch.HMAC)
	if err != nil {
		return err
	}
	defer rc.Close()
	var lr io.Reader = rc
	if ch.InputSize >= 0 {
		lr = io.LimitReader(rc, ch.InputSize+1)
	}
	cr := &storage.CountingReader{R: lr}
	var one *restore.TarCheck
	if single != nil {
		if one, err = restore.NewTarCheck(single); err != nil {
			return err
		}
	}
	tr := tar.NewReader(cr)
	buf := make([]byte, 256<<10)
	for h, err := range restore.Members(tr) {
		if err != nil {
			return err
		}
		check := func() error { return restore.CheckChunkMember(m, h) }
		if bundle {
			check = func() error { return restore.CheckBundleMember(m, h) }
		}
		if one != nil {
			check = func() error { return one.Member(h, tr) }
		}
		if err := check(); err != nil {
			return err
		}
		if err := ch.Names.Check(h.Name); err != nil {
			return err
		}
		switch {
		case pgm != nil && bundle:
			err = pgm.BundleMember(h, tr, buf)
		case pgm != nil:
			err = pgm.ChunkMember(h, tr, buf)
		default:
			if _, err = io.CopyBuffer(io.Discard, tr, buf); err != nil {
				err = fmt.Errorf("read tar: %w", err)
			}
		}
		if errors.Is(err, restore.ErrPGManifest) {
			if _, derr := io.CopyBuffer(io.Discard, cr, buf); derr != nil {
				return derr
			}
			if ch.InputSize >= 0 && cr.N > ch.InputSize {
				return fmt.Errorf("decodes to more than the manifest's %d bytes", ch.InputSize)
			}
		}
		if err != nil {
			return err
		}
	}
	// The padding after the end-of-archive blocks, and the integrity
	// checks at EOF.
	if _, err := io.CopyBuffer(io.Discard, cr, buf); err != nil {
		return err
	}
	if one != nil {
		if err := one.Done(); err != nil {
			return err
		}
	}
	if ch.InputSize < 0 {
		return nil
	}
	if cr.N > ch.InputSize {
		return fmt.Errorf("decodes to more than the manifest's %d bytes", ch.InputSize)
	}
	if cr.N != ch.InputSize {
		return fmt.Errorf("decodes to %d bytes, manifest says %d", cr.N, ch.InputSize)
	}
	return nil
}

// newestSystem returns the index of the last known (not 0) of systems,
// the backups' system identifiers oldest first: the backup of the
// cluster the site backs up now; -1 when none is known.
func newestSystem(systems []uint64) int {
	for i, s := range slices.Backward(systems) {
		if s != 0 {
			return i
		}
	}
	return -1
}

// backupSystem is the system identifier of backup b, r its report after
// its control object was read: the one its manifest records, else its
// metadata's where that authenticates, else 0 (PGHoard's backups record
// none). A backup planted without the key (a copy of another's control
// object, its metadata edited) cannot claim another system: its manifest
// is the copied one's.
func backupSystem(b *archive.BackupInfo, r *BackupReport) uint64 {
	id := ""
	switch {
	case r.hoard != nil:
		id = r.hoard.SystemID
	case b.Auth == archive.AuthOK:
		id = b.SystemID
	}
	n, _ := strconv.ParseUint(id, 10, 64)
	return n
}
