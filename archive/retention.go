package archive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// Retention decides which basebackups and WAL files a site no longer needs
// (pghoard-features.md section 12) and deletes them. Planning is a pure
// function of the listing (PlanRetention), so `hoard retention --dry-run`
// shows exactly what a real run deletes; Archive.PlanRetention adds where
// each object lives and the leftovers of interrupted runs, and
// Archive.ApplyRetention deletes in an order that a crash cannot turn into
// a listed backup with missing pieces.

// RetentionPolicy is a site's retention configuration.
type RetentionPolicy struct {
	// MaxCount is basebackup_count: keep at most this many backups
	// (0 = unlimited).
	MaxCount int
	// MinCount is basebackup_count_min: age-based deletion never goes
	// below this many backups, and is off when it is 0 (PGHoard's rule).
	MinCount int
	// MaxAge is basebackup_age_days_max (0 = off). A backup's age is
	// now - (start + Interval), PGHoard's rule: a backup is only "old" once
	// its successor should have been taken.
	MaxAge time.Duration
	// Interval is basebackup_interval_hours (0 when automatic backups are
	// off).
	Interval time.Duration
	// Preserved maps backup names to the time until which a preservation
	// request pins them (preservation_request/ objects).
	Preserved map[string]time.Time
	// SystemID is the system identifier of the cluster the site backs
	// up, "" when not known. When set, backups whose authenticated
	// metadata names another system count as unauthenticated ones do
	// (OfSystem, planAuthenticated), and WAL is deleted only while a
	// backup of this system is kept.
	SystemID string
	// Seen holds the keys of main objects of the site's own backups that
	// earlier listings returned (a daemon's). One this run's listing
	// leaves out is looked up by key, and if it is stored the plan fails
	// (checkSeen): a storage that lies by omission for a while is
	// caught, a single-tar backup (no chunk folder) too.
	Seen []string
}

// BackupDecision is the fate of one backup in a plan.
type BackupDecision struct {
	Backup *BackupInfo
	// Site is the site (Archive.Site) whose store holds the backup; empty
	// in plans made by PlanRetention alone, meaning the archive applying it.
	Site   string
	Reason string // why the backup is kept or deleted, for people
	// Extra is set on a backup the policy would delete but that is kept
	// anyway: ExtraReadOnly (it is stored by a read-only moved_from
	// site) or ExtraKnownGood (the backups kept after it are not known
	// good).
	Extra string
}

// Why a backup is kept beyond the policy (BackupDecision.Extra).
const (
	ExtraReadOnly  = "read-only"
	ExtraKnownGood = "known-good"
)

// WALDeletion is one archived WAL file a plan deletes.
type WALDeletion struct {
	Name   string // file name: a segment, a .partial or a .backup file
	Reason string
	// Site, Key and Size locate the stored object; Archive.PlanRetention
	// fills them (one deletion per site holding the file). An empty Key
	// means Layout.WALKey(Name) in the archive applying the plan.
	Site string
	Key  string
	Size int64
}

// OrphanDeletion is a chunk folder left behind by a backup that never got
// its main object, or whose deletion was interrupted.
type OrphanDeletion struct {
	Site   string
	Folder string   // key prefix of the folder, ending in "/"
	Keys   []string // the objects in it
	Size   int64    // their stored bytes
	Reason string
	// Damaged are the listing's words (storage.Object.Damaged) for
	// those of Keys a local store lists as damaged (a FIFO, a socket or
	// a directory under the name): no Delete removes them, and
	// applying the plan leaves them (ApplyRetention).
	Damaged []error
}

// RetentionPlan is what one retention run keeps and deletes.
type RetentionPlan struct {
	Now     time.Time
	Keep    []BackupDecision // oldest first
	Delete  []BackupDecision // oldest first
	WAL     []WALDeletion    // in name order
	KeptWAL int              // archived WAL files (not .history) the plan keeps
	// WALHorizon is the lowest start segment of the kept backups, and
	// WALHorizonBackup the backup that starts there: WAL before its
	// position is deleted. Empty when no WAL may be deleted.
	WALHorizon       string
	WALHorizonBackup string
	Orphans          []OrphanDeletion
	// Delta are the delta objects no kept backup refers to (planDelta).
	Delta []DeltaDeletion
	// Notes explain decisions that delete less than the policy allows, such
	// as WAL kept because no kept backup records its start segment.
	Notes []string
	// DeltaKept, when not empty, says why the plan deletes no delta
	// object at all (planDelta): a daemon logs it.
	DeltaKept string
	// WALKept, when not empty, says why the plan deletes no WAL file at
	// all though the policy would (keepDamagedWAL): a daemon logs it.
	WALKept string
	// Damaged names the kept backups that failed Archive.PlanRetention's
	// checks, each with what is wrong, for logs and alerts. Checked says
	// whether the checks ran: only before deleting a backup.
	Damaged []string
	Checked bool
}

// KeptExtra returns how many backups the plan keeps beyond what the
// policy asks because deleting them was unsafe (ExtraKnownGood).
func (p RetentionPlan) KeptExtra() int {
	n := 0
	for _, k := range p.Keep {
		if k.Extra == ExtraKnownGood {
			n++
		}
	}
	return n
}

// Empty reports whether the plan deletes nothing.
func (p RetentionPlan) Empty() bool {
	return len(p.Delete) == 0 && len(p.WAL) == 0 && len(p.Orphans) == 0 && len(p.Delta) == 0
}

// PlanRetention decides which backups and WAL files to delete. backups may
// come in any order; walNames holds the names of the files under xlog/
// (segments, .partial and .backup files; .history files are ignored and
// never deleted).
//
// Backups, sorted by start time, are deleted oldest first while more than
// p.MaxCount remain, then while more than p.MinCount remain and the oldest
// is older than p.MaxAge. Deletion stops at the first backup that does not
// qualify, at the first preserved backup (so it and every newer backup
// stay, as in PGHoard), and always before the newest backup.
//
// WAL: every file whose position (the log and segment part of its name,
// whatever its timeline) is before the lowest start segment of the kept
// backups is deleted, and so is every .partial whose complete segment (same
// timeline, same position) is stored: the segment holds all its WAL, and a
// restore never reads the .partial while the segment exists. Comparing positions across timelines is deliberately
// conservative: a segment of any timeline at or after that position stays,
// so WAL that a kept backup reaches through a timeline switch, and WAL of a
// newer timeline forked at an earlier position, is never lost. With no
// backup at all nothing is deleted.
//
// Where any backup's metadata authenticates (BackupInfo.Auth), only those
// backups decide, and with p.SystemID only those of that system: see
// planAuthenticated. Backups whose chunk folder is not theirs alone (a
// name two main objects of one site share, or that of a folder of
// hoard's markers) are kept and not counted: see splitShared.
func PlanRetention(backups []*BackupInfo, walNames []string, p RetentionPolicy, now time.Time) RetentionPlan {
	plan := RetentionPlan{Now: now}
	backups, shared := splitShared(backups)
	plan.Keep, plan.Delete = planBackups(backups, p, now)
	planAuthenticated(&plan, backups, p)
	keepShared(&plan, shared)
	keepParents(&plan)

	planWAL(&plan, walNames, p.SystemID)
	return plan
}

// planBackups applies the policy to backups, as PlanRetention describes,
// and returns the decisions, oldest first.
func planBackups(backups []*BackupInfo, p RetentionPolicy, now time.Time) (keep, del []BackupDecision) {
	bs := append([]*BackupInfo(nil), backups...)
	SortBackups(bs)

	drop := 0
	stop := ""
	for drop < len(bs) {
		b := bs[drop]
		left := len(bs) - drop
		if left == 1 {
			stop = "newest backup, never deleted"
			break
		}
		if until, ok := p.Preserved[b.Name]; ok && until.After(now) {
			stop = fmt.Sprintf("preserved until %s (this and every newer backup are kept)", fmtTime(until))
			break
		}
		if p.MaxCount > 0 && left > p.MaxCount {
			del = append(del, BackupDecision{Backup: b, Reason: fmt.Sprintf(
				"backup %s (started %s) exceeds basebackup_count=%d (%d backups)",
				b.Name, fmtTime(b.StartTime), p.MaxCount, left)})
			drop++
			continue
		}
		// PGHoard deletes by age only with a minimum above zero
		// (basebackup_count_min 0 turns age-based deletion off): an age
		// limit alone never empties a site whose backups stopped.
		if p.MaxAge > 0 && p.MinCount > 0 && left > p.MinCount && !b.StartTime.IsZero() {
			age := now.Sub(b.StartTime.Add(p.Interval))
			if age > p.MaxAge {
				del = append(del, BackupDecision{Backup: b, Reason: fmt.Sprintf(
					"backup %s (started %s) is %s old (from start + interval), over basebackup_age_days_max=%s, and %d backups > basebackup_count_min=%d",
					b.Name, fmtTime(b.StartTime), fmtDays(age), fmtDays(p.MaxAge), left, p.MinCount)})
				drop++
				continue
			}
		}
		stop = "within the retention policy"
		break
	}
	for i, b := range bs[drop:] {
		reason := "within the retention policy"
		switch {
		case i == 0:
			reason = stop
		case drop+i == len(bs)-1:
			reason = "newest backup, never deleted"
		}
		if until, ok := p.Preserved[b.Name]; ok && until.After(now) {
			reason = fmt.Sprintf("preserved until %s", fmtTime(until))
		}
		keep = append(keep, BackupDecision{Backup: b, Reason: reason})
	}
	return keep, del
}

// horizonBackups returns the kept backups whose WAL must stay: all but
// those kept only because their site is read-only (their WAL is in that
// site, which retention does not touch).
func horizonBackups(keep []BackupDecision) []BackupDecision {
	var out []BackupDecision
	for _, k := range keep {
		if k.Extra != ExtraReadOnly {
			out = append(out, k)
		}
	}
	return out
}

// planWAL fills plan.WAL from the kept backups' start positions. A kept
// backup of another system than systemID (OfSystem) can only lower the
// horizon; while no kept backup is of this system, every WAL file is
// kept: another system's start says nothing of this system's WAL.
func planWAL(plan *RetentionPlan, walNames []string, systemID string) {
	names := append([]string(nil), walNames...)
	sort.Strings(names)
	files := 0
	for _, n := range names {
		if !wal.IsHistoryFile(n) {
			files++
		}
	}
	plan.WAL, plan.WALHorizon, plan.WALHorizonBackup, plan.KeptWAL = nil, "", "", 0
	keep := horizonBackups(plan.Keep)
	if len(keep) == 0 {
		plan.KeptWAL = files
		if files > 0 {
			plan.Notes = append(plan.Notes, "no basebackup: every WAL file is kept")
		}
		return
	}
	if !slices.ContainsFunc(keep, func(k BackupDecision) bool { return !k.Backup.foreign(systemID) }) {
		plan.KeptWAL = files
		if n := fmt.Sprintf("no basebackup of database system %s: every WAL file is kept", systemID); files > 0 && !slices.Contains(plan.Notes, n) {
			plan.Notes = append(plan.Notes, n)
		}
		return
	}
	var low *BackupInfo
	lowStart := ""
	for _, k := range keep {
		if k.Backup.Auth == AuthInvalid {
			plan.KeptWAL = files
			n := fmt.Sprintf("backup %s's metadata does not authenticate, so neither does its start: every WAL file is kept", k.Backup.Name)
			if kid := k.Backup.KeyMissing; kid != "" {
				n = fmt.Sprintf("backup %s's metadata is signed with key %s, whose public key is not in the configuration, so its start "+
					"cannot be authenticated: every WAL file is kept (add encryption_keys.%s.public)", k.Backup.Name, kid, kid)
			}
			if !slices.Contains(plan.Notes, n) {
				plan.Notes = append(plan.Notes, n) // planWAL runs twice in Archive.PlanRetention
			}
			return
		}
		s := startSegment(k.Backup)
		if s == "" {
			plan.KeptWAL = files
			plan.Notes = append(plan.Notes, fmt.Sprintf(
				"backup %s records no start WAL segment: every WAL file is kept", k.Backup.Name))
			return
		}
		if low == nil || s[8:] < lowStart[8:] {
			low, lowStart = k.Backup, s
		}
	}
	plan.WALHorizon, plan.WALHorizonBackup = lowStart, low.Name
	stored := map[string]bool{}
	for _, n := range names {
		stored[n] = true
	}
	for _, n := range names {
		pos, ok := walPosition(n)
		if ok && pos >= lowStart[8:] && wal.IsPartialName(n) && stored[n[:24]] {
			// A copy of the segment taken while it was received, left
			// when its deletion after the upload failed (or by an older
			// version): the complete segment holds all of it.
			plan.WAL = append(plan.WAL, WALDeletion{Name: n, Reason: fmt.Sprintf(
				"%s is superseded by the complete segment %s", n, n[:24])})
			continue
		}
		if !ok || pos >= lowStart[8:] {
			if !wal.IsHistoryFile(n) {
				plan.KeptWAL++
			}
			continue
		}
		plan.WAL = append(plan.WAL, WALDeletion{Name: n, Reason: fmt.Sprintf(
			"%s precedes the start of every kept backup (lowest: backup %s, start segment %s)", n, low.Name, lowStart)})
	}
}

// startSegment returns the name of the segment a backup starts in
// (BackupInfo.StartSegment), "" when it records none.
func startSegment(b *BackupInfo) string {
	s, err := b.StartSegment()
	if err != nil {
		return ""
	}
	return s.Name(b.SegmentSize())
}

// walPosition returns the log and segment part of a WAL file name (the 16
// hex digits after the timeline), which sorts as the position does. Files
// that are not segments, .partial or .backup files have no position and are
// never deleted.
func walPosition(name string) (string, bool) {
	var seg string
	switch {
	case wal.IsSegmentName(name):
		seg = name
	case wal.IsPartialName(name):
		seg = strings.TrimSuffix(name, wal.PartialSuffix)
	case wal.IsBackupHistoryName(name):
		seg = name[:24]
	default:
		return "", false
	}
	return seg[8:], true
}

// backupNameTime returns the start time a backup name records: PGHoard
// names backups YYYY-MM-DD_HH-MM_N (older versions YYYY-MM-DD_N) in UTC.
func backupNameTime(name string) (time.Time, bool) {
	if t, err := time.Parse("2006-01-02_15-04", prefixUpTo(name, 16)); err == nil && len(name) > 17 && name[16] == '_' && isDigits(name[17:]) {
		return t, true
	}
	if t, err := time.Parse("2006-01-02", prefixUpTo(name, 10)); err == nil && len(name) > 11 && name[10] == '_' && isDigits(name[11:]) {
		return t, true
	}
	return time.Time{}, false
}

// BackupNameSpan returns the span of time in which a backup named name
// started, by its name alone (backupNameTime): the minute of a
// YYYY-MM-DD_HH-MM_N name, the day of a YYYY-MM-DD_N one. ok is false
// for a name hoard and PGHoard never give a backup.
func BackupNameSpan(name string) (from, to time.Time, ok bool) {
	t, ok := backupNameTime(name)
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	if _, err := time.Parse("2006-01-02_15-04", prefixUpTo(name, 16)); err == nil {
		return t, t.Add(time.Minute), true
	}
	return t, t.Add(24 * time.Hour), true
}

func prefixUpTo(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtDays renders a duration in days, as basebackup_age_days_max counts.
func fmtDays(d time.Duration) string {
	return strconv.FormatFloat(math.Round(d.Hours()/24*100)/100, 'f', -1, 64) + "d"
}

// PreservationDir is the folder of preservation requests: empty objects
// whose metadata names a backup (preserve-backup) and a time
// (preserve-until) before which retention must not delete it.
const PreservationDir = "preservation_request"

// Metadata keys of a preservation request.
const (
	MetaPreserveBackup = "preserve-backup"
	MetaPreserveUntil  = "preserve-until"
)

// basebackupDeltaChunkDir holds the small-file bundles of delta backups.
const basebackupDeltaChunkDir = "basebackup_delta_chunk"

// OrphanMinAge is how long ago the last object of a chunk folder without
// a main object must have been written before retention deletes it. A
// backup writes its chunks first and its main object last, so a folder
// without a main object may be a backup in progress. Retention deletes
// such a folder only when nothing was written in it for OrphanMinAge AND
// a listed backup started after its last write: hoard takes one backup
// per site at a time, so a later complete backup means the folder's
// backup is over, and the day of margin covers clock skew and a second
// writer (PGHoard on another host) whose backup is still running. The
// times are the storage's own times of writing (storedAt), not the minute
// in the folder's name: a backup that started in the same minute as the
// newest complete one, or whose name was chosen on a skewed clock, is not
// judged by its name. The same rule (orphanAged) ages the markers of
// running backups (incremental and delta) and the delta objects and
// bundles that may belong to a backup in progress.
const OrphanMinAge = 24 * time.Hour

// orphanAged reports whether an object the storage wrote at at (storedAt)
// can no longer belong to a backup in progress at now: written more than
// OrphanMinAge ago and before newest, the start of the newest backup the
// plan trusts. An unknown time (zero) never ages.
func orphanAged(at, newest, now time.Time) bool {
	return !at.IsZero() && at.Before(newest) && now.Sub(at) > OrphanMinAge
}

// storedAt returns when the storage wrote o by its own clock
// (storage.Object.Changed: the inode change time on a local store, the
// server's time on S3, GCS, Azure and Swift), never its modification
// time, which whoever writes the storage sets at will (touch -d
// 2099-01-01): dated in the future, a planted object would count as
// recent forever. A backend that records no such time (SFTP) falls back
// to the modification time; zero when it reports neither.
func storedAt(o storage.Object) time.Time {
	if !o.Changed.IsZero() {
		return o.Changed
	}
	return o.Modified
}

// site returns the archive called name among a's sites; "" is a.
func (a *Archive) site(name string) (*Archive, error) {
	if name == "" {
		return a, nil
	}
	for _, s := range a.sites() {
		if s.Site == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("retention plan names site %q, which is neither %s nor one it moved from", name, a.Site)
}

// ListPreservations returns, for every backup that a preservation request
// names in a or a site it moved from, the latest preserve-until time. A
// request whose metadata cannot be read is an error: ignoring it could
// delete a backup someone asked to keep.
func (a *Archive) ListPreservations(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for _, s := range a.sites() {
		var keys []string
		dir := s.Layout.Dir(PreservationDir)
		err := s.Store.List(ctx, dir, func(o storage.Object) error {
			keys = append(keys, o.Key)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list preservation requests of site %s: %w", s.Site, err)
		}
		for _, k := range keys {
			o, contradicted, err := statConfirmed(ctx, s.Store, k)
			if errors.Is(err, storage.ErrNotFound) {
				continue // withdrawn since the listing
			}
			if err != nil {
				return nil, fmt.Errorf("stat preservation request %s: %w", k, err)
			}
			if contradicted {
				return nil, contradiction(s.Site, k)
			}
			name := BackupName(o.Metadata[MetaPreserveBackup])
			until, terr := ParseTime(o.Metadata[MetaPreserveUntil])
			if name == "" || name == "." || terr != nil {
				return nil, fmt.Errorf("preservation request %s: metadata %s=%q %s=%q is not a backup and a time; fix or delete the request",
					k, MetaPreserveBackup, o.Metadata[MetaPreserveBackup], MetaPreserveUntil, o.Metadata[MetaPreserveUntil])
			}
			if until.After(out[name]) {
				out[name] = until
			}
		}
	}
	return out, nil
}

// planAttempts is how many times Archive.PlanRetention plans when a
// backup is stored during a plan that its listing left out.
const planAttempts = 3

// PlanRetention lists the backups and WAL of a and of the sites it moved
// from, adds the site's preservation requests to p.Preserved, and plans
// with the package function PlanRetention. It fills in where each object
// lives, and adds orphaned chunk folders (see OrphanMinAge).
//
// A backup that completes while it plans (its chunks listed, its control
// object stored after the listing of basebackup/) is found by the checks
// of retentionlist.go, and a kept backup that another retention run
// deletes while this one checks it (keepKnownGood) is found gone: either
// way the plan is made again from new listings (listingChangedError),
// and a note says so. A backup still in progress (chunks
// without a control object) is not listed: it is never deleted, never
// counted among the kept backups, and its chunk folder is no orphan
// while it is written to (OrphanMinAge). Only when planAttempts plans in
// a row each find a backup their listing left out does it fail: the
// storage lists fewer objects than it holds.
func (a *Archive) PlanRetention(ctx context.Context, p RetentionPolicy, now time.Time) (RetentionPlan, error) {
	var notes []string
	for attempt := 1; ; attempt++ {
		plan, err := a.planRetention(ctx, p, now)
		var changed *listingChangedError
		if err == nil {
			plan.Notes = append(notes, plan.Notes...)
			return plan, nil
		}
		if !errors.As(err, &changed) || attempt == planAttempts {
			return RetentionPlan{}, err
		}
		notes = append(notes, changed.note)
	}
}

// planRetention is one attempt of Archive.PlanRetention.
func (a *Archive) planRetention(ctx context.Context, p RetentionPolicy, now time.Time) (RetentionPlan, error) {
	pres, err := a.ListPreservations(ctx)
	if err != nil {
		return RetentionPlan{}, err
	}
	merged := map[string]time.Time{}
	for _, m := range []map[string]time.Time{p.Preserved, pres} {
		for k, v := range m {
			if v.After(merged[k]) {
				merged[k] = v
			}
		}
	}
	p.Preserved = merged

	scan, err := a.ScanAllBackups(ctx)
	if err != nil {
		return RetentionPlan{}, err
	}
	if len(scan.Contradicted) > 0 {
		return RetentionPlan{}, contradiction(a.Site, strings.Join(scan.Contradicted, ", "))
	}
	backups := scan.Sound
	listed := map[string]map[string]bool{} // site -> backup names
	list := func(site, name string) {
		if listed[site] == nil {
			listed[site] = map[string]bool{}
		}
		listed[site][name] = true
	}
	for _, b := range backups {
		list(a.ArchiveOf(b).Site, b.Name)
	}
	// A damaged backup is neither counted nor deleted, and its chunks are
	// not orphans: someone must look at it.
	for _, d := range scan.Damaged {
		list(d.Archive.Site, d.Name)
	}
	files, err := a.ListWAL(ctx)
	if err != nil {
		return RetentionPlan{}, err
	}
	stored := map[string][]WALFile{}
	var walNames []string
	for _, f := range files {
		if _, ok := stored[f.Name]; !ok {
			walNames = append(walNames, f.Name)
		}
		stored[f.Name] = append(stored[f.Name], f)
	}

	// The same backup in the site and a site it moved from (archive-copy,
	// both kept) counts once, as the copy restore takes (FirstCopies); the
	// other copies join the plan after its checks (keepCopies).
	first := a.FirstCopies(scan)
	// A damaged backup is not among backups, and a main object planted
	// under the other key of its name would not be caught by
	// PlanRetention's splitShared.
	sound, shared := splitDamagedName(first.Sound, scan.Damaged)
	plan := PlanRetention(sound, walNames, p, now)
	if len(shared) > 0 {
		keepShared(&plan, shared)
		keepParents(&plan)
	}
	for i := range plan.Keep {
		plan.Keep[i].Site = a.ArchiveOf(plan.Keep[i].Backup).Site
	}
	for i := range plan.Delete {
		plan.Delete[i].Site = a.ArchiveOf(plan.Delete[i].Backup).Site
	}
	a.keepReadOnly(&plan)
	// Where some backups authenticate, a planted one's start says nothing.
	var newest time.Time
	for _, b := range Trusted(OfSystem(backups, p.SystemID)) {
		if b.StartTime.After(newest) {
			newest = b.StartTime
		}
	}
	// The parents of incremental backups in progress (incrementalmark.go).
	marked, stale, err := a.incrementalMarks(ctx, markerStale(newest, now))
	if err != nil {
		return RetentionPlan{}, err
	}
	keepMarked(&plan, marked)
	var checked checkedRefs
	if len(plan.Delete) > 0 {
		if checked, err = a.keepKnownGood(ctx, &plan); err != nil {
			return RetentionPlan{}, err
		}
		// A backup kept as known good may be an incremental one.
		keepParents(&plan)
	}
	// After the known-good check, which checks each kept name once: in
	// the copy counted.
	keepCopies(&plan, a, backups, first)
	planWAL(&plan, walNames, p.SystemID)
	// WAL is deleted only from this site's own store: the sites it moved
	// from are read-only.
	var located []WALDeletion
	for _, d := range plan.WAL {
		for _, f := range stored[d.Name] {
			if f.Archive.Site != a.Site {
				continue
			}
			d.Site, d.Key, d.Size = f.Archive.Site, f.Key, f.Size
			located = append(located, d)
		}
	}
	plan.WAL = located
	plan.KeptWAL = 0
	for _, n := range walNames {
		if !wal.IsHistoryFile(n) {
			plan.KeptWAL += len(stored[n])
		}
	}
	plan.KeptWAL -= len(located)
	if err := a.keepUnchecked(ctx, &plan, SegmentIndex(files)); err != nil {
		return RetentionPlan{}, err
	}
	a.keepDamagedWAL(&plan, scan.Damaged)
	if err := a.keepUnsigned(ctx, &plan, OfSystem(backups, p.SystemID)); err != nil {
		return RetentionPlan{}, err
	}

	orphans, running, folders, err := a.planOrphans(ctx, listed[a.Site], newest, now)
	if err != nil {
		return RetentionPlan{}, err
	}
	plan.Orphans = orphans
	for _, o := range orphans {
		for _, err := range o.Damaged {
			plan.Notes = append(plan.Notes, leftNote("orphaned chunk folder "+o.Folder, err))
		}
	}
	a.noteDeletedFolders(&plan, folders)
	if d := a.staleMarkers(stale); d != nil {
		plan.Orphans = append(plan.Orphans, *d)
	}
	keepRunningWAL(&plan, running, Trusted(OfSystem(backups, p.SystemID)))
	if err := a.planDelta(ctx, &plan, checked, len(scan.Damaged), listed[a.Site], newest, now); err != nil {
		return RetentionPlan{}, err
	}
	if err := a.checkListedAgain(ctx, scan); err != nil {
		return RetentionPlan{}, err
	}
	if err := a.checkSeen(ctx, scan, p.Seen); err != nil {
		return RetentionPlan{}, err
	}
	return plan, nil
}

// keepUnchecked keeps each .partial plan deletes as superseded (planWAL)
// whose complete segment does not decode, or whose first page does not fit
// its name (copyChecked, as wal-fetch checks it): an object planted under
// the segment's name, or one whose private key this site lacks, does not
// prove the .partial's WAL stored, and the .partial may be its only copy.
// segments maps the complete segments to the copy wal-fetch reads.
func (a *Archive) keepUnchecked(ctx context.Context, plan *RetentionPlan, segments map[string]WALFile) error {
	if plan.WALHorizon == "" {
		return nil
	}
	var del []WALDeletion
	for _, d := range plan.WAL {
		if !wal.IsPartialName(d.Name) || d.Name[8:24] < plan.WALHorizon[8:] {
			del = append(del, d)
			continue
		}
		err := checkSegment(ctx, segments[d.Name[:24]])
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			del = append(del, d)
			continue
		}
		plan.KeptWAL++
		plan.Notes = append(plan.Notes, fmt.Sprintf("%s kept: its complete segment %s does not check (%v)", d.Name, d.Name[:24], err))
	}
	plan.WAL = del
	return nil
}

// checkSegment decodes the stored segment f to its end and checks its
// first page against its name. Where the site has the public key alone
// for f's key, it can only check that f is encrypted with a key of the
// site: a real segment copied under f's name passes (as a backup's chunks
// do CheckBackupSealed).
func checkSegment(ctx context.Context, f WALFile) error {
	if f.Archive == nil {
		return errors.New("not listed")
	}
	o, err := f.Archive.Store.Stat(ctx, f.Key)
	if err != nil {
		return err
	}
	c := f.Archive.Codec
	if kid := o.Metadata[MetaEncryptionKeyID]; kid != "" && c.PrivateKeys[kid] == nil {
		if c.publicKeyFor(kid) == nil {
			return fmt.Errorf("encrypted with key %q, which this site has no key for", kid)
		}
		return nil
	}
	rc, md, err := f.Open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	h, _, err := copyChecked(io.Discard, rc, md, f.Key, f.Name)
	return f.Archive.timelineEnd(ctx, f.Name, h, err)
}

// keepDamagedWAL makes plan delete no WAL while a's own store holds a
// damaged backup (ScanBackups: its metadata cannot be read, a sidecar cut
// short on a failing disk, or altered): where it starts is unknown, and
// it needs the WAL from there once its metadata is repaired. A backup
// whose HMAC does not verify keeps every WAL file the same way (planWAL).
func (a *Archive) keepDamagedWAL(plan *RetentionPlan, damaged []*DamagedBackup) {
	var names []string
	for _, d := range damaged {
		if d.Archive == nil || d.Archive.Site == a.Site {
			names = append(names, d.Name)
		}
	}
	if len(names) == 0 || len(plan.WAL) == 0 {
		return
	}
	plan.keepWAL()
	plan.WALKept = fmt.Sprintf("the metadata of damaged backup %s cannot be read, so neither can its start: "+
		"every WAL file is kept until it is repaired or deleted (see hoard list)", strings.Join(names, ", "))
	plan.Notes = append(plan.Notes, plan.WALKept)
}

// keepWAL makes p delete no WAL file.
func (p *RetentionPlan) keepWAL() {
	p.KeptWAL += len(p.WAL)
	p.WAL, p.WALHorizon, p.WALHorizonBackup = nil, "", ""
}

// keepCopies adds to plan.Keep, outside the policy, the backups of all
// (ScanAllBackups' sound ones) that first (FirstCopies) leaves out: copies
// of a backup an earlier site holds under the same name. They are stored by
// a site a moved from, which retention never deletes from, and hold no WAL
// of their own (ExtraReadOnly): the copy counted decides.
func keepCopies(plan *RetentionPlan, a *Archive, all []*BackupInfo, first Backups) {
	counted := map[string]*Archive{}
	for _, b := range first.Sound {
		counted[b.Name] = a.ArchiveOf(b)
	}
	for _, d := range first.Damaged {
		counted[d.Name] = cmp.Or(d.Archive, a)
	}
	n := 0
	for _, b := range all {
		s := a.ArchiveOf(b)
		if c, ok := counted[b.Name]; !ok || c == s {
			continue
		}
		n++
		plan.Keep = append(plan.Keep, BackupDecision{Backup: b, Site: s.Site, Extra: ExtraReadOnly,
			Reason: fmt.Sprintf("kept, and not counted: a copy of backup %s of site %s (site %s, which %s moved from, is read-only to retention)",
				b.Name, counted[b.Name].Site, s.Site, a.Site)})
	}
	if n > 0 {
		sortDecisions(plan.Keep)
		plan.Notes = append(plan.Notes, fmt.Sprintf("copies kept and not counted, in the sites %s moved from, of backups an earlier site holds "+
			"under the same names (each name counts once toward the policy, as the copy restore takes): %d", a.Site, n))
	}
}

// keepReadOnly moves the deletions of backups stored by a moved_from site
// into plan.Keep: retention deletes only under the site's own prefix, as
// PGHoard does, and a site it moved from may be another site's, or one
// the configuration marks inactive. Their WAL is not deleted either.
func (a *Archive) keepReadOnly(plan *RetentionPlan) {
	var del []BackupDecision
	for _, d := range plan.Delete {
		if d.Site == "" || d.Site == a.Site {
			del = append(del, d)
			continue
		}
		d.Reason = fmt.Sprintf("%s; kept: site %s, which %s moved from, is read-only to retention", d.Reason, d.Site, a.Site)
		d.Extra = ExtraReadOnly
		plan.Keep = append(plan.Keep, d)
	}
	if len(del) == len(plan.Delete) {
		return
	}
	plan.Delete = del
	sortDecisions(plan.Keep)
	plan.Notes = append(plan.Notes, fmt.Sprintf("backups of the sites %s moved from are never deleted by its retention", a.Site))
}

// keepKnownGood makes sure that a backup the plan keeps is known good
// before any is deleted. The newest kept backup that passes is decoded
// in full (CheckBackup with full), with every backup of its chain of
// parents when it is an incremental one; every kept backup older than it
// gets the quick check (control object decodes, chunks exist with their
// sizes), which the full check makes first. When none passes,
// the backups planned for deletion are decoded in full (with their
// chains), newest first, and
// kept until one passes; the plan then keeps more backups than the policy
// asks (BackupDecision.Extra, RetentionPlan.KeptExtra), and plan.Damaged
// names what failed, for the caller to log and alert on. A backup whose
// check finds damage (IsDamage) is not known good: retention errs on the
// side of keeping. A check the storage fails (unreachable, refusing, a
// download cut: not IsDamage) finds nothing wrong, so names nothing in
// plan.Damaged, whose alert would be false: it fails the plan, and
// nothing is deleted until a run can check.
//
// It returns the delta references of the delta backups it checked, from
// the manifest each check read (checkedRefs), for planDelta.
func (a *Archive) keepKnownGood(ctx context.Context, plan *RetentionPlan) (checkedRefs, error) {
	plan.Checked = true
	refs := checkedRefs{}
	var sealed []string
	defer func() {
		if len(sealed) > 0 {
			slices.Sort(sealed) // oldest first
			plan.Notes = append(plan.Notes, fmt.Sprintf("checked without decrypting (no private key for them): %s; "+
				"only their chunk counts and sizes were compared with their metadata", strings.Join(sealed, ", ")))
		}
	}()
	check := func(d BackupDecision, full bool) (bool, error) {
		s, err := a.site(d.Site)
		if err != nil {
			return false, err
		}
		if ok, err := s.sealed(ctx, d.Backup); err == nil && ok && !slices.Contains(sealed, d.Backup.Name) {
			sealed = append(sealed, d.Backup.Name)
		}
		m, err := s.checkBackup(ctx, d.Backup, full)
		if m != nil && isDelta(d.Backup.Format) {
			r, rerr := deltaRefSet(m)
			refs[d.Backup] = refsRead{refs: r, err: rerr}
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err != nil {
			if err := s.deletedSince(ctx, d.Backup, err); err != nil {
				return false, err
			}
			if !IsDamage(err) {
				// Nothing found wrong with it: the check could
				// not be made. The plan fails (nothing deleted
				// this run) rather than report damage.
				return false, fmt.Errorf("check backup %s (site %s): %w; nothing is deleted, retention tries again at its next run", d.Backup.Name, s.Site, err)
			}
			plan.Damaged = append(plan.Damaged, fmt.Sprintf("backup %s (site %s): %v", d.Backup.Name, s.Site, err))
			return false, nil
		}
		return true, nil
	}
	// passed records the backups checked in full, by name: a backup is
	// checked once, also as a member of several chains.
	passed := map[string]bool{}
	// An incremental backup is restored with its chain of parents
	// (Chain), so it is known good only when every backup of the chain
	// decodes in full: one that does while its parent misses a chunk
	// restores nothing.
	var listed []*BackupInfo
	decision := map[*BackupInfo]BackupDecision{}
	for _, d := range append(plan.Keep[:len(plan.Keep):len(plan.Keep)], plan.Delete...) {
		listed = append(listed, d.Backup)
		decision[d.Backup] = d
	}
	good := func(d BackupDecision) (bool, error) {
		chain, err := Chain(listed, d.Backup)
		if err != nil {
			plan.Damaged = append(plan.Damaged, fmt.Sprintf("backup %s (site %s): %v", d.Backup.Name, d.Site, err))
			return false, nil
		}
		for i := len(chain) - 1; i >= 0; i-- {
			c := decision[chain[i]]
			ok, done := passed[c.Backup.Name]
			if !done {
				if ok, err = check(c, true); err != nil {
					return false, err
				}
				passed[c.Backup.Name] = ok
			}
			if !ok {
				if c.Backup != d.Backup {
					plan.Damaged = append(plan.Damaged, fmt.Sprintf("backup %s (site %s): incremental, its chain of parents holds backup %s, which failed its check",
						d.Backup.Name, d.Site, c.Backup.Name))
				}
				return false, nil
			}
		}
		return true, nil
	}
	// The kept backups, newest first, are checked in full (with their
	// chains) until one passes, the others older than it quickly. The
	// full check makes the quick check's checks first (CheckBackup), so
	// a damaged backup fails it as fast, and no control object is read
	// twice: each read is a download and a decode of the whole object.
	known := false
	for i := len(plan.Keep) - 1; i >= 0; i-- {
		k := plan.Keep[i]
		if _, done := passed[k.Backup.Name]; done {
			continue // checked in full in a newer backup's chain
		}
		if known {
			if _, err := check(k, false); err != nil {
				return nil, err
			}
			continue
		}
		ok, err := good(k)
		if err != nil {
			return nil, err
		}
		known = ok
	}
	if known {
		return refs, nil
	}
	var found string
	n := len(plan.Delete)
	for n > 0 && found == "" {
		d := plan.Delete[n-1]
		ok, err := good(d)
		if err != nil {
			return nil, err
		}
		if ok {
			found = d.Backup.Name
			d.Reason = fmt.Sprintf("%s; kept: no newer backup is known good, and this one decodes in full", d.Reason)
		} else {
			d.Reason = fmt.Sprintf("%s; kept: no newer backup is known good, and this one is damaged too", d.Reason)
		}
		d.Extra = ExtraKnownGood
		plan.Keep = append(plan.Keep, d)
		n--
	}
	plan.Delete = plan.Delete[:n]
	sortDecisions(plan.Keep)
	note := fmt.Sprintf("no kept backup is known good: %d more backups kept than the policy asks", plan.KeptExtra())
	if found != "" {
		note += ", through " + found + ", the newest that decodes in full"
	} else {
		note += "; none of them decodes in full either"
	}
	plan.Notes = append(plan.Notes, note)
	return refs, nil
}

// deletedSince tells a backup deleted since it was listed from a damaged
// one, after its check failed with checkErr. When its main object is
// gone (statConfirmed), another retention run deleted it (the main
// object goes first) and the listing the plan was made from is out of
// date: it returns a listingChangedError. Otherwise (stored, or the
// lookup failed) the backup counts as damaged, as keepKnownGood errs on
// the side of keeping: nil.
func (a *Archive) deletedSince(ctx context.Context, b *BackupInfo, checkErr error) error {
	err := a.DeletedWhileRead(ctx, b, checkErr)
	if !errors.Is(err, ErrBackupDeleted) {
		return nil
	}
	return &listingChangedError{
		err: fmt.Errorf("site %s: %w", a.Site, err),
		note: fmt.Sprintf("backup %s was deleted while retention planned (by another retention run: "+
			"the daemon's, a hoard retention by hand, or another host's): planned again without it", b.Name),
	}
}

// sortDecisions sorts decisions as SortBackups sorts backups.
func sortDecisions(ds []BackupDecision) {
	sort.SliceStable(ds, func(i, j int) bool {
		bi, bj := ds[i].Backup, ds[j].Backup
		if !bi.StartTime.Equal(bj.StartTime) {
			return bi.StartTime.Before(bj.StartTime)
		}
		return bi.Name < bj.Name
	})
}

// listedFolder is what planOrphans' listing saw of the chunk folder of a
// listed backup: the entries a local store lists as damaged
// (storage.Object.Damaged), and whether an object in it was written in
// the last OrphanMinAge or at a time the storage does not report, as
// deleteBackup judges it.
type listedFolder struct {
	damaged []error
	young   bool
}

// noteDeletedFolders adds to plan.Notes each damaged entry (a FIFO, a
// socket or a directory under a chunk's name in local storage) that
// planOrphans' listing saw in the chunk folder of a backup plan deletes
// (folders, by folder key): applying the plan leaves it and fails naming
// it (deleteBackup), so the plan says so beforehand, as for orphaned
// folders. That listing is the one of the whole chunk directories that
// orphaned folders need; no folder is listed again. A folder applying
// leaves whole (young, of a backup whose metadata does not authenticate)
// fails on nothing: not named, the orphan sweep names it later. Only the
// site's own backups are deleted (its moved_from sites are read-only),
// and only its store is listed.
func (a *Archive) noteDeletedFolders(plan *RetentionPlan, folders map[string]*listedFolder) {
	for _, d := range plan.Delete {
		if d.Site != a.Site {
			continue
		}
		b := d.Backup
		folder := a.Layout.Dir(chunkDirOf(b)) + b.Name + "/"
		f := folders[folder]
		if f == nil || f.young && b.Auth != AuthOK {
			continue
		}
		for _, err := range f.damaged {
			plan.Notes = append(plan.Notes, leftNote("chunk folder "+folder+" of deleted backup "+b.Name, err))
		}
	}
}

// chunkDirOf returns the directory that holds b's chunk folder.
func chunkDirOf(b *BackupInfo) string {
	if b.Format == FormatDeltaV1 || b.Format == FormatDeltaV2 {
		return basebackupDeltaChunkDir
	}
	return BasebackupChunkDir
}

// planOrphans returns the chunk folders of a's chunk directories whose
// backup is not listed and which are old enough (OrphanMinAge), and the
// others, whose backups may still be running. From the same listing it
// returns, by folder key, what it saw of the chunk folders of listed
// backups (noteDeletedFolders).
func (a *Archive) planOrphans(ctx context.Context, listed map[string]bool, newest, now time.Time) ([]OrphanDeletion, []runningBackup, map[string]*listedFolder, error) {
	var out []OrphanDeletion
	var running []runningBackup
	seen := map[string]*listedFolder{}
	for _, d := range []string{BasebackupChunkDir, basebackupDeltaChunkDir} {
		dir := a.Layout.Dir(d)
		var folders []*OrphanDeletion
		last := map[string]time.Time{}  // folder -> when its newest object was stored (storedAt)
		first := map[string]time.Time{} // folder -> when its oldest object was stored
		unknown := map[string]bool{}    // folders with an object of unknown time
		byFolder := map[string]*OrphanDeletion{}
		err := a.Store.List(ctx, dir, func(o storage.Object) error {
			folder, _, ok := strings.Cut(strings.TrimPrefix(o.Key, dir), "/")
			if !ok {
				return nil
			}
			if listed[folder] {
				f := seen[dir+folder+"/"]
				if f == nil {
					f = &listedFolder{}
					seen[dir+folder+"/"] = f
				}
				if at := storedAt(o); at.IsZero() || now.Sub(at) <= OrphanMinAge {
					f.young = true
				}
				if o.Damaged != nil {
					f.damaged = append(f.damaged, o.Damaged)
				}
				return nil
			}
			f := byFolder[folder]
			if f == nil {
				f = &OrphanDeletion{Site: a.Site, Folder: dir + folder + "/"}
				byFolder[folder] = f
				folders = append(folders, f)
			}
			f.Keys = append(f.Keys, o.Key)
			f.Size += o.Size
			if o.Damaged != nil {
				f.Damaged = append(f.Damaged, o.Damaged)
			}
			// A backend that reports no time makes the folder look
			// new: it is kept.
			if at := storedAt(o); at.IsZero() {
				unknown[folder] = true
			} else {
				if at.After(last[folder]) {
					last[folder] = at
				}
				if f := first[folder]; f.IsZero() || at.Before(f) {
					first[folder] = at
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("list %s of site %s: %w", dir, a.Site, err)
		}
		for _, f := range folders {
			name := strings.TrimSuffix(strings.TrimPrefix(f.Folder, dir), "/")
			if d == BasebackupChunkDir && name == incrementalMarkerFolder {
				continue // markers, one by one: incrementalMarks
			}
			// Every folder, not only those old enough to delete: a
			// backup left out of the listing counts for the WAL, the
			// parents and the delta objects it needs (retentionlist.go).
			if d != basebackupDeltaChunkDir || name != deltaRetentionFolder {
				if err := a.checkUnlisted(ctx, name); err != nil {
					return nil, nil, nil, err
				}
			}
			at := last[name]
			if unknown[name] || !orphanAged(at, newest, now) {
				if name != deltaRetentionFolder {
					running = append(running, runningBackup{name: name, since: runningSince(name, first[name], unknown[name])})
				}
				continue
			}
			f.Reason = fmt.Sprintf("chunks of %s have no main object, none was written in the last %s (newest %s), and a backup that started after them (at %s) completed",
				name, fmtDays(OrphanMinAge), fmtTime(at), fmtTime(newest))
			out = append(out, *f)
		}
	}
	return out, running, seen, nil
}

// RetentionResult counts what ApplyRetention deleted.
type RetentionResult struct {
	Backups int   // main objects
	Chunks  int   // chunk objects of deleted backups
	WAL     int   // WAL files
	Orphans int   // objects of orphaned chunk folders
	Delta   int   // delta objects no kept backup refers to
	Bytes   int64 // stored bytes of everything deleted
}

// ApplyRetention deletes what plan lists, in an order that keeps the
// archive consistent if it stops at any point: for each backup, oldest
// first but an incremental backup before its parent (nextDeletion), it
// deletes the main object (after which the backup is no longer listed, so
// no listed backup ever misses a chunk, nor a parent), then every object
// in the backup's chunk folder (an unsigned backup's not while one was
// written in the last day: see deleteBackup); then the WAL; then
// orphaned chunk folders. Whatever an interrupted run leaves behind is
// unlisted garbage that a later plan finds again (WAL before the oldest
// kept backup, chunk folders without a main object). Within each of
// those steps (one backup's chunks, the WAL, the orphaned folders, the
// delta objects) RetentionDeletes deletes run at once, and a step starts
// only once every delete of the step before it has returned
// (deleteParallel). It stops at the first error (the deletes in flight
// finish, none starts after them) and returns what it deleted so far,
// but for an entry of a
// local store that no writer leaves (storage.ErrObjectDamaged: a FIFO, a
// socket or a directory under a chunk's or a delta object's name; the
// plan's notes name those it listed): it deletes no such entry,
// goes on with the rest of the plan, and returns an error naming each
// one left and saying to remove it by hand. One such entry would
// otherwise stop every run at the same place, for good, and keep every
// later deletion of the plan from happening.
func (a *Archive) ApplyRetention(ctx context.Context, plan RetentionPlan, log zerolog.Logger) (RetentionResult, error) {
	var left []error
	res, err := a.applyRetention(ctx, plan, log, &left)
	if len(left) > 0 {
		return res, errors.Join(append([]error{err}, left...)...)
	}
	return res, err
}

// leftEntry reports whether err, a Delete's, is a local store's refusal
// of an entry no writer leaves (storage.ErrObjectDamaged), and if so
// appends to left an error naming it (what, the storage's words) and
// what to do; then says what the next run does once it is removed.
func leftEntry(left *[]error, what, then string, err error) bool {
	if !errors.Is(err, storage.ErrObjectDamaged) {
		return false
	}
	*left = append(*left, fmt.Errorf("retention left %s: %w; retention never deletes such an entry itself: "+
		"remove it and its .metadata sidecar by hand, and %s", what, err, then))
	return true
}

// leftNote is the plan's note for an entry in where that a listing
// showed damaged (storage.Object.Damaged, err): applying the plan will
// leave it, as leftEntry says.
func leftNote(where string, err error) string {
	return fmt.Sprintf("%s holds an entry no Delete removes (%v): applying the plan leaves it and its .metadata sidecar "+
		"and fails naming it; remove both by hand", where, err)
}

// applyRetention is ApplyRetention, which see; entries it cannot delete
// go to left.
func (a *Archive) applyRetention(ctx context.Context, plan RetentionPlan, log zerolog.Logger, left *[]error) (RetentionResult, error) {
	var res RetentionResult
	if len(plan.Keep) == 0 && len(plan.Delete) > 0 {
		return res, errors.New("retention plan deletes every backup; refusing (the newest backup is always kept)")
	}
	// Kept and deleted backups may move (keepMarkedAgain): not in the
	// caller's arrays.
	plan.Keep, plan.Delete = slices.Clone(plan.Keep), slices.Clone(plan.Delete)
	for len(plan.Delete) > 0 {
		// An incremental backup that started since the plan may
		// have chosen a backup it deletes as its parent.
		if err := a.keepMarkedAgain(ctx, &plan, log); err != nil {
			return res, err
		}
		if len(plan.Delete) == 0 {
			break
		}
		i := nextDeletion(plan.Delete)
		d := plan.Delete[i]
		plan.Delete = slices.Delete(plan.Delete, i, i+1)
		s, err := a.site(d.Site)
		if err != nil {
			return res, err
		}
		if err := s.deleteBackup(ctx, d, plan.Now, &res, siteLogger(log, a, s), left); err != nil {
			return res, err
		}
	}
	// Every backup of the plan is gone (each deleteBackup returned):
	// the WAL now goes, RetentionDeletes files at a time. None of it is
	// needed by a kept backup, so the order among them does not matter:
	// a run stopped here leaves some of it, before the oldest kept
	// backup's start, for the next run.
	walSites := make([]*Archive, len(plan.WAL))
	walKeys := make([]string, len(plan.WAL))
	for i, w := range plan.WAL {
		s, err := a.site(w.Site)
		if err != nil {
			return res, err
		}
		walSites[i], walKeys[i] = s, cmp.Or(w.Key, s.Layout.WALKey(w.Name))
	}
	errs, stopAt := deleteParallel(ctx, len(plan.WAL), nil, func(ctx context.Context, i int) error {
		return walSites[i].Store.Delete(ctx, walKeys[i])
	})
	for i, w := range plan.WAL {
		if errs[i] == nil {
			res.WAL++
			res.Bytes += w.Size
			log.Debug().Str("key", walKeys[i]).Str("reason", w.Reason).Msg("deleted wal")
		}
	}
	if stopAt >= 0 {
		return res, fmt.Errorf("delete wal %s: %w", walKeys[stopAt], errs[stopAt])
	}
	if len(plan.WAL) > 0 {
		log.Info().Int("files", len(plan.WAL)).Str("first", plan.WAL[0].Name).
			Str("last", plan.WAL[len(plan.WAL)-1].Name).Msg("deleted wal before the oldest kept backup")
	}
	// The objects of every orphaned folder together: nothing lists
	// them, so their order does not matter.
	type orphanKey struct {
		folder int
		s      *Archive
		key    string
	}
	var orphans []orphanKey
	for i, o := range plan.Orphans {
		s, err := a.site(o.Site)
		if err != nil {
			return res, err
		}
		for _, k := range o.Keys {
			orphans = append(orphans, orphanKey{i, s, k})
		}
	}
	errs, stopAt = deleteParallel(ctx, len(orphans), isDamaged, func(ctx context.Context, i int) error {
		return orphans[i].s.Store.Delete(ctx, orphans[i].key)
	})
	whole := make([]bool, len(plan.Orphans))
	for i := range whole {
		whole[i] = true
	}
	for i, k := range orphans {
		switch {
		case errs[i] == nil:
			res.Orphans++
			continue
		case errors.Is(errs[i], errNotTried):
		case leftEntry(left, "orphaned chunk "+k.key, "the next run deletes what is left of the folder", errs[i]):
		}
		whole[k.folder] = false
	}
	for i, o := range plan.Orphans {
		if !whole[i] {
			continue
		}
		res.Bytes += o.Size
		s, _ := a.site(o.Site)
		l := siteLogger(log, a, s)
		l.Info().Str("key", o.Folder).Int("objects", len(o.Keys)).
			Str("reason", o.Reason).Msg("deleted orphaned chunk folder")
	}
	if stopAt >= 0 {
		return res, fmt.Errorf("delete orphaned chunk %s: %w", orphans[stopAt].key, errs[stopAt])
	}
	if len(plan.Delta) == 0 {
		return res, nil
	}
	// Deleting delta objects stores a marker first; a configuration
	// that reads but cannot encrypt (a restore host's: private keys, no
	// encryption_key_id) would fail there, after the deletions above,
	// which store nothing and stand. The objects stay for a run that can.
	if _, err := a.Codec.encrypts(); errors.Is(err, ErrNoUploadKey) {
		log.Warn().Err(err).Int("objects", len(plan.Delta)).
			Msg("retention: no delta object deleted: deleting them stores a marker, which this configuration cannot encrypt (set encryption_key_id)")
		return res, nil
	}
	// Delta objects last: they were planned from the backups listed
	// before, and a backup deleted above no longer refers to them. A
	// backup the plan did not see may reuse them: see deltamark.go.
	for _, d := range plan.Delta {
		if d.Site != "" && d.Site != a.Site || !strings.HasPrefix(d.Key, a.Layout.Dir(DeltaDir)) {
			return res, fmt.Errorf("retention plan deletes delta object %s of site %s, outside %s", d.Key, d.Site, a.Layout.Dir(DeltaDir))
		}
	}
	marker := a.Layout.deltaRetentionDir() + fmt.Sprintf("%d-%d", time.Now().UnixNano(), os.Getpid())
	// Taken before the marker is stored, so that a backup that sees it
	// sees it no earlier than this.
	marked := time.Now()
	if _, err := a.putMarker(ctx, marker); err != nil {
		return res, err
	}
	defer func() {
		if err := a.Store.Delete(context.WithoutCancel(ctx), marker); err != nil {
			log.Warn().Err(err).Str("key", marker).Msg("retention marker not deleted (a later run deletes it)")
		}
	}()
	unseen, err := a.deltaUnseen(ctx, plan)
	if err != nil {
		return res, err
	}
	if unseen != "" {
		log.Info().Str("key", unseen).Int("objects", len(plan.Delta)).
			Msg("retention: no delta object deleted: a backup the plan did not see may reuse them")
		return res, nil
	}
	errs, stopAt = deleteParallel(ctx, len(plan.Delta), isDamaged, func(ctx context.Context, i int) error {
		// No delete starts past the window (one that does not start
		// stops the others from starting too).
		if time.Since(marked) > DeltaDeleteWindow {
			return errDeltaWindow
		}
		// A delete that hangs (a slow store, retries) must not land
		// after a waiting backup took the window as closed.
		dctx, cancel := context.WithDeadline(ctx, marked.Add(DeltaDeleteWindow+deltaMarkerMargin/2))
		defer cancel()
		return a.Store.Delete(dctx, plan.Delta[i].Key)
	})
	for i, d := range plan.Delta {
		if errs[i] == nil {
			res.Delta++
			res.Bytes += d.Size
			log.Debug().Str("key", d.Key).Str("reason", d.Reason).Msg("deleted delta object")
			continue
		}
		// The other delta objects go as planned.
		leftEntry(left, "delta object "+d.Key, "retention has nothing more to delete there", errs[i])
	}
	if stopAt >= 0 && errors.Is(errs[stopAt], errDeltaWindow) {
		log.Warn().Int("left", len(plan.Delta)-res.Delta).Int64("window_ms", DeltaDeleteWindow.Round(time.Millisecond).Milliseconds()).
			Msg("retention: delta objects left for the next run: their deletion took longer than its window")
	} else if stopAt >= 0 {
		return res, fmt.Errorf("delete delta object %s: %w", plan.Delta[stopAt].Key, errs[stopAt])
	}
	if res.Delta > 0 {
		log.Info().Int("objects", res.Delta).Msg("deleted delta objects no kept backup refers to")
	}
	return res, nil
}

// nextDeletion returns the index in ds (oldest first) of the backup to
// delete next: the oldest that no other backup of ds names as its parent.
// An incremental backup's parent goes after it, so that a run stopped
// between the two (a crash, a failed delete, the daemon's shutdown)
// leaves no listed backup whose chain of parents is gone: restore,
// verify and keepKnownGood's Chain would refuse such a backup, which is
// not restorable although listed. A loop of parents (metadata no backup
// hoard took records) deletes the oldest first.
func nextDeletion(ds []BackupDecision) int {
	parents := map[string]bool{}
	for _, d := range ds {
		if d.Backup.Parent != "" && d.Backup.Parent != d.Backup.Name {
			parents[d.Backup.Parent] = true
		}
	}
	for i, d := range ds {
		if !parents[d.Backup.Name] {
			return i
		}
	}
	return 0
}

// siteLogger adds the site field to log for a moved_from site s of a; the
// caller's logger already names a.
func siteLogger(log zerolog.Logger, a, s *Archive) zerolog.Logger {
	if s == a {
		return log
	}
	return log.With().Str("site", s.Site).Logger()
}

// deleteBackup deletes one backup of a: the main object first (after which
// the backup is no longer listed), then every object in its chunk folder.
// It decrypts nothing, so a daemon holding only the public key can apply
// retention: a backup's chunks (PGHoard's and hoard's alike) all live in
// the folder named after it, so listing the folder finds every chunk the
// control object's manifest names, and any it does not.
//
// Of a backup whose metadata does not authenticate (a PGHoard backup, or
// one planted by someone who can write the storage), it leaves the whole
// folder while the storage wrote any object in it less than
// OrphanMinAge before now (storedAt; an unknown time too): a backup's
// name is its start time, which anyone can foresee, and a main object
// planted under the name of a backup still being taken (its chunks
// stored, its control object not yet) would otherwise take that
// backup's chunks with it, and the backup would then be listed without
// them. The folder left is one without a main object, which planOrphans
// deletes by the same rule of its newest write, as it does an
// interrupted backup's: the backup's own chunks go then, a day later at
// most. A backup whose metadata authenticates is hoard's own, the one
// backup of its name: its folder is all its own.
//
// A chunk folder's entry that a local store refuses to delete for what
// it is (storage.ErrObjectDamaged: a FIFO, a socket or a directory under
// a chunk's name) is left, with its sidecar, and named in left; the
// folder's other chunks are deleted. The backup is gone all the same
// (its main object went first), and the rest of the folder is an
// orphaned folder for a later run once that entry is removed by hand.
func (a *Archive) deleteBackup(ctx context.Context, d BackupDecision, now time.Time, res *RetentionResult, log zerolog.Logger, left *[]error) error {
	b := d.Backup
	chunkDir := chunkDirOf(b)
	if err := a.Store.Delete(ctx, b.Key); err != nil {
		return fmt.Errorf("delete backup %s: %w", b.Key, err)
	}
	res.Backups++
	res.Bytes += b.StoredSize
	log.Info().Str("backup", b.Name).Str("reason", d.Reason).Msg("deleted basebackup")

	folder := a.Layout.Dir(chunkDir) + b.Name + "/"
	var chunks []storage.Object
	young := false
	err := a.Store.List(ctx, folder, func(o storage.Object) error {
		chunks = append(chunks, o)
		if at := storedAt(o); at.IsZero() || now.Sub(at) <= OrphanMinAge {
			young = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list chunks of backup %s: %w", b.Name, err)
	}
	if young && b.Auth != AuthOK {
		log.Info().Str("backup", b.Name).Str("key", folder).Int("objects", len(chunks)).
			Msg("chunk folder left for the orphan sweep: the backup's metadata does not authenticate, and an object in it was written in the last day (a backup of its name may still be running)")
		return nil
	}
	// The backup is no longer listed: its chunks go RetentionDeletes at
	// a time, and all have been tried (or the run stops) before the
	// next backup's main object goes.
	errs, stopAt := deleteParallel(ctx, len(chunks), isDamaged, func(ctx context.Context, i int) error {
		return a.Store.Delete(ctx, chunks[i].Key)
	})
	for i, o := range chunks {
		if errs[i] == nil {
			res.Chunks++
			res.Bytes += o.Size
			continue
		}
		leftEntry(left, fmt.Sprintf("chunk %s of deleted backup %s", o.Key, b.Name), "the next run deletes what is left of the folder", errs[i])
	}
	if stopAt >= 0 {
		return fmt.Errorf("delete chunk %s of backup %s: %w", chunks[stopAt].Key, b.Name, errs[stopAt])
	}
	return nil
}
