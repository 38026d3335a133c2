package command

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/wal"
)

func retentionCommand() *cli.Command {
	return &cli.Command{
		Name:  "retention",
		Usage: "delete basebackups and WAL that the retention policy no longer needs",
		Description: `Applies the site's retention policy, as the daemon does after each backup:
basebackup_count (keep at most N), basebackup_age_days_max with basebackup_count_min
(delete backups older than N days, counted from start + basebackup_interval_hours, while
more than the minimum remain; as in PGHoard, only when basebackup_count_min is above 0),
and preservation requests (a preserved backup and every newer one are kept). The newest
backup is never deleted. Backups of the sites listed in moved_from count too, but those
sites are read-only: nothing is ever deleted there. A backup held under the same name by
the site and a moved_from site (archive-copy from the old site, both kept) counts once,
as the copy restore takes (the site's own); the other copies are kept, not counted.

Retention asks the site's node for its cluster's system identifier. Backups whose
authenticated metadata names another system (another cluster's, copied into this site
from one sharing the key pair, or this cluster's from before a pg_upgrade) do not count:
they are deleted only when this system's backups alone make them surplus, and while none
of this system's is kept no WAL is deleted. When no node answers, a note says so and
backups of every system count.

Before deleting any backup, retention makes sure one it keeps is known good: every kept
backup's control object must decode and be the backup's own (as restore checks it), its
chunks exist with their sizes, and the newest that passes is decoded in full (an
incremental backup with its chain of parents). When none passes, older backups are kept
instead, up to the newest that decodes in full; the output names the damaged backups
(DAMAGED) and the daemon raises the backup_damaged alert. A check the storage fails
(unreachable, refusing or timing out past its retries, a download cut) finds no damage:
retention fails (exit 1) with the storage's error and deletes nothing. With the public key only (a
daemon that cannot decrypt), retention still works: a backup is checked without
decrypting, its chunk count and sizes against its metadata, and the plan says so.

WAL files (segments, .partial and .backup files) before the lowest start segment of the
kept backups are deleted, on every timeline, and none while the site holds a backup whose
metadata cannot be read (DAMAGED in hoard list); so is a .partial whose complete segment
is stored and checks (decodes, first page fits its name); .history files are never
deleted. Chunk folders left by interrupted backups or deletions are removed once nothing
was written in them for a day and a backup that started after their last write has
completed.

Retention plans from the storage's listings, so it looks for backups a listing left
out before it deletes anything: the main object of every chunk folder of no listed
backup is asked for by key, whatever the folder's age, and basebackup/ is listed a
second time once the plan is made. A backup found either way is most often one that
completed while retention planned: the plan is made again from new listings, and a note
says so. When three plans in a row each find one, or an object that HEAD answers "not
found" for while GET reads it, retention fails (exit 1), naming it, and deletes nothing:
run it again, and fix the storage if it keeps failing. A backup still in progress (chunks
stored, no control object yet) is neither counted nor deleted, nor are its chunks; when it
may have started before the newest completed backup (another host's), the WAL from the
start of a backup older than it is kept too. The parent of an incremental backup in
progress, which records it under basebackup_chunk/hoard-incremental/ before it starts, is
kept with its chain and the WAL from its start; the markers are read again before each
backup is deleted, and deleted once a day old and older than the newest backup.

Each backup is deleted main object first, then its chunks, and an incremental backup
before its parent, so an interrupted run never leaves a listed backup with missing chunks
or a missing parent; running again finishes the job. In local storage, a FIFO, a socket
or a directory under a chunk's or a delta object's name (no writer leaves one) is not
deleted: retention deletes the rest of the plan, then fails (exit 1) naming it; remove it
and its .metadata sidecar by hand, and the next run deletes what is left of its folder.
The plan's notes name those beforehand (in the chunk folders of the backups it deletes,
of orphaned folders and delta objects), from the listing it makes of the chunk directories.
--dry-run prints what would be deleted and why, and deletes nothing. An inactive site
(active: false) is never changed.

A site that another active site of the configuration shares its keys with (the same storage
and prefix, however spelled; an inactive one is a read-only view of the same archive), or one
of whose folders (xlog/, basebackup_chunk/, ...) holds
another site's keys (site t with prefix s/basebackup_chunk/t beside site s), is refused
(exit 2), naming both: its retention would delete the other site's objects as its own. A
site below another outside its folders (s and s/t) is fine. Two names of one server (a host
name and its address, localhost and 127.0.0.1) are one; where a host name does not resolve
and the two storages differ in nothing else, the site is refused too, saying so.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print the plan, delete nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan (and what was deleted) as JSON"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "list every WAL file to delete"},
		},
		Action: runRetention,
	}
}

func runRetention(c *cli.Context) error {
	if err := noArgs(c, "hoard retention [--dry-run] [--json]"); err != nil {
		return err
	}
	env, err := openSite(c)
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	if err := nestedSite(c.Context, env.cfg, env.name); err != nil {
		return err
	}
	dry := c.Bool("dry-run")
	if !env.site.Active && !dry {
		return usagef("use --dry-run to see what retention would delete; set active to true to allow deletions",
			"site %s is inactive (backup_sites.%s.active is false): retention never deletes from an inactive site", env.name, env.name)
	}
	closeOlder, err := openMovedFrom(c, env)
	if err != nil {
		return err
	}
	defer closeOlder()

	p := retentionPolicy(env.site)
	p.SystemID, err = nodeSystemID(c.Context, env.site)
	plan, perr := env.archive.PlanRetention(c.Context, p, time.Now())
	if perr != nil {
		return perr
	}
	if err != nil {
		plan.Notes = append(plan.Notes, fmt.Sprintf("the cluster's system identifier is not known (%v): "+
			"backups of every database system count, as if all were this cluster's", err))
	}
	var res *archive.RetentionResult
	var applyErr error
	if !dry {
		r, err := env.archive.ApplyRetention(c.Context, plan, env.log)
		res, applyErr = &r, err
	}
	if c.Bool("json") {
		if err := writeRetentionJSON(c.App.Writer, env.name, plan, res); err != nil {
			return err
		}
	} else {
		writeRetentionText(c.App.Writer, plan, res, c.Bool("verbose"))
	}
	return applyErr
}

// retentionPolicy turns a site's configuration into a retention policy.
// Preservation requests are read from storage by PlanRetention.
func retentionPolicy(s *config.Site) archive.RetentionPolicy {
	var p archive.RetentionPolicy
	if n, ok := s.BasebackupCountMax(); ok {
		p.MaxCount = n
	}
	p.MinCount = s.BasebackupCountMin
	if d, ok := s.BasebackupMaxAge(); ok {
		p.MaxAge = d
	}
	if d, ok := s.BasebackupInterval(); ok {
		p.Interval = d
	}
	return p
}

// walRange is a run of consecutive WAL files of one timeline in one site.
type walRange struct {
	Site  string `json:"site"`
	First string `json:"first"`
	Last  string `json:"last"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
	// SupersededBy names the complete segment that supersedes the range's
	// one file, a .partial at or after the horizon; empty for a range of
	// files that precede it.
	SupersededBy string `json:"superseded_by,omitempty"`
	no           uint64
}

// walRanges groups the plan's WAL deletions into runs of consecutive
// segments of one timeline in one site.
func walRanges(plan archive.RetentionPlan) []walRange {
	segSize := uint64(16 << 20)
	if n := len(plan.Keep); n > 0 {
		segSize = plan.Keep[n-1].Backup.SegmentSize()
	}
	ws := slices.Clone(plan.WAL)
	slices.SortStableFunc(ws, func(a, b archive.WALDeletion) int {
		return cmp.Or(strings.Compare(a.Site, b.Site), strings.Compare(a.Name, b.Name))
	})
	var out []walRange
	for _, w := range ws {
		seg, err := wal.ParseSegmentName(w.Name[:min(24, len(w.Name))], segSize)
		sup := supersededBy(plan, w)
		if len(out) > 0 && sup == "" {
			r := &out[len(out)-1]
			if err == nil && r.SupersededBy == "" && r.Site == w.Site && r.First[:8] == w.Name[:8] && seg.No <= r.no+1 {
				r.Last, r.no = w.Name, seg.No
				r.Files++
				r.Bytes += w.Size
				continue
			}
		}
		out = append(out, walRange{Site: w.Site, First: w.Name, Last: w.Name, Files: 1, Bytes: w.Size, SupersededBy: sup, no: seg.No})
	}
	return out
}

// supersededBy returns the complete segment that supersedes d, a .partial
// the plan deletes though it does not precede the horizon (one that lies
// in a kept backup's start segment, or after it: archive.PlanRetention
// deletes it only because that segment is stored and checks); "" for a
// file the plan deletes because it precedes the horizon. With no horizon
// (a backup that may be running keeps every other file), every .partial
// the plan deletes is superseded.
func supersededBy(plan archive.RetentionPlan, d archive.WALDeletion) string {
	if !wal.IsPartialName(d.Name) {
		return ""
	}
	if h := plan.WALHorizon; h != "" && d.Name[8:24] < h[8:] {
		return ""
	}
	return d.Name[:24]
}

func writeRetentionText(w io.Writer, plan archive.RetentionPlan, res *archive.RetentionResult, verbose bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	printf(tw, "Basebackup\tSite\tStart time\tStart segment\tBackup size\tAction\tReason\n")
	printf(tw, "----------\t----\t----------\t-------------\t-----------\t------\t------\n")
	row := func(d archive.BackupDecision, action string) {
		b := d.Backup
		size := storedBytes(b)
		printf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, d.Site, tableTime(b.StartTime), orDash(b.StartWALSegment),
			humanBytes(size), action, d.Reason)
	}
	action := "delete"
	if res == nil {
		action = "would delete"
	}
	for _, d := range plan.Delete {
		row(d, action)
	}
	for _, d := range plan.Keep {
		row(d, "keep")
	}
	if len(plan.Keep)+len(plan.Delete) == 0 {
		printf(tw, "(no basebackups)\n")
	}
	_ = tw.Flush()

	var bytes int64
	for _, d := range plan.WAL {
		bytes += d.Size
	}
	printf(w, "\nWAL: %s %s (%s), keep %d", action, plural(len(plan.WAL), "file", "files"), humanBytes(bytes), plan.KeptWAL)
	if plan.WALHorizon != "" {
		printf(w, " (deleting what precedes %s, the lowest start segment of the kept backups, of backup %s, on any timeline)",
			plan.WALHorizon, plan.WALHorizonBackup)
	}
	printf(w, "\n")
	for _, r := range walRanges(plan) {
		if r.SupersededBy != "" {
			printf(w, "  %s %s: %s, %s: superseded by the complete segment %s, which is stored\n",
				r.Site, r.First, plural(r.Files, "file", "files"), humanBytes(r.Bytes), r.SupersededBy)
			continue
		}
		printf(w, "  %s %s .. %s: %s, %s\n", r.Site, r.First, r.Last, plural(r.Files, "file", "files"), humanBytes(r.Bytes))
	}
	if verbose {
		for _, d := range plan.WAL {
			printf(w, "  %s %s\n", action, d.Key)
		}
	}
	for _, o := range plan.Orphans {
		printf(w, "\nOrphaned chunk folder %s (site %s, %s, %s): %s: %s\n",
			o.Folder, o.Site, plural(len(o.Keys), "object", "objects"), humanBytes(o.Size), action, o.Reason)
	}
	if len(plan.Delta) > 0 {
		var n int64
		for _, d := range plan.Delta {
			n += d.Size
		}
		printf(w, "\nDelta objects no kept backup refers to: %d, %s: %s\n", len(plan.Delta), humanBytes(n), action)
		if verbose {
			for _, d := range plan.Delta {
				printf(w, "  %s %s: %s\n", action, d.Key, d.Reason)
			}
		}
	}
	for _, d := range plan.Damaged {
		printf(w, "\nDAMAGED: %s\n", d)
	}
	for _, n := range plan.Notes {
		printf(w, "\nnote: %s\n", n)
	}
	switch {
	case plan.Empty():
		printf(w, "\nNothing to delete.\n")
	case res != nil:
		printf(w, "\nDeleted %s (%s), %s, %s and %s: %s.\n",
			plural(res.Backups, "basebackup", "basebackups"), plural(res.Chunks, "chunk", "chunks"),
			plural(res.WAL, "WAL file", "WAL files"), plural(res.Orphans, "orphaned chunk", "orphaned chunks"),
			plural(res.Delta, "delta object", "delta objects"), humanBytes(res.Bytes))
	default:
		printf(w, "\nDry run: nothing was deleted.\n")
	}
}

// retentionBackupJSON is one backup in hoard retention --json.
type retentionBackupJSON struct {
	Name            string     `json:"name"`
	Site            string     `json:"site"`
	Key             string     `json:"key"`
	StartTime       *time.Time `json:"start_time"`
	StartWALSegment string     `json:"start_wal_segment"`
	TotalSizeEnc    int64      `json:"total_size_enc"`
	Reason          string     `json:"reason"`
}

// retentionJSON is the output of hoard retention --json.
type retentionJSON struct {
	Site    string                `json:"site"`
	DryRun  bool                  `json:"dry_run"`
	Now     time.Time             `json:"now"`
	Keep    []retentionBackupJSON `json:"keep"`
	Delete  []retentionBackupJSON `json:"delete"`
	WAL     retentionWALJSON      `json:"wal"`
	Orphans []retentionOrphanJSON `json:"orphaned_chunk_folders"`
	Delta   []retentionDeltaJSON  `json:"delta_objects"`
	Notes   []string              `json:"notes"`
	Damaged []string              `json:"damaged"`
	// Deleted is what was deleted (null for a dry run). After an error it
	// counts what was deleted before it.
	Deleted *retentionResultJSON `json:"deleted"`
}

type retentionResultJSON struct {
	Backups int   `json:"backups"`
	Chunks  int   `json:"chunks"`
	WAL     int   `json:"wal"`
	Orphans int   `json:"orphaned_chunks"`
	Delta   int   `json:"delta_objects"`
	Bytes   int64 `json:"bytes"`
}

// retentionDeltaJSON is one delta object (basebackup_delta/<hash>) to delete.
type retentionDeltaJSON struct {
	Site   string `json:"site"`
	Key    string `json:"key"`
	Bytes  int64  `json:"bytes"`
	Reason string `json:"reason"`
}

type retentionWALJSON struct {
	Before       string     `json:"before"`        // lowest start segment of the kept backups
	BeforeBackup string     `json:"before_backup"` // the backup that starts there
	Delete       int        `json:"delete"`
	Bytes        int64      `json:"bytes"`
	Keep         int        `json:"keep"`
	Ranges       []walRange `json:"ranges"`
}

type retentionOrphanJSON struct {
	Site    string `json:"site"`
	Folder  string `json:"folder"`
	Objects int    `json:"objects"`
	Bytes   int64  `json:"bytes"`
	Reason  string `json:"reason"`
}

func writeRetentionJSON(w io.Writer, site string, plan archive.RetentionPlan, res *archive.RetentionResult) error {
	backups := func(ds []archive.BackupDecision) []retentionBackupJSON {
		out := []retentionBackupJSON{}
		for _, d := range ds {
			out = append(out, retentionBackupJSON{
				Name: d.Backup.Name, Site: d.Site, Key: d.Backup.Key, StartTime: timePtr(d.Backup.StartTime),
				StartWALSegment: d.Backup.StartWALSegment, TotalSizeEnc: d.Backup.TotalSizeEnc, Reason: d.Reason,
			})
		}
		return out
	}
	out := retentionJSON{
		Site: site, DryRun: res == nil, Now: plan.Now.UTC(),
		Keep: backups(plan.Keep), Delete: backups(plan.Delete),
		WAL:     retentionWALJSON{Before: plan.WALHorizon, BeforeBackup: plan.WALHorizonBackup, Delete: len(plan.WAL), Keep: plan.KeptWAL, Ranges: walRanges(plan)},
		Orphans: []retentionOrphanJSON{}, Delta: []retentionDeltaJSON{}, Notes: append([]string{}, plan.Notes...),
		Damaged: append([]string{}, plan.Damaged...),
	}
	if res != nil {
		out.Deleted = &retentionResultJSON{Backups: res.Backups, Chunks: res.Chunks, WAL: res.WAL, Orphans: res.Orphans, Delta: res.Delta, Bytes: res.Bytes}
	}
	if out.WAL.Ranges == nil {
		out.WAL.Ranges = []walRange{}
	}
	for _, d := range plan.WAL {
		out.WAL.Bytes += d.Size
	}
	for _, o := range plan.Orphans {
		out.Orphans = append(out.Orphans, retentionOrphanJSON{Site: o.Site, Folder: o.Folder, Objects: len(o.Keys), Bytes: o.Size, Reason: o.Reason})
	}
	for _, d := range plan.Delta {
		out.Delta = append(out.Delta, retentionDeltaJSON{Site: d.Site, Key: d.Key, Bytes: d.Size, Reason: d.Reason})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
