package command

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/daemon"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// checkNode runs hoard check's PostgreSQL checks on node i of the site:
// each setting a backup or the WAL stream needs, the replication
// connection, and whether the node is the cluster whose backups the
// archive holds (backups, the listing). It returns the node's system
// identifier, "" when it did not answer, and its current timeline
// (IDENTIFY_SYSTEM's), 0 when the replication connection failed.
func checkNode(ctx context.Context, r *checkReport, env *siteEnv, i int, n config.Node, backups []*archive.BackupInfo) (string, uint32) {
	step := nodeStep(i)
	// The node's connection string, named once: on the first line.
	at := "the server libpq's PG* variables and defaults name"
	if s := n.Redacted(); s != "" {
		at = s
	}
	// The archive's reads are not the node's: not under checkNodeTimeout.
	archiveCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, checkNodeTimeout)
	defer cancel()
	streaming := walMode(env.site.ActiveBackupMode) == daemon.WALStream
	slot := ""
	if streaming {
		// The slot the daemon streams over (daemonSite): hoard_<site>
		// when the node names none.
		slot = cmp.Or(n.Slot, defaultSlot(env.name))
	}
	s, err := replication.QuerySetup(ctx, n.ConnString(), slot)
	if err != nil {
		r.fail(step, "%s: %v", at, err)
		return "", 0
	}
	switch ok, err := s.CheckVersion(); {
	case err != nil:
		r.fail(step, "%s: %v", at, err)
	case !ok:
		r.warn(step, "%s: PostgreSQL %s is newer than hoard was tested with (up to 18)", at, s.VersionText())
	default:
		r.ok(step, "%s: PostgreSQL %s, system identifier %d", at, s.VersionText(), s.SystemID)
	}
	if s.InRecovery {
		checkStandby(r, step, env, s, streaming)
	}
	if err := s.CheckWALLevel(); err != nil {
		r.fail(step, "%v", err)
	} else {
		r.ok(step, "wal_level %s", s.WALLevel)
	}
	checkSenders(r, step, s, streaming)
	if slot != "" {
		switch exists, err := s.CheckSlot(slot); {
		case err != nil:
			r.fail(step, "%v", err)
		case exists && !s.SlotActive:
			// The server keeps WAL for it without limit (unless
			// max_slot_wal_keep_size): its disk fills while no
			// daemon runs.
			kept := ""
			if s.SlotRetained >= 0 {
				kept = " (" + humanBytes(s.SlotRetained) + " so far)"
			}
			r.warn(step, "replication slot %s exists, but nothing streams from it: is hoard daemon running? The server keeps WAL for it%s "+
				"until the daemon streams again; drop the slot (pg_drop_replication_slot) if no daemon will", slot, kept)
		case exists:
			r.ok(step, "replication slot %s exists and is active", slot)
		default:
			r.ok(step, "replication slot %s does not exist yet: hoard daemon creates it (max_replication_slots %d, %d in use)", slot, s.MaxSlots, s.Slots)
		}
	}
	tli := checkReplicationConn(ctx, r, step, n)
	if env.site.ActiveBackupMode == config.ModeArchiveCommand {
		checkArchiveCommand(r, step, s, env.cfg.File, env.name)
	}
	if s.DataChecksums {
		r.info(step, "data checksums are on")
	} else {
		r.info(step, "data checksums are off: page corruption goes unnoticed (pg_checksums --enable turns them on, server stopped)")
	}
	id := strconv.FormatUint(s.SystemID, 10)
	checkSystemID(r, step, id, backups, func(b *archive.BackupInfo) (string, string, error) {
		return backupWALSystem(archiveCtx, env.archive, b)
	})
	return id, tli
}

// nodeStep names node i of the site in hoard check's lines.
func nodeStep(i int) string { return fmt.Sprintf("postgresql node %d", i) }

// checkStandby says what backing up from a standby means for the site:
// its backups end in the segment its primary is writing, which the
// daemon stores in time only as a .partial (once it sees a new backup in
// the site, and every wal_partial_upload_interval),
// and it archives nothing itself unless archive_mode is always.
func checkStandby(r *checkReport, step string, env *siteEnv, s replication.Setup, streaming bool) {
	r.info(step, "a standby (in recovery): the WAL stream and the slot are on the standby, backups are taken from it "+
		"(see Backing up from a standby in docs/backup-restore.md)")
	switch {
	case streaming && env.site.WALPartialUploadInterval == 0:
		r.warn(step, "wal_partial_upload_interval is 0: a backup of a standby ends in the segment its primary is writing; "+
			"a running daemon stores that segment as a .partial once it sees the backup (at once when hoard basebackup "+
			"tells it, otherwise within a minute), but a backup taken while the daemon is stopped or in maintenance "+
			"restores only once the primary finishes that segment; set wal_partial_upload_interval (say 60) so that the "+
			"daemon also stores the segment in progress on its own")
	case !streaming && s.ArchiveMode != "always":
		r.warn(step, "archive_mode is %s: a standby archives nothing unless archive_mode = always; its backups need the "+
			"primary to archive into this site (or set archive_mode = always on the standby)", s.ArchiveMode)
	}
}

// checkSenders says whether max_wal_senders leaves room: one WAL sender
// for a basebackup, one more for the daemon's WAL stream.
func checkSenders(r *checkReport, step string, s replication.Setup, streaming bool) {
	need := 1
	if streaming {
		need = 2
	}
	err := s.CheckSenders(need)
	switch {
	case err == nil:
		r.ok(step, "max_wal_senders %d, %d in use", s.MaxWALSenders, s.WALSenders)
	case s.CheckSenders(1) != nil:
		r.fail(step, "%v", err)
	default:
		r.warn(step, "%v (one for the WAL stream, one per basebackup)", err)
	}
}

// checkReplicationConn opens a replication connection as the node's user
// and identifies the system, as the daemon and a basebackup do first. It
// returns the node's current timeline, 0 when that failed.
func checkReplicationConn(ctx context.Context, r *checkReport, step string, n config.Node) uint32 {
	conn, err := replication.Connect(ctx, n.ConnString())
	if err != nil {
		r.fail(step, "replication connection: %v", err)
		return 0
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		r.fail(step, "replication connection: %v", err)
		return 0
	}
	r.ok(step, "replication connection: IDENTIFY_SYSTEM says timeline %d at %s", sys.Timeline, sys.XLogPos)
	return uint32(max(sys.Timeline, 0))
}

// checkArchiveCommand checks, for a site in archive_command mode, that
// PostgreSQL archives and hands its WAL to hoard wal-push.
func checkArchiveCommand(r *checkReport, step string, s replication.Setup, cfgFile, site string) {
	if s.ArchiveMode == "off" {
		r.fail(step, "archive_mode is off and active_backup_mode is archive_command: no WAL reaches the archive; "+
			"set archive_mode = on in postgresql.conf and restart PostgreSQL")
		return // archive_command then shows as "(disabled)"
	}
	r.ok(step, "archive_mode %s", s.ArchiveMode)
	const set = "set archive_command = 'hoard --config FILE wal-push %p' and reload PostgreSQL"
	switch {
	case strings.TrimSpace(s.ArchiveCommand) == "":
		r.warn(step, "archive_command is not set (or not visible to this user): %s", set)
	case !runsHoardWALPush(s.ArchiveCommand):
		// Only the program: the rest of the line may hold secrets.
		r.warn(step, "archive_command runs %s, not hoard wal-push: %s", commandProgram(s.ArchiveCommand), set)
	case !walPushGetsPath(s.ArchiveCommand):
		r.fail(step, "archive_command runs hoard wal-push without %%p: PostgreSQL replaces %%p with the WAL file's path relative to "+
			"the data directory, where it runs the command (%%f is only the file's name, and the file is in pg_wal/), so every push "+
			"fails and WAL piles up in pg_wal; %s", set)
	default:
		if other, how := walPushConfig(s.ArchiveCommand); other != "" && !sameConfig(other, cfgFile) {
			// A wal-push-only file (the public key alone) may name the
			// same storage and site: a warning, not a failure.
			abs, _ := filepath.Abs(cfgFile)
			r.warn(step, "archive_command runs hoard wal-push with %s%s, not %s, the file checked here: WAL goes to the storage "+
				"and site that file names, which the backups of this one need; check it too (hoard --config %s check), "+
				"or set archive_command = 'hoard --config %s wal-push %%p' and reload PostgreSQL", how, other, abs, other, abs)
			return
		}
		if other, how := walPushFlag(s.ArchiveCommand, "site", "HOARD_SITE"); other != "" && site != "" && other != site {
			r.warn(step, "archive_command runs hoard wal-push with %s%s, not site %s, the site checked here: WAL goes to that site's "+
				"prefix, where the backups of this one do not find it; set archive_command = 'hoard --config FILE --site %s wal-push %%p' "+
				"and reload PostgreSQL", how, other, site, site)
			return
		}
		r.ok(step, "archive_command runs hoard wal-push")
	}
}

// walPushConfig returns the configuration file the shell command cmd,
// which runs hoard's wal-push (runsHoardWALPush), gives hoard, as an
// absolute path, and how (walPushFlag). file is "" when the command gives
// none (the server's environment applies) or a relative one (PostgreSQL
// runs the command in the data directory, which check does not know), or
// one with a blank.
func walPushConfig(cmd string) (file, how string) {
	file, how = walPushFlag(cmd, "config", "HOARD_CONFIG", "PGHOARD_CONFIG")
	if !filepath.IsAbs(file) {
		return "", how
	}
	return file, how
}

// walPushFlag returns the value the shell command cmd, which runs
// hoard's wal-push (runsHoardWALPush), gives hoard's global flag name
// (config, site), as hoard reads it: wal-push's own --name (before or
// after its argument, up to "--"), else the global --name before
// wal-push, else the first of envs set before the program (the last of a
// flag written twice counts, as urfave's does); how says which
// ("--name " or "ENV="). value is "" when none is given, or when a quote
// is left open (a value with a blank, cut by the split into words).
func walPushFlag(cmd, name string, envs ...string) (value, how string) {
	// In the order they count: wal-push's, the global flag, envs.
	values := make([]string, 2+len(envs)) // as written, quotes included
	hows := []string{"--" + name + " ", "--" + name + " "}
	for _, e := range envs {
		hows = append(hows, e+"=")
	}
	push, next := false, false
	set := func(v string) {
		if push {
			values[0] = v
		} else {
			values[1] = v
		}
	}
	before, args := splitHoardCommand(cmd)
	for _, f := range before {
		for i, e := range envs {
			if v, ok := strings.CutPrefix(f.raw, e+"="); ok {
				values[2+i] = v
			}
		}
	}
	for _, f := range args {
		switch w := f.word; {
		case next:
			next = false
			set(f.raw)
		case w == "--" && push:
			return firstSet(values, hows)
		case w == "wal-push":
			push = true
		case w == "--"+name || w == "-"+name:
			next = true
		case strings.HasPrefix(w, "--"+name+"=") || strings.HasPrefix(w, "-"+name+"="):
			_, v, _ := strings.Cut(f.raw, "=")
			set(v)
		}
	}
	return firstSet(values, hows)
}

// firstSet returns the first of values that is set, without its quotes
// ("" when a quote is left open), with the how of the same index.
func firstSet(values, hows []string) (value, how string) {
	for i, v := range values {
		if v == "" {
			continue
		}
		if strings.Count(v, "'")%2 != 0 || strings.Count(v, `"`)%2 != 0 {
			return "", hows[i]
		}
		return strings.Trim(v, `"'`), hows[i]
	}
	return "", ""
}

// sameConfig reports whether other (absolute) names the configuration
// file cfgFile: the same file, through a link or another spelling, or
// the same cleaned path where either cannot be read here. An env-only
// configuration (cfgFile "") is no file to compare with.
func sameConfig(other, cfgFile string) bool {
	if cfgFile == "" {
		return true
	}
	abs, err := filepath.Abs(cfgFile)
	if err != nil {
		return true
	}
	a, errA := os.Stat(other)
	b, errB := os.Stat(abs)
	if errA == nil && errB == nil {
		return os.SameFile(a, b)
	}
	return filepath.Clean(other) == abs
}

// shellWord is a word of a shell command: as written, quotes included,
// and as the program gets it, quotes trimmed.
type shellWord struct{ raw, word string }

// splitHoardCommand splits the shell command cmd into words: those
// before the first one naming the program hoard (any directory, quoted
// or not), where variables are assigned for it, and those after it,
// hoard's arguments (none when no word names hoard).
func splitHoardCommand(cmd string) (before, args []shellWord) {
	words := []shellWord{}
	for _, f := range strings.Fields(cmd) {
		words = append(words, shellWord{raw: f, word: strings.Trim(f, `"'`)})
	}
	for i, w := range words {
		if path.Base(w.word) == "hoard" {
			return words[:i], words[i+1:]
		}
	}
	return words, nil
}

// runsHoardWALPush reports whether the shell command cmd runs hoard's
// wal-push: a word naming the program hoard (any directory, quoted or not)
// followed by the word wal-push. Other tools have a wal-push too
// (wal-g wal-push %p).
func runsHoardWALPush(cmd string) bool {
	_, args := splitHoardCommand(cmd)
	return slices.ContainsFunc(args, func(w shellWord) bool { return w.word == "wal-push" })
}

// walPushGetsPath reports whether the shell command cmd, which runs
// hoard's wal-push (runsHoardWALPush), passes it the WAL file's path among
// the words after wal-push: %p, or a directory and %f (pg_wal/%f, or the
// data directory's absolute path and pg_wal/%f), which name the same file
// since PostgreSQL runs the command in the data directory. %% is a literal
// percent sign, as in archive_command; %f alone is only the file's name.
func walPushGetsPath(cmd string) bool {
	_, args := splitHoardCommand(cmd)
	push := false
	for _, w := range args {
		switch {
		case push:
			if w := strings.ReplaceAll(w.word, "%%", ""); strings.Contains(w, "%p") || strings.Contains(w, "/%f") {
				return true
			}
		case w.word == "wal-push":
			push = true
		}
	}
	return false
}

// commandProgram returns the program the shell command cmd runs: its
// first word that is neither env nor a variable assignment, which may
// hold a secret (PGPASSWORD=... tool %p).
func commandProgram(cmd string) string {
	for _, f := range strings.Fields(cmd) {
		if f != "env" && !strings.Contains(f, "=") {
			return f
		}
	}
	return "no program"
}

// checkSystemID fails when the node is not the cluster the newest backup
// was taken of (newestBackup): a site pointed at the wrong server would
// mix two clusters' WAL in one archive. A newest backup that records no
// system (PGHoard's) is compared by the system identifier walSystem reads
// from its WAL (backupWALSystem; nil: none is read); where that cannot be
// read either, an info line says it was not compared. Where the node's
// cluster has backups too, those whose authenticated metadata names
// another system (archive.Foreign) are named in a warning and stand for
// nothing: another cluster's, copied from a site sharing the key pair, or
// this one's from before a pg_upgrade.
func checkSystemID(r *checkReport, step string, id string, backups []*archive.BackupInfo,
	walSystem func(b *archive.BackupInfo) (system, segment string, err error)) {
	newest := newestBackup(backups, id)
	if newest == nil {
		return
	}
	if newest.SystemID == "" {
		checkWALSystemID(r, step, id, newest, walSystem)
		return
	}
	if newest.SystemID != id {
		r.fail(step, "system identifier %s is not %s, the one of the newest backup %s: this node is another cluster; "+
			"fix the node's host and port in nodes, or give this cluster a site (or prefix) of its own (after a pg_upgrade: take a backup)",
			id, newest.SystemID, newest.Name)
		return
	}
	if foreign := archive.Foreign(backups, id); len(foreign) > 0 {
		names := make([]string, len(foreign))
		for i, b := range foreign {
			names[i] = fmt.Sprintf("%s (system %s)", b.Name, b.SystemID)
		}
		r.warn(step, "backups of another database system authenticate in this site: %s: another cluster's, copied from a site sharing "+
			"the key pair, or this one's from before a pg_upgrade; retention, the daemon's schedule and this check do not count them, "+
			"but hoard restore without --basebackup may choose one (it warns)", strings.Join(names, ", "))
	}
	r.ok(step, "same cluster as the newest backup %s", newest.Name)
}

// checkWALSystemID is checkSystemID for a newest backup that records no
// system identifier (PGHoard's): the first page of its first WAL segment
// names the system it was taken of. A segment that does not read (damaged,
// or stored by someone without the keys) is warned about; one the archive
// lacks, or no walSystem, leaves an info line.
func checkWALSystemID(r *checkReport, step string, id string, newest *archive.BackupInfo,
	walSystem func(b *archive.BackupInfo) (system, segment string, err error)) {
	err := errNoWALSystem
	if walSystem != nil {
		var system, seg string
		system, seg, err = walSystem(newest)
		switch {
		case err == nil && system == id:
			r.ok(step, "same cluster as the newest backup %s: its first WAL segment %s names this node's system identifier "+
				"(the backup records none, as PGHoard's do not)", newest.Name, seg)
			return
		case err == nil:
			r.fail(step, "system identifier %s is not %s, the one the first WAL segment %s of the newest backup %s names "+
				"(the backup records none, as PGHoard's do not): this node is another cluster; "+
				"fix the node's host and port in nodes, or give this cluster a site (or prefix) of its own (after a pg_upgrade: take a backup)",
				id, system, seg, newest.Name)
			return
		}
	}
	// Nothing to compare, which a PGHoard user pointing check at the
	// cluster before switching is told.
	report := r.info
	if !errors.Is(err, errNoWALSystem) {
		report = r.warn
	}
	report(step, "the newest backup %s records no system identifier (PGHoard's backups do not), and its WAL does not say: %v: "+
		"whether this node is the cluster it was taken of is not checked (hoard verify checks the archive): this node's is %s, "+
		"and pg_controldata's \"Database system identifier\" of the cluster the backups came from must be the same", newest.Name, err, id)
}

// errNoWALSystem: a backup's WAL gives no system identifier to compare,
// as none is stored or read.
var errNoWALSystem = errors.New("no WAL segment of the backup to read")

// backupWALSystem returns the system identifier that the first page of
// b's first WAL segment names, and the segment's name: every segment
// starts with a long page header holding it (wal.PageHeader), where
// PGHoard's backups record none. The segment is read whole through the
// site's codec (archive.SystemOf), from a or the first site it moved
// from that holds it, as wal-fetch reads it: with keys, a segment that
// someone without them stored in its place fails to authenticate and
// says nothing.
func backupWALSystem(ctx context.Context, a *archive.Archive, b *archive.BackupInfo) (string, string, error) {
	seg := b.StartWALSegment
	if !wal.IsSegmentName(seg) {
		return "", "", fmt.Errorf("%w: it records no first segment", errNoWALSystem)
	}
	for _, s := range append([]*archive.Archive{a}, a.MovedFrom...) {
		f := archive.WALFile{Name: seg, Key: s.Layout.WALKey(seg), Archive: s}
		system, err := archive.SystemOf(ctx, f)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return "", seg, fmt.Errorf("its first segment %s: %w", seg, err)
		}
		return strconv.FormatUint(system, 10), seg, nil
	}
	return "", seg, fmt.Errorf("%w: its first segment %s is not in the archive", errNoWALSystem, seg)
}
