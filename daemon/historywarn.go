package daemon

import (
	"context"
	"strconv"

	"github.com/hoardbackup/hoard/archive"
)

// warnOtherHistories logs at error level what hoard check reports as
// failed: history files in the site bound to another database system
// than the node's, on timelines above the node's
// (archive.OtherSystemHistories), the shape a pg_upgrade into the same
// site leaves. The daemon cannot fix it, but a standby of this cluster
// whose restore_command is hoard wal-fetch stops on them, and the
// upgraded cluster's own history file of such a timeline cannot be
// archived: the operator must read why before. It returns the node's
// system identifier it looked for, "" when it did not know the node's
// system and timeline: the backup loop calls it, once the node answered
// (supervisor.systemID), until it knew them, and again when the node's
// system identifier changes (a pg_upgrade under a running daemon: within
// systemIDRefresh in archive_command mode).
func (s *supervisor) warnOtherHistories(ctx context.Context, arch *archive.Archive) string {
	sys, tli, ok := s.nodeTimeline(ctx)
	if !ok {
		return ""
	}
	others, err := arch.OtherSystemHistories(ctx, sys, tli)
	if err != nil {
		s.log.Warn().Err(err).Msg("look for timeline history files of another database system")
	}
	for _, p := range archive.OtherSystemHistoriesProblems(others, sys, tli) {
		s.log.Error().Msg(p)
	}
	return strconv.FormatUint(sys, 10)
}

// nodeTimeline returns the node's system identifier and timeline: those
// IDENTIFY_SYSTEM gave the WAL receiver while the site streams, else (in
// archive_command mode, or before the receiver connected) those of
// pg_control, asked over an ordinary connection (replication.QueryServer,
// whose checkpoint timeline lags a promotion until the checkpoint that
// follows it). ok is false when neither is known.
func (s *supervisor) nodeTimeline(ctx context.Context) (sys uint64, tli uint32, ok bool) {
	if recv := s.liveReceiver(); recv != nil {
		st := recv.Status()
		sys, err := strconv.ParseUint(st.SystemID, 10, 64)
		if err == nil && st.Timeline > 0 {
			return sys, uint32(st.Timeline), true
		}
	}
	srv, err := s.queryNode(ctx)
	if err != nil || srv.Timeline == 0 {
		s.log.Debug().Err(err).Msg("node's timeline not known: the node does not answer")
		return 0, 0, false
	}
	return srv.SystemID, srv.Timeline, true
}
