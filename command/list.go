package command

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/verify"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list basebackups (also: hoard restore list-basebackups)",
		Description: `Lists the complete basebackups of the site and of its moved_from sites, oldest first:
name, the site whose storage holds it, stored size (every object of the backup: its
chunks, total-size-enc, and its control object, as hoard basebackup's summary says;
PGHoard's list shows total-size-enc alone), original size, start and end time, start and end LSN, and timeline.
Backups written by PGHoard record no LSNs: they are shown from the WAL segment names.
An incremental backup (PostgreSQL 17+) names its parent (Incremental of); after the table
a line per incremental backup gives its chain: the full backup it starts from and what the
chain stores in all, or which parent is missing.
Bad pages is the number of data pages whose checksums failed when the backup was
taken (hoard-checksum-failures: pages damaged in the cluster, restored as damaged; hoard
verify names them), 0 when hoard read every page and none failed (local-tar), "-" when
none is recorded (a BASE_BACKUP the server ended without checksum failures, PGHoard's
backups). In a site with keys, a count that does not authenticate (altered or planted,
or stored by a hoard that did not sign it) is marked "?", 0 included.
A backup whose metadata cannot be read is listed last as DAMAGED, with the reason:
restore never chooses it, and the others stay usable. One whose main object or metadata
the storage refuses to read (permission denied: check the owner and mode of the storage
directory, or the bucket's access policy), or, in local storage, whose main object is a
FIFO, a socket or a directory, is listed after
them as UNREADABLE, with the storage's error, and hoard list exits 1 once the others are
listed: hoard verify, restore and retention stop on it. hoard list reads each backup's metadata only: a control object
or chunk that does not decode is found by hoard verify.
In a site with keys hoard signs each backup's metadata: when some backups authenticate,
a line after the table names each of the others: altered, signed with a key the
configuration lacks (add it), older than the first authenticated one (PGHoard's or a
hoard's from before signing), or newer (planted, or its HMAC stripped): retention does not
count it, restore chooses it only by name. When the
site's hoard/signed-backups marker exists but no backup authenticates, each is named too.
When the authenticated backups are of more than one database system (another cluster's,
copied from a site sharing the key pair, or from before a pg_upgrade), a line per system
names its backups: retention and the daemon count only those of the node's system.
--json prints every field and the stored metadata, with metadata_auth (authenticated,
invalid or none; a damaged backup: name, key, site and "damaged", the reason; an
unreadable one: name, key, site and "unreadable", the storage's error); the metadata has
hoard-checksum-failures as recorded, whether it authenticates or not.
A backup that the site and a moved_from site both hold under the same name (after
hoard archive-copy, both kept) is listed once per site: the copies restore does not take (it takes the first site
holding the name, the site itself, then its moved_from sites in order; retention counts
that copy) have "(not used)" after their site, and in --json a not_used field saying
which site's copy is taken; chain lines follow the copies taken.

The table ends with where the stored WAL ends (a .partial copy included when it is the
end of the archive) and how long ago that WAL was stored: what a restore reaches now.
It is on the timelines the newest backup's recovery follows: for a site upgraded with
pg_upgrade whose old cluster had reached a later timeline than the upgraded one, the
upgraded cluster's WAL, not the old cluster's last segment on its later timeline. hoard
verify --json reports the same as wal_end. How many bytes the server wrote since is not in
the archive: the daemon reports it (hoard_wal_stored_lag_bytes, /status).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "also print each backup's metadata"},
		},
		Action: runList,
	}
}

// backupJSON is one backup in hoard list --json.
type backupJSON struct {
	Name             string     `json:"name"`
	Key              string     `json:"key"`
	Format           string     `json:"format"`
	StartWALSegment  string     `json:"start_wal_segment"`
	EndWALSegment    string     `json:"end_wal_segment"`
	StartTime        *time.Time `json:"start_time"`
	EndTime          *time.Time `json:"end_time"`
	StartLSN         string     `json:"start_lsn"`
	EndLSN           string     `json:"end_lsn"`
	StartTimeline    uint32     `json:"start_timeline"`
	EndTimeline      uint32     `json:"end_timeline"`
	SystemID         string     `json:"system_identifier"`
	WALSegmentSize   uint64     `json:"wal_segment_size"`
	PGVersion        int        `json:"pg_version"`
	TotalSizePlain   int64      `json:"total_size_plain"`
	TotalSizeEnc     int64      `json:"total_size_enc"`
	StoredSize       int64      `json:"stored_size"`
	ChunkCount       int        `json:"chunk_count"`
	Site             string     `json:"site"`
	Host             string     `json:"host"`
	ActiveBackupMode string     `json:"active_backup_mode"`
	BasebackupMode   string     `json:"basebackup_mode"`
	BackupReason     string     `json:"backup_reason"`
	DecisionTime     *time.Time `json:"backup_decision_time"`
	NormalizedTime   *time.Time `json:"normalized_backup_time"`
	// Parent names the backup an incremental one was taken against.
	Parent string `json:"parent,omitempty"`
	// MetadataAuth is archive.BackupAuth: "authenticated", "invalid" or
	// "none".
	MetadataAuth string            `json:"metadata_auth,omitempty"`
	Metadata     map[string]string `json:"metadata"`
	// Damaged says why the backup's metadata cannot be read; only the name,
	// key and site are set then.
	Damaged string `json:"damaged,omitempty"`
	// Unreadable is the storage's error for a backup whose main object it
	// refused to read; only the name, key and site are set then.
	Unreadable string `json:"unreadable,omitempty"`
	// NotUsed is set on a copy that restore does not take: the same name
	// is held by an earlier site (the site, then its moved_from sites in
	// order), whose copy it takes and retention counts (copiesNotUsed).
	NotUsed string `json:"not_used,omitempty"`
}

// copiesNotUsed maps each copy of bs (a *archive.BackupInfo or a
// *archive.DamagedBackup) that restore does not take (nor retention
// count, nor verify follow as a parent) to why: after archive-copy from the old site, with moved_from naming it,
// both sites hold every backup under the same name, and they take the
// copy of the first site holding it (archive.Archive.FirstCopies). A
// listing without such copies gets an empty map. Unreadable backups are
// not in it: they stop restore whichever site holds them.
func copiesNotUsed(a *archive.Archive, bs archive.Backups) map[any]string {
	first := a.FirstCopies(bs)
	used := map[any]bool{}
	taken := map[string]string{}
	for _, b := range first.Sound {
		used[b], taken[b.Name] = true, a.ArchiveOf(b).Site
	}
	for _, d := range first.Damaged {
		used[d], taken[d.Name] = true, cmp.Or(d.Archive, a).Site
	}
	out := map[any]string{}
	why := func(name, site string) string {
		return fmt.Sprintf("copy of %s in site %s, not used: restore takes the copy in site %s, the one retention counts", name, site, taken[name])
	}
	for _, b := range bs.Sound {
		if !used[b] {
			out[b] = why(b.Name, a.ArchiveOf(b).Site)
		}
	}
	for _, d := range bs.Damaged {
		if !used[d] {
			out[d] = why(d.Name, cmp.Or(d.Archive, a).Site)
		}
	}
	return out
}

func runList(c *cli.Context) error {
	if err := noArgs(c, "hoard list [--json] [-v]"); err != nil {
		return err
	}
	env, closeAll, err := openSiteAll(c)
	if err != nil {
		return err
	}
	defer closeAll()
	bs, err := env.archive.ScanAllBackups(c.Context)
	// Backups the storage refused to read are listed with the others,
	// then the command fails with the storage's error (scanErr).
	var unreadable *archive.UnreadableError
	if err != nil && !errors.As(err, &unreadable) {
		return err
	}
	scanErr := err
	if scanErr != nil {
		scanErr = fmt.Errorf("list: %s could not be read (listed as UNREADABLE): %w",
			plural(len(bs.Unreadable), "backup", "backups"), err)
	}
	if hint := missingRoot(env.site); hint != "" {
		env.log.Warn().Msg(hint)
	}
	for _, d := range bs.Damaged {
		env.log.Warn().Err(d.Err).Str("backup", d.Name).Str("key", d.Key).Msg("damaged backup: its metadata cannot be read")
	}
	notUsed := copiesNotUsed(env.archive, bs)
	if c.Bool("json") {
		if err := writeBackupsJSON(c.App.Writer, bs, notUsed); err != nil {
			return err
		}
		return scanErr
	}
	signs, err := env.archive.SignsBackups(c.Context)
	if err != nil {
		return err
	}
	if err := writeBackupsTable(c.App.Writer, bs, notUsed, env.archive.Codec, signs, c.Bool("verbose")); err != nil {
		return err
	}
	end, err := restore.WALEnd(c.Context, env.archive, bs.Sound, archive.NewestSegmentSize(bs.Sound))
	if err != nil {
		return err
	}
	printf(c.App.Writer, "\n")
	printWALEnd(c.App.Writer, verify.NewWALEnd(end, time.Now()))
	return scanErr
}

// writeBackupsJSON prints bs as hoard list --json, with notUsed
// (copiesNotUsed) on the copies restore does not take.
func writeBackupsJSON(w io.Writer, bs archive.Backups, notUsed map[any]string) error {
	out := make([]backupJSON, 0, len(bs.Sound)+len(bs.Damaged))
	for _, b := range bs.Sound {
		j := newBackupJSON(b)
		j.NotUsed = notUsed[b]
		out = append(out, j)
	}
	for _, d := range bs.Damaged {
		out = append(out, backupJSON{Name: d.Name, Key: d.Key, Site: damagedSite(d), Damaged: d.Err.Error(), NotUsed: notUsed[d]})
	}
	for _, d := range bs.Unreadable {
		out = append(out, backupJSON{Name: d.Name, Key: d.Key, Site: damagedSite(d), Unreadable: d.Err.Error()})
	}
	return writeJSON(w, out)
}

// damagedSite names the site whose storage holds d, "-" when unknown.
func damagedSite(d *archive.DamagedBackup) string {
	if d.Archive != nil {
		return d.Archive.Site
	}
	return "-"
}

// newBackupJSON is the JSON view of a backup, shared by list and basebackup.
// Its site is the one the metadata names, else the site holding it.
func newBackupJSON(b *archive.BackupInfo) backupJSON {
	site := b.Site
	if site == "" && b.Archive != nil {
		site = b.Archive.Site
	}
	return backupJSON{
		Name: b.Name, Key: b.Key, Format: b.Format,
		StartWALSegment: b.StartWALSegment, EndWALSegment: b.EndWALSegment,
		StartTime: timePtr(b.StartTime), EndTime: timePtr(b.EndTime),
		StartLSN: lsnString(uint64(b.StartLSN)), EndLSN: lsnString(uint64(b.EndLSN)),
		StartTimeline: b.StartTimeline, EndTimeline: b.EndTimeline,
		SystemID: b.SystemID, WALSegmentSize: b.SegmentSize(), PGVersion: b.PGVersion,
		TotalSizePlain: b.TotalSizePlain, TotalSizeEnc: b.TotalSizeEnc, StoredSize: b.StoredSize,
		ChunkCount: b.ChunkCount, Site: site, Host: b.Host,
		ActiveBackupMode: b.ActiveBackupMode, BasebackupMode: b.BasebackupMode, BackupReason: b.BackupReason,
		DecisionTime: timePtr(b.DecisionTime), NormalizedTime: timePtr(b.NormalizedTime),
		Parent: b.Parent, Metadata: b.Metadata, MetadataAuth: cmp.Or(string(b.Auth), "none"),
	}
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeBackupsTable prints the backups of all, the copies restore does not
// take (notUsed, copiesNotUsed) marked "(not used)" after their site, then
// a line per incremental backup's chain (as restore follows it: through
// the copies it takes), per backup whose metadata does not authenticate
// (signs: the site's signed-backups marker exists) and per database system
// when there are more than one.
func writeBackupsTable(w io.Writer, all archive.Backups, notUsed map[any]string, codec *archive.Codec, signs, verbose bool) error {
	bs := all.Sound
	site := func(b any, s string) string {
		if _, ok := notUsed[b]; ok {
			return s + " (not used)"
		}
		return s
	}
	var used []*archive.BackupInfo
	for _, b := range bs {
		if _, ok := notUsed[b]; !ok {
			used = append(used, b)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	printf(tw, "Basebackup\tSite\tBackup size\tOrig size\tStart time\tEnd time\tStart LSN\tEnd LSN\tTLI\tIncremental of\tBad pages\n")
	printf(tw, "----------\t----\t-----------\t---------\t----------\t--------\t---------\t-------\t---\t--------------\t---------\n")
	var damaged, unverified bool
	for _, b := range bs {
		size := storedBytes(b)
		tli := strconv.FormatUint(uint64(b.StartTimeline), 10)
		if b.EndTimeline != 0 && b.EndTimeline != b.StartTimeline {
			tli += "-" + strconv.FormatUint(uint64(b.EndTimeline), 10)
		}
		parent := b.Parent
		if parent == "" {
			parent = "-"
		}
		// A recorded 0 (every page read passed) is not "-" (none
		// recorded), and an unauthenticated 0 is marked as any count:
		// a writer of the bucket may have set a count of damaged pages
		// to 0.
		bad := "-"
		if n, recorded, trusted := codec.ChecksumFailures(b); recorded {
			bad = strconv.FormatInt(n, 10)
			damaged = damaged || n > 0
			if !trusted {
				bad, unverified = bad+"?", true
			}
		}
		printf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, site(b, holdingSite(b)), humanBytes(size), humanBytes(b.TotalSizePlain),
			tableTime(b.StartTime), tableTime(b.EndTime), lsnOrDash(uint64(b.StartLSN)), lsnOrDash(uint64(b.EndLSN)), tli, parent, bad)
		if verbose {
			for _, k := range sortedKeys(b.Metadata) {
				printf(tw, "    metadata: %s=%s\n", k, b.Metadata[k])
			}
		}
	}
	for _, d := range all.Damaged {
		printf(tw, "%s\t%s\tDAMAGED: %s\n", d.Name, site(d, damagedSite(d)), oneLine(d.Err.Error()))
	}
	for _, d := range all.Unreadable {
		printf(tw, "%s\t%s\tUNREADABLE: %s\n", d.Name, damagedSite(d), oneLine(d.Err.Error()))
	}
	if len(bs) == 0 && len(all.Damaged) == 0 && len(all.Unreadable) == 0 {
		printf(tw, "(no basebackups)\n")
	}
	for _, b := range used {
		if b.Parent != "" {
			printf(tw, "%s\n", chainLine(used, b))
		}
	}
	if len(notUsed) > 0 {
		printf(tw, "(not used): a copy of a backup that an earlier site also holds under the same name (the site, then its "+
			"moved_from sites in order, as after hoard archive-copy): restore takes that site's copy, retention counts "+
			"it and keeps this one, and restore and verify follow incremental chains through it (hoard list --json: not_used)\n")
	}
	if damaged {
		printf(tw, "Bad pages: data pages whose checksums failed when the backup was taken: damaged in the cluster, "+
			"and restored as damaged; hoard verify names them (docs/backup-restore.md, Damaged data pages)\n")
	}
	if unverified {
		printf(tw, "a count marked ? is not authenticated (altered or planted, or stored by a hoard that did not sign it): "+
			"hoard verify reads the record from the backup's control object\n")
	}
	for _, b := range archive.Untrusted(bs) {
		if b.Auth == archive.AuthInvalid {
			why, _ := codec.InvalidWhy(b)
			printf(tw, "%s: %s: retention does not count it, restore chooses it only by name\n", b.Name, why)
		}
	}
	for _, u := range archive.UnsignedBackups(bs, signs) {
		printf(tw, "%s: %s\n", u.Backup.Name, u.Why)
	}
	if ids := archive.Systems(bs); len(ids) > 1 {
		for _, id := range ids {
			var names []string
			for _, b := range bs {
				if b.Auth == archive.AuthOK && b.SystemID == id {
					names = append(names, b.Name)
				}
			}
			printf(tw, "database system %s: %s\n", id, strings.Join(names, ", "))
		}
		printf(tw, "the authenticated backups are of %d database systems (another cluster's copied from a site sharing the key pair, "+
			"or from before a pg_upgrade): retention and the daemon count only those of the node's system\n", len(ids))
	}
	return tw.Flush()
}

// chainLine describes an incremental backup's chain: its parent, the full
// backup it starts from, and what the chain stores in all; or which parent
// is missing.
func chainLine(bs []*archive.BackupInfo, b *archive.BackupInfo) string {
	chain, err := archive.Chain(bs, b)
	if err != nil {
		return fmt.Sprintf("chain of %s: BROKEN: %s", b.Name, oneLine(err.Error()))
	}
	var stored int64
	for _, c := range chain {
		stored += storedBytes(c)
	}
	return fmt.Sprintf("chain of %s: %s from full backup %s, %s stored in all", b.Name, plural(len(chain), "backup", "backups"), chain[0].Name, humanBytes(stored))
}

// holdingSite names the site whose storage holds b (set by
// Archive.ListAllBackups), else the site its metadata names, else "-".
func holdingSite(b *archive.BackupInfo) string {
	switch {
	case b.Archive != nil:
		return b.Archive.Site
	case b.Site != "":
		return b.Site
	}
	return "-"
}

// oneLine keeps a message on one table row: tabs and line breaks become
// spaces.
func oneLine(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func tableTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

func lsnString(l uint64) string {
	if l == 0 {
		return ""
	}
	return fmt.Sprintf("%X/%X", l>>32, uint32(l))
}

func lsnOrDash(l uint64) string {
	if l == 0 {
		return "-"
	}
	return lsnString(l)
}

// storedBytes is what every object of backup b takes in its storage: its
// chunks (total-size-enc, 0 for a backup in one object) and its control
// object, as hoard basebackup's summary counts it, so that list,
// retention and the summary say one size, the one to compare with the
// bucket's. PGHoard's list shows total-size-enc alone, else the control
// object's size.
func storedBytes(b *archive.BackupInfo) int64 { return b.TotalSizeEnc + b.StoredSize }

// humanBytes formats n with binary units: 1.5 GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
