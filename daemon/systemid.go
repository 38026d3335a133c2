package daemon

import (
	"context"
	"strconv"
	"time"

	"github.com/hoardbackup/hoard/replication"
)

// systemIDRefresh is how long the backup loop goes by the system
// identifier it last asked the site's node for before asking again: a
// pg_upgrade gives the cluster a new one, and the schedule must then take
// a backup of it (archive.OfSystem leaves the old system's out), and look
// again for history files of another system (warnOtherHistories). A
// variable so tests can shorten it.
var systemIDRefresh = 10 * time.Minute

// systemID returns the system identifier of the site's cluster, which the
// schedule, the newest backup reported and retention go by
// (archive.OfSystem): the receiver's (IDENTIFY_SYSTEM) while it streams,
// else the node's pg_control_system(), asked at most every
// systemIDRefresh, or after a basebackup the one it recorded. It returns
// the last one known while the node does not answer, "" before it ever
// did.
func (s *supervisor) systemID(ctx context.Context) string {
	s.mu.Lock()
	recv, id, at := s.recv, s.sysID, s.sysIDAt
	s.mu.Unlock()
	if recv != nil {
		if st := recv.Status(); st.SystemID != "" {
			return st.SystemID
		}
	}
	if id != "" && time.Since(at) < systemIDRefresh {
		return id
	}
	ctx, cancel := context.WithTimeout(ctx, serverVersionTimeout)
	defer cancel()
	srv, err := replication.QueryServer(ctx, s.site.ConnString)
	if err != nil {
		s.log.Debug().Err(err).Msg("system identifier not known: the node does not answer")
		return id
	}
	s.noteSystemID(strconv.FormatUint(srv.SystemID, 10))
	return strconv.FormatUint(srv.SystemID, 10)
}

// noteSystemID records id as the site's cluster's system identifier.
func (s *supervisor) noteSystemID(id string) {
	s.mu.Lock()
	s.sysID, s.sysIDAt = id, time.Now()
	s.mu.Unlock()
}
