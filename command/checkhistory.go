package command

import (
	"context"
	"strconv"
	"strings"

	"github.com/hoardbackup/hoard/archive"
)

// checkOtherHistories fails when the site holds timeline history files
// bound to another database system than id, the node's, on timelines
// above tli, the node's current one (archive.OtherSystemHistories): the
// shape a pg_upgrade into the same site leaves when the old cluster had
// failed over (the new cluster has a new system identifier and starts at
// timeline 1), or another cluster's file copied here. wal-fetch refuses
// them once the site holds this cluster's WAL on their timelines or later
// (archive.IgnoreOtherHistory), and this cluster's own history file of
// such a timeline cannot be stored under its name. Only
// the history files' metadata is read. In a site without keys no file is
// bound: the system a file's metadata claims stands in (the honest case),
// and where a file above tli claims none (PGHoard's, an older hoard's)
// nothing can be told, and no line says all is well. One line per system
// named (archive.OtherSystemHistoriesProblems).
func checkOtherHistories(ctx context.Context, r *checkReport, env *siteEnv, step, id string, tli uint32) {
	sys, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return
	}
	h, err := env.archive.HistorySystemsAbove(ctx, sys, tli)
	if err != nil {
		r.fail(step, "timeline history files: %v", err)
		return
	}
	for _, p := range archive.OtherSystemHistoriesProblems(h.Others, sys, tli) {
		r.fail(step, "%s", p)
	}
	switch {
	case len(h.Unknown) > 0:
		r.info(step, "timeline history files above timeline %d claim no database system (PGHoard's or an older hoard's, "+
			"in a site without keys) on %s: whether they are another system's cannot be told", tli, timelineList(h.Unknown))
	case len(h.Others) == 0:
		r.ok(step, "no timeline history file of another database system above timeline %d", tli)
	}
	if len(h.Own) > 0 {
		warnOwnHistoriesAbove(r, step, h.Own, tli)
	}
}

// warnOwnHistoriesAbove warns that the site holds history files of the
// node's own system on timelines above tli, the one the node runs on.
// PostgreSQL gives a promoted cluster the timeline after the newest one
// it finds in the archive (findNewestTimeLine in timeline.c), so such a
// timeline forked from this node's history and was archived here by
// another cluster of the same system: most often a restored copy started
// with the original's archive_command, or a former primary still running
// after a failover. A restore of the site to its end (target timeline
// latest, the default) follows the newest timeline, so it would restore
// that cluster's WAL, not this node's, and say nothing.
func warnOwnHistoriesAbove(r *checkReport, step string, own []uint32, tli uint32) {
	newest, files := own[len(own)-1], "history files"
	if len(own) == 1 {
		files = "history file"
	}
	r.warn(step, "the site holds this cluster's %s of %s, above timeline %d, the one this node runs on: "+
		"another cluster of this system archived there, most often a restored copy started without hoard restore --archive-mode off, "+
		"or a former primary still running after a failover; a restore of the site to its end follows timeline %d, not this node's WAL. "+
		"Stop whatever archives timeline %d into this site (archive_mode = off on a copy), and restore this node's WAL with "+
		"--target-timeline %d", files, timelineList(own), tli, newest, newest, tli)
}

// timelineList is tlis as "timeline 2" or "timelines 2, 3".
func timelineList(tlis []uint32) string {
	s := make([]string, len(tlis))
	for i, t := range tlis {
		s[i] = strconv.FormatUint(uint64(t), 10)
	}
	if len(s) == 1 {
		return "timeline " + s[0]
	}
	return "timelines " + strings.Join(s, ", ")
}
