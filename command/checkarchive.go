package command

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/daemon"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/verify"
)

// listBackups returns the site's backups whose metadata could be read,
// and false when the listing failed (which it reports).
func listBackups(ctx context.Context, r *checkReport, env *siteEnv) ([]*archive.BackupInfo, bool) {
	bs, err := env.archive.ScanAllBackups(ctx)
	if err != nil {
		r.fail("archive", "list backups: %v", err)
		return nil, false
	}
	for _, d := range bs.Damaged {
		r.warn("archive", "backup %s: its metadata cannot be read (%v): restore never chooses it", d.Name, d.Err)
	}
	return bs.Sound, true
}

// newestBackup returns the newest of bs (nil when there is none) that
// stands for the cluster of system id ("" when no node said): chosen as
// restore does (archive.NewestTrusted), when some backups' metadata
// authenticates only among those, so that a backup someone without the
// key planted cannot stand for the site's cluster, and with id only among
// that system's (archive.TrustedOfSystem), so that another cluster's
// copied from a site sharing the key pair cannot either, nor an unsigned
// one planted beside them. Where none is of that system, the newest of
// any: the node is then another cluster (or was pg_upgraded), which
// checkSystemID reports.
func newestBackup(bs []*archive.BackupInfo, id string) *archive.BackupInfo {
	if own := archive.TrustedOfSystem(bs, id); len(own) > 0 {
		return own[len(own)-1]
	}
	return archive.NewestTrusted(bs)
}

// checkArchive reports the newest backup's age against the schedule and
// whether the WAL continues from its start through the newest stored
// segment (verify's WAL listing: nothing is downloaded but a .partial
// tail).
func checkArchive(ctx context.Context, r *checkReport, env *siteEnv, newest *archive.BackupInfo) {
	const step = "archive"
	if newest == nil {
		r.info(step, "no backup yet: run hoard basebackup (hoard daemon takes them every basebackup_interval_hours)")
		return
	}
	at := newest.StartTime
	if !newest.EndTime.IsZero() {
		at = newest.EndTime
	}
	age := time.Since(at).Round(time.Second)
	interval, scheduled := env.site.BasebackupInterval()
	if scheduled && age > interval {
		r.warn(step, "newest backup %s is %s old, more than basebackup_interval_hours (%s): is hoard daemon running? hoard basebackup takes one now",
			newest.Name, age, interval)
	} else {
		r.ok(step, "newest backup %s, %s old", newest.Name, age)
	}
	chain, err := verify.CheckContinuity(ctx, env.archive, newest)
	checkChain(r, newest, chain, err)
}

// checkChain reports chain, the WAL of backup newest (err: it could not
// be followed).
func checkChain(r *checkReport, newest *archive.BackupInfo, chain *verify.Chain, err error) {
	const step = "archive"
	switch {
	case err != nil:
		r.fail(step, "WAL of backup %s: %v", newest.Name, err)
	case chain.DamagedHistory != nil:
		// Whatever its WAL: hoard restore refuses it.
		r.fail(step, "backup %s is not restorable: %v", newest.Name, chain.DamagedHistory)
	case !chain.Restorable && chain.Newest == "":
		// No WAL on its path at all: most often nothing archives into
		// this site (archive_command names another configuration, or
		// no daemon streams it).
		r.fail(step, "backup %s is not restorable yet: the archive holds none of its WAL (%s through %s): hoard daemon streaming the site, "+
			"or archive_command running hoard wal-push with this configuration, stores it (is one running?); from a standby, once its primary "+
			"finishes that segment, or at once with wal_partial_upload_interval, which stores the segment in progress",
			newest.Name, chain.Start, chain.End)
	case !chain.Restorable && chain.LastContinuous == chain.Newest:
		// Nothing is missing before the end of the archive: the
		// backup ends past it (a standby's backup, whose primary has
		// not finished the segment).
		r.fail(step, "backup %s is not restorable yet: the archive ends in %s, before the backup's end in %s; it restores once that WAL is archived "+
			"(when the server finishes that segment; from a standby, when its primary does, or at once with wal_partial_upload_interval, which stores the segment in progress)",
			newest.Name, dash(chain.Newest), chain.End)
	case !chain.Restorable:
		r.fail(step, "backup %s is not restorable: WAL missing %s; store it with hoard archive-sync on the server, or take a new backup", newest.Name, gaps(chain))
	case !chain.Continuous():
		r.fail(step, "WAL after backup %s has gaps (%s): recovery stops at %s; store them with hoard archive-sync on the server, or take a new backup",
			newest.Name, gaps(chain), chain.LastContinuous)
	case chain.SystemEnd != nil:
		// Restorable to the end of its system's WAL, but another
		// cluster writes into this prefix.
		r.warn(step, "WAL continues from %s (backup %s) through %s, where the WAL of its database system %d ends: "+
			"database system %d's WAL follows (%s), as after pg_upgrade into the same site; "+
			"set a new backup_sites.<site>.prefix for the upgraded cluster",
			chain.Start, newest.Name, dash(chain.Newest), chain.SystemEnd.System, chain.SystemEnd.NextSystem, chain.SystemEnd.Next.Key)
	default:
		r.ok(step, "WAL continues from %s (backup %s) through %s", chain.Start, newest.Name, dash(chain.Newest))
	}
}

// gaps lists a chain's gaps.
func gaps(c *verify.Chain) string {
	s := make([]string, len(c.Gaps))
	for i, g := range c.Gaps {
		s[i] = g.String()
	}
	return strings.Join(s, ", ")
}

// checkArchiveSwitch ends the first node's current WAL segment and waits
// until the archive holds it, as pgbackrest check does: the only proof
// that WAL really flows from this server into this archive.
func checkArchiveSwitch(ctx context.Context, r *checkReport, env *siteEnv, timeout time.Duration) {
	const step = "archive switch"
	n := env.site.Nodes[0]
	hint := "check archive_command (it must run hoard wal-push with this configuration and site) and PostgreSQL's server log for its errors"
	if walMode(env.site.ActiveBackupMode) == daemon.WALStream {
		hint = "check that hoard daemon runs for this site, and its log"
	}
	nodeCtx, cancel := context.WithTimeout(ctx, checkNodeTimeout)
	seg, err := replication.SwitchWAL(nodeCtx, n.ConnString())
	cancel()
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "55000":
		// 55000 object_not_in_prerequisite_state, "recovery is in
		// progress": WAL control functions cannot run on a standby
		// (xlogfuncs.c).
		r.fail(step, "postgresql node 0 is a standby: pg_switch_wal() cannot run during recovery, so no segment can be ended "+
			"to prove that WAL reaches the archive; run SELECT pg_switch_wal() on the primary and see the segment it ends "+
			"arrive in the archive (hoard verify), or run --archive-switch with the primary as the site's first node")
		return
	case err != nil:
		r.fail(step, "%v (pg_switch_wal needs a superuser and a primary)", err)
		return
	}
	key := env.archive.Layout.WALKey(seg)
	found, err := waitStored(ctx, env.archive.Store, key, timeout)
	switch {
	case err != nil:
		r.fail(step, "look for segment %s in the archive: %v", seg, err)
	case !found:
		r.fail(step, "segment %s did not reach the archive within %s: %s", seg, timeout, hint)
	default:
		r.ok(step, "segment %s is archived", seg)
	}
}

// waitStored polls st until key exists, for at most timeout. It returns
// false when the time ran out, and an error when the storage could not
// say.
func waitStored(ctx context.Context, st storage.Store, key string, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := st.Stat(ctx, key)
		switch {
		case err == nil:
			return true, nil
		case ctx.Err() != nil:
			return false, nil
		case !errors.Is(err, storage.ErrNotFound):
			return false, err
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-tick.C:
		}
	}
}
