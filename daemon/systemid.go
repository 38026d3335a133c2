package daemon

import (
	"context"
	"strconv"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/replication"
)

// systemIDRefresh is how long the backup loop goes by the system
// identifier it last asked the site's node for before asking again: a
// pg_upgrade gives the cluster a new one, and the schedule must then take
// a backup of it (archive.OfSystem leaves the old system's out), and look
// again for history files of another system (warnOtherHistories). A
// variable so tests can shorten it.
var systemIDRefresh = 10 * time.Minute

// nodeRetry is how long the daemon goes by a failed ask of the node
// (queryNode) before asking again, systemIDRefresh when shorter: a node
// whose host hangs costs each ask serverVersionTimeout, and one pass of
// the backup loop asks up to three times (warnOtherHistories, decide,
// retention).
const nodeRetry = 30 * time.Second

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
	srv, err := s.queryNode(ctx)
	if err != nil {
		s.log.Debug().Err(err).Msg("system identifier not known: the node does not answer")
		return id
	}
	return strconv.FormatUint(srv.SystemID, 10)
}

// queryNode asks the site's node for its version, system identifier and
// timeline over an ordinary connection (replication.QueryServer), within
// serverVersionTimeout, and records the system identifier. After a
// failed ask it answers that failure, without asking, for nodeRetry (or
// systemIDRefresh).
func (s *supervisor) queryNode(ctx context.Context) (replication.Server, error) {
	s.mu.Lock()
	failed, failedAt := s.nodeErr, s.nodeErrAt
	s.mu.Unlock()
	if failed != nil && time.Since(failedAt) < min(nodeRetry, systemIDRefresh) {
		return replication.Server{}, failed
	}
	qctx, cancel := context.WithTimeout(ctx, serverVersionTimeout)
	defer cancel()
	srv, err := replication.QueryServer(qctx, s.site.ConnString)
	if err != nil && ctx.Err() != nil {
		return srv, err // the daemon stops: not the node's failure
	}
	s.mu.Lock()
	s.nodeErr, s.nodeErrAt = err, time.Now()
	s.mu.Unlock()
	if err == nil {
		s.noteSystemID(strconv.FormatUint(srv.SystemID, 10))
	}
	return srv, err
}

// noteSystemID records id as the site's cluster's system identifier.
func (s *supervisor) noteSystemID(id string) {
	s.mu.Lock()
	s.sysID, s.sysIDAt = id, time.Now()
	s.mu.Unlock()
}

// systemChanged logs at error level, in both WAL modes, that the node's
// system identifier changed from old (the one the backup loop last looked
// for history files of; "" before it knew one) to id: the cluster at the
// node's address was replaced, a pg_upgrade most likely. The daemon goes
// on (the old system's backups no longer count, so the schedule takes a
// backup of the new one at once; a WAL receiver stores the old system's
// last WAL, then streams the new one's into the same prefix), but the
// site now holds two systems' backups and WAL: the operator should give
// the new cluster a prefix of its own.
func (s *supervisor) systemChanged(old, id string) {
	if old == "" || old == id {
		return
	}
	s.log.Error().Str("old_system", old).Str("system", id).
		Msg("the node's database system changed: after a pg_upgrade, set a new backup_sites.<site>.prefix for the upgraded " +
			"cluster and reload (SIGHUP); the daemon takes a backup there, restores of the new cluster read it, and the old prefix " +
			"keeps the old cluster's backups and wal (restore them with a configuration file of their own)")
}

// claimsOtherSystem reports whether b's metadata names a system other
// than id (when known), authenticated or not. The schedule leaves such
// backups out: in a site without keys nothing authenticates, and after a
// pg_upgrade the old cluster's backups would otherwise keep the new one
// from being backed up until the next interval, with nothing restorable
// meanwhile. Believing a forged claim costs one backup more; the choices
// that a forged claim could mislead (restore, retention) go by
// authenticated metadata only.
func claimsOtherSystem(b *archive.BackupInfo, id string) bool {
	return id != "" && b.SystemID != "" && b.SystemID != id
}
