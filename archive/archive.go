package archive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// Archive is one site's archive: the store its objects live in, how they
// are encoded, and how they are named.
type Archive struct {
	Store  storage.Store
	Codec  *Codec
	Layout Layout
	Site   string
	// StoreID names the store without credentials (storage.Config's
	// Location): the prefetch spool records it, with Site, the prefix and
	// the keys, so that segments fetched from one archive are never
	// delivered for another (spoolIdentity). "" for a store with no name.
	StoreID string
	// MovedFrom are the archives of the sites this one moved from (the
	// site's moved_from), each with its own store, codec and layout. Their
	// backups and WAL count for retention, which deletes from the site that
	// holds each object, and FetchWAL looks for WAL in them after a.
	MovedFrom []*Archive
	// Log receives what the archive decides without failing: that the
	// backups that record no WAL segment size are read at
	// DefaultSegmentSize (noteAssumedSize). The zero Logger discards.
	Log zerolog.Logger
}

// sites returns a followed by the archives it moved from: the order in
// which WAL is looked for.
func (a *Archive) sites() []*Archive {
	return append([]*Archive{a}, a.MovedFrom...)
}

// InSite returns " of site S", S the site of src (a or one of the sites
// it moved from, the archive holding an object), for a message that
// names one of src's objects by its key, when a has moved_from sites:
// their keys can be the same as a's (archive-copy into another storage
// keeps them, and a site may keep its prefix), and only the site tells
// which storage holds the copy to fix, as hoard verify names it. "" when
// a has none, or a or src is nil.
func (a *Archive) InSite(src *Archive) string {
	if a == nil || src == nil || len(a.MovedFrom) == 0 {
		return ""
	}
	return " of site " + src.Site
}

// DamagedBackup is a backup whose main object is stored but whose metadata
// cannot be read: a local store's sidecar that is not JSON, or a field
// ParseBackupInfo refuses (a start time that is no time, an LSN that is no
// LSN). Nothing about it can be trusted, not even its start: it is never
// chosen for a restore, never counted or deleted by retention, and its
// name is never reused.
type DamagedBackup struct {
	Name string // backup name without the control suffix
	Key  string // key of the main object
	Err  error  // why its metadata cannot be read
	// Archive is the archive whose store holds it, set by ScanAllBackups
	// (nil otherwise: the archive listing it).
	Archive *Archive
}

// Backups is a listing of basebackups: the sound ones oldest first, and the
// damaged ones by key.
type Backups struct {
	Sound   []*BackupInfo
	Damaged []*DamagedBackup
	// Contradicted holds the keys of main objects listed and read by
	// GET that HEAD answered "not found" for (statConfirmed): they are
	// in Damaged (their metadata cannot be read), and retention stops
	// on them.
	Contradicted []string
	// SegmentSizeAssumed is set when some backups record no WAL segment
	// size (PGHoard's) and no stored segment says it (none is stored, or
	// none reads back checked): they are read at DefaultSegmentSize.
	SegmentSizeAssumed bool
	// Unreadable holds the backups whose main object the storage refused
	// to read (storage.ErrPermanent: permission denied, access denied) or
	// holds in a state no writer leaves (storage.ErrObjectDamaged: a
	// local store's object file that is a FIFO, a socket or a
	// directory), Err the storage's error: nothing
	// is known of them, not even their metadata's worth. ScanBackups returns them with an
	// UnreadableError; Sound and Damaged hold the others.
	Unreadable []*DamagedBackup
}

// UnreadableError is the error of ScanBackups and ScanAllBackups when
// the storage refused to read some backups' main objects
// (Backups.Unreadable): a caller that acts on the site's backups
// (restore, retention, verify) stops on it as on any error of the
// listing; one that only shows them (hoard list) may show the others,
// which the Backups returned with it hold.
type UnreadableError struct {
	Backups []*DamagedBackup
}

func (e *UnreadableError) Error() string {
	msgs := make([]string, len(e.Backups))
	for i, d := range e.Backups {
		msgs[i] = fmt.Sprintf("stat backup %s: %v", d.Key, d.Err)
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the storage's errors, so that errors.Is finds
// storage.ErrPermanent.
func (e *UnreadableError) Unwrap() []error {
	errs := make([]error, len(e.Backups))
	for i, d := range e.Backups {
		errs[i] = d.Err
	}
	return errs
}

// ScanBackups lists the site's complete basebackups. Only objects directly
// under basebackup/ count (PGHoard's rule), so chunks of a backup that
// never finished are never listed: the main object is written last. A
// backup whose metadata cannot be read is listed in Damaged and does not
// stop the listing; an error reading the store does, at once, except the
// storage's refusal to read a backup's main object (storage.ErrPermanent,
// which is not retried: permission denied) or an object in a state no
// writer leaves (storage.ErrObjectDamaged), which lists it in Unreadable
// and ends the listing of the others with an UnreadableError. A storage
// failing past its retries is not asked about every other backup.
func (a *Archive) ScanBackups(ctx context.Context) (Backups, error) {
	var out Backups
	dir := a.Layout.Dir(BasebackupDir)
	var keys []storage.Object
	err := a.Store.List(ctx, dir, func(o storage.Object) error {
		rest := strings.TrimPrefix(o.Key, dir)
		if rest == "" || strings.Contains(rest, "/") {
			return nil
		}
		keys = append(keys, o)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("list backups of site %s: %w", a.Site, err)
	}
	// A backup's metadata is parsed once every main object is read: at the
	// segment size learned from the site's WAL where it records none
	// (learnSegmentSize). Damaged ones keep the listing's order.
	type scanned struct {
		st      storage.Object
		damaged *DamagedBackup
	}
	var scans []scanned
	var stats []storage.Object
	for _, o := range keys {
		st, contradicted, err := statConfirmed(ctx, a.Store, o.Key)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since the listing
		}
		if contradicted {
			// Stored, but its metadata cannot be read: damaged.
			out.Contradicted = append(out.Contradicted, o.Key)
			scans = append(scans, scanned{damaged: &DamagedBackup{Name: BackupName(o.Key), Key: o.Key, Err: contradiction(a.Site, o.Key)}})
			continue
		}
		if errors.Is(err, storage.ErrBadMetadata) {
			scans = append(scans, scanned{damaged: &DamagedBackup{Name: BackupName(o.Key), Key: o.Key, Err: err}})
			continue
		}
		if err != nil && (errors.Is(err, storage.ErrPermanent) || errors.Is(err, storage.ErrObjectDamaged)) && ctx.Err() == nil {
			out.Unreadable = append(out.Unreadable, &DamagedBackup{Name: BackupName(o.Key), Key: o.Key, Err: err})
			continue
		}
		if err != nil {
			return out, fmt.Errorf("stat backup %s: %w", o.Key, err)
		}
		st.Key = o.Key
		scans = append(scans, scanned{st: st})
		stats = append(stats, st)
	}
	learned, assumed, err := a.learnSegmentSize(ctx, stats)
	if err != nil {
		return out, err
	}
	out.SegmentSizeAssumed = assumed
	if assumed {
		a.noteAssumedSize()
	}
	for _, s := range scans {
		if s.damaged != nil {
			out.Damaged = append(out.Damaged, s.damaged)
			continue
		}
		b, err := parseBackupInfo(s.st.Key, s.st.Size, s.st.Metadata, learned)
		if err != nil {
			out.Damaged = append(out.Damaged, &DamagedBackup{Name: BackupName(s.st.Key), Key: s.st.Key, Err: err})
			continue
		}
		b.Auth = a.Codec.BackupAuth(b.Name, s.st.Metadata)
		if b.Auth == AuthInvalid {
			b.KeyMissing = a.Codec.missingKey(b)
		}
		out.Sound = append(out.Sound, b)
	}
	SortBackups(out.Sound)
	if len(out.Unreadable) > 0 {
		return out, &UnreadableError{Backups: out.Unreadable}
	}
	return out, nil
}

// ScanAllBackups is ScanBackups over a and every site it moved from
// (a.MovedFrom), as PGHoard's restore lists them. Each backup's Archive is
// the archive that holds it: read its control object and chunks from there
// (ArchiveOf). Backups some sites' storage refused to read end it with one
// UnreadableError naming them all, the others listed.
func (a *Archive) ScanAllBackups(ctx context.Context) (Backups, error) {
	var out Backups
	for _, s := range a.sites() {
		bs, err := s.ScanBackups(ctx)
		if ue := (*UnreadableError)(nil); err != nil && !errors.As(err, &ue) {
			return Backups{}, err
		}
		for _, b := range bs.Sound {
			b.Archive = s
		}
		for _, d := range bs.Damaged {
			d.Archive = s
		}
		for _, d := range bs.Unreadable {
			d.Archive = s
		}
		out.Unreadable = append(out.Unreadable, bs.Unreadable...)
		out.Sound = append(out.Sound, bs.Sound...)
		out.Damaged = append(out.Damaged, bs.Damaged...)
		out.Contradicted = append(out.Contradicted, bs.Contradicted...)
		out.SegmentSizeAssumed = out.SegmentSizeAssumed || bs.SegmentSizeAssumed
	}
	SortBackups(out.Sound)
	if len(out.Unreadable) > 0 {
		return out, &UnreadableError{Backups: out.Unreadable}
	}
	return out, nil
}

// FirstCopies returns bs, a listing of ScanAllBackups, with each backup
// name once: the copy of the first site that holds it, in the order a,
// a.MovedFrom, sound or damaged. After archive-copy from the old site, with
// moved_from naming it, both sites hold every backup under the same name:
// restore takes the site's own copy, whether chosen or named, and follows
// an incremental backup's parents (looked up by name) in the same order, so
// a damaged copy left in the old site neither stops it nor is taken. A
// damaged copy in the site itself is what restore meets (and refuses when
// named) even where the old site's is sound: which copy is restored never
// depends on the state of another. Unreadable backups are kept as they are.
func (a *Archive) FirstCopies(bs Backups) Backups {
	rank := a.SiteRank
	first := map[string]int{}
	hold := func(name string, s *Archive) {
		if r, ok := first[name]; !ok || rank(s) < r {
			first[name] = rank(s)
		}
	}
	for _, b := range bs.Sound {
		hold(b.Name, a.ArchiveOf(b))
	}
	for _, d := range bs.Damaged {
		hold(d.Name, cmp.Or(d.Archive, a))
	}
	out := bs
	out.Sound, out.Damaged = nil, nil
	for _, b := range bs.Sound {
		if rank(a.ArchiveOf(b)) == first[b.Name] {
			out.Sound = append(out.Sound, b)
		}
	}
	for _, d := range bs.Damaged {
		if rank(cmp.Or(d.Archive, a)) == first[d.Name] {
			out.Damaged = append(out.Damaged, d)
		}
	}
	return out
}

// SiteRank returns the place of s in the order a, a.MovedFrom, in which
// restore takes the copy of a backup several of them hold (FirstCopies):
// 0 for a itself (and nil, ArchiveOf's a), then 1, 2... for the sites it
// moved from, and 0 for an archive that is none of them.
func (a *Archive) SiteRank(s *Archive) int {
	for i, x := range a.sites() {
		if x == s {
			return i
		}
	}
	return 0
}

// ListBackups returns the site's sound basebackups, oldest first (see
// ScanBackups); damaged ones are left out.
func (a *Archive) ListBackups(ctx context.Context) ([]*BackupInfo, error) {
	bs, err := a.ScanBackups(ctx)
	return bs.Sound, err
}

// ListAllBackups returns the sound basebackups of a and of every site it
// moved from, oldest first (see ScanAllBackups); damaged ones are left out.
func (a *Archive) ListAllBackups(ctx context.Context) ([]*BackupInfo, error) {
	bs, err := a.ScanAllBackups(ctx)
	return bs.Sound, err
}

// ArchiveOf returns the archive holding b: b.Archive when ListAllBackups
// set it, else a.
func (a *Archive) ArchiveOf(b *BackupInfo) *Archive {
	if b.Archive != nil {
		return b.Archive
	}
	return a
}

// FindBackup returns the backup called name (with or without the control
// suffix, or as a full key), or the newest when name is "" or "latest".
func (a *Archive) FindBackup(ctx context.Context, name string) (*BackupInfo, error) {
	listed, err := a.ScanBackups(ctx)
	if err != nil {
		return nil, err
	}
	bs := listed.Sound
	for _, d := range listed.Damaged {
		if name != "" && name != "latest" && d.Name == BackupName(name) {
			return nil, fmt.Errorf("site %s: backup %s is damaged: %w", a.Site, d.Name, d.Err)
		}
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("site %s has no basebackups: %w", a.Site, ErrNoBackup)
	}
	if name == "" || name == "latest" {
		return bs[len(bs)-1], nil
	}
	want := BackupName(name)
	for _, b := range bs {
		if b.Name == want {
			return b, nil
		}
	}
	return nil, fmt.Errorf("site %s has no basebackup %q (see hoard list): %w", a.Site, name, ErrNoBackup)
}

// ErrNoBackup is returned (wrapped) when no basebackup fits a request.
var ErrNoBackup = errors.New("no applicable basebackup")
