package daemon

import (
	"context"
	"strconv"

	"github.com/hoardbackup/hoard/archive"
)

// warnOtherHistories logs at error level, once the backup loop first
// lists the backups, what hoard check reports as failed: history files in
// the site bound to another database system than the node's, on
// timelines above the one the WAL receiver streams
// (archive.OtherSystemHistories), the shape a pg_upgrade into the same
// site leaves. The daemon cannot fix it, but a standby of this cluster
// whose restore_command is hoard wal-fetch stops on them, and the
// operator must read why before. Only with the WAL stream, whose
// IDENTIFY_SYSTEM gave the node's system and timeline.
func (s *supervisor) warnOtherHistories(ctx context.Context, arch *archive.Archive) {
	recv := s.liveReceiver()
	if recv == nil {
		return
	}
	st := recv.Status()
	sys, err := strconv.ParseUint(st.SystemID, 10, 64)
	if err != nil || st.Timeline <= 0 {
		return
	}
	tli := uint32(st.Timeline)
	others, err := arch.OtherSystemHistories(ctx, sys, tli)
	if err != nil {
		s.log.Warn().Err(err).Msg("look for timeline history files of another database system")
		return
	}
	for _, p := range archive.OtherSystemHistoriesProblems(others, sys, tli) {
		s.log.Error().Msg(p)
	}
}
