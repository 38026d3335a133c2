package command

import (
	"context"
	"strconv"

	"github.com/hoardbackup/hoard/archive"
)

// checkOtherHistories fails when the site holds timeline history files
// bound to another database system than id, the node's, on timelines
// above tli, the node's current one (archive.OtherSystemHistories): the
// shape a pg_upgrade into the same site leaves when the old cluster had
// failed over (the new cluster has a new system identifier and starts at
// timeline 1), or another cluster's file copied here. wal-fetch refuses
// them, so a standby recovering to the latest timeline stops, restore may
// follow them to the old cluster's backups, and this cluster's own
// history file of such a timeline cannot be stored under its name. Only
// the history files' metadata is read, in a site with keys (without,
// none is bound to a system: no line). One line per system named
// (archive.OtherSystemHistoriesProblems).
func checkOtherHistories(ctx context.Context, r *checkReport, env *siteEnv, step, id string, tli uint32) {
	sys, err := strconv.ParseUint(id, 10, 64)
	if err != nil || !env.archive.HistoriesBound() {
		return // without keys no history file is bound to a system
	}
	others, err := env.archive.OtherSystemHistories(ctx, sys, tli)
	if err != nil {
		r.fail(step, "timeline history files: %v", err)
		return
	}
	for _, p := range archive.OtherSystemHistoriesProblems(others, sys, tli) {
		r.fail(step, "%s", p)
	}
	if len(others) == 0 {
		r.ok(step, "no timeline history file of another database system above timeline %d", tli)
	}
}
