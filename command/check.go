package command

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "check that the site is set up to back up and restore, and say what to fix",
		UsageText: "hoard check [--archive-switch [--archive-timeout D]]",
		Description: `Checks the site, one line per check (ok, info, warning or FAILED, with the configuration
key or PostgreSQL setting to change), in four steps:

  configuration  the file decodes and names the site; encryption_key_id has a key; a warning
                 when encryption is off (a key whose public and private halves are from
                 different pairs, as a malformed key, is a configuration that does not load);
                 FAILED where another active site of the file stores its objects under the
                 site's keys or inside one of its folders in the same storage (a copied
                 site left with the same prefix), whose retention hoard refuses
  storage        a scratch object <prefix>/hoard/check/<random> is written, read back,
                 compared and deleted (never a real object); a storage that refuses the
                 delete is a warning: retention needs it. Run as root, it writes nothing
                 into a local store (the directories would be root's, which PostgreSQL's
                 user could not write) and warns: run hoard check as that user
  postgresql     for each node: an ordinary connection; a supported version (13 or later);
                 wal_level replica or logical; free WAL senders (max_wal_senders) and, for
                 a streaming site, that its slot (the node's slot, else hoard_<site>) exists
                 or max_replication_slots lets the daemon create it (warning: it exists but
                 nothing streams from it, and the server keeps WAL for it);
                 the replication connection (IDENTIFY_SYSTEM) as the node's user; with
                 active_backup_mode archive_command, archive_mode on and an archive_command
                 running hoard wal-push with %p (or pg_wal/%f), and with this --config file and
                 site when it names them (wal-push's own --config or --site, else the global one,
                 else HOARD_CONFIG or HOARD_SITE set in the command; warning: another file's
                 storage and site, or another site, get the WAL); data
                 checksums (info); the system identifier is
                 the one of the archive's newest backup (else the node is another cluster);
                 where that backup records none, as PGHoard's do not, the one the first page
                 of its first WAL segment names, read whole through the codec (info: the
                 archive lacks that segment; warning: it does not read);
                 no timeline history file bound to another system (without keys: claiming
                 another) above the node's timeline (from its metadata; without keys, files
                 claiming none cannot be told: info): after pg_upgrade of a cluster whose timeline
                 was above 1, the old cluster's, on which a standby's wal-fetch stops; set a
                 new backup_sites.<site>.prefix for the upgraded cluster; a warning for a
                 history file of the node's own system above its timeline (a restored copy
                 that kept archive_command, or a former primary still running, archived
                 there: a restore of the site to its end would follow it, not the node)
  archive        the newest backup and its age against basebackup_interval_hours; the WAL
                 from its start through the newest stored segment, without a gap (from the
                 listing: nothing is downloaded but a .partial tail); a warning where it
                 ends in a .partial that another system's WAL follows (pg_upgrade into the
                 same site: set a new prefix for the upgraded cluster); FAILED where a
                 timeline history file its recovery asks for is stored damaged (in local
                 storage, a FIFO, a socket or a directory under its name: hoard restore
                 refuses the backup); with --archive-switch,
                 pg_switch_wal() on the first node, then a wait until that segment is
                 archived (as pgbackrest check does; needs a superuser)

Nothing is created on the server: a missing slot is reported, not created.

EXIT STATUS: 0 nothing failed (warnings allowed); 1 a check failed; 2 bad flags or a
configuration that does not load (or names no site); 130 interrupted.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "archive-switch", Usage: "switch to a new WAL segment and wait until the archive holds the old one"},
			&cli.DurationFlag{Name: "archive-timeout", Usage: "with --archive-switch: how long to wait for the segment", Value: time.Minute},
		},
		Action: runCheck,
	}
}

// Timeouts of hoard check's steps: a server or storage that does not
// answer is a finding, not a hang.
const (
	checkStorageTimeout = 2 * time.Minute
	checkNodeTimeout    = 30 * time.Second
)

func runCheck(c *cli.Context) error {
	if err := noArgs(c, "see hoard check --help"); err != nil {
		return err
	}
	if c.IsSet("archive-timeout") && !c.Bool("archive-switch") {
		return usagef("add --archive-switch, or leave --archive-timeout out", "--archive-timeout applies to --archive-switch only")
	}
	env, err := openSite(c)
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	r := &checkReport{w: c.App.Writer}
	src := env.cfg.File
	if src == "" {
		src = "the environment"
	}
	r.ok("configuration", "site %s from %s", env.name, src)
	if err := nestedSite(c.Context, env.cfg, env.name); err != nil {
		// Its retention is refused: hoard retention exits 2, and the
		// daemon's fails at each run while its WAL and backups go on.
		msg := err.Error()
		if ue, ok := errors.AsType[*usageError](err); ok {
			msg = ue.msg + "; hoard retention refuses the site: " + ue.hint
		}
		r.fail("configuration", "%s", msg)
	}
	root := checkEUID() == 0
	if root {
		r.warn("user", "hoard check runs as root, and checks what root can do, not PostgreSQL's user, which runs wal-push and the daemon: "+
			"run it as that user (sudo -u postgres hoard check)")
	}
	checkKeys(r, env.site, env.archive.Codec, createKeysLine(env))

	stored := checkStorage(c.Context, r, env, root)
	var backups []*archive.BackupInfo
	listed := false
	if stored {
		backups, listed = listBackups(c.Context, r, env)
	}
	// The first node that answers says which system the site backs up.
	system := ""
	for i, n := range env.site.Nodes {
		id, tli := checkNode(c.Context, r, env, i, n, backups)
		if system == "" {
			system = id
		}
		if listed && id != "" && tli != 0 {
			checkOtherHistories(c.Context, r, env, nodeStep(i), id, tli)
		}
	}
	if listed {
		checkArchive(c.Context, r, env, newestBackup(backups, system))
	}
	if stored && c.Bool("archive-switch") {
		checkArchiveSwitch(c.Context, r, env, c.Duration("archive-timeout"))
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if r.failed > 0 {
		return &exitError{code: ExitFailure, err: fmt.Errorf("check: site %s: %d failed, %s (see above)", env.name, r.failed, plural(r.warnings, "warning", "warnings"))}
	}
	printf(r.w, "site %s: nothing failed, %s\n", env.name, plural(r.warnings, "warning", "warnings"))
	return nil
}

// checkReport prints hoard check's lines and counts failures and
// warnings.
type checkReport struct {
	w                io.Writer
	failed, warnings int
}

func (r *checkReport) line(status, step, format string, args ...any) {
	printf(r.w, "%-8s %s: %s\n", status, step, fmt.Sprintf(format, args...))
}

func (r *checkReport) ok(step, format string, args ...any) { r.line("ok", step, format, args...) }

func (r *checkReport) info(step, format string, args ...any) { r.line("info", step, format, args...) }

func (r *checkReport) warn(step, format string, args ...any) {
	r.warnings++
	r.line("warning", step, format, args...)
}

func (r *checkReport) fail(step, format string, args ...any) {
	r.failed++
	r.line("FAILED", step, format, args...)
}

// createKeysLine is the create-keys command line to run as it is for
// env's site, with the --config (and --site) of what was checked: without
// --config create-keys only prints the pair. "" with no file (the
// environment), where the variables take what it prints.
func createKeysLine(env *siteEnv) string {
	if env.cfg.File == "" {
		return ""
	}
	cmd := "hoard --config " + restore.ShellQuote(env.cfg.File)
	if len(env.cfg.BackupSites) > 1 {
		cmd += " --site " + restore.ShellQuote(env.name)
	}
	return cmd + " create-keys"
}

// checkKeys checks the site's encryption keys: the key new objects are
// encrypted with exists, and whether this host can decrypt with it. A key
// whose two halves are from different pairs never gets here: the
// configuration does not load (siteCodec).
func checkKeys(r *checkReport, site *config.Site, codec *archive.Codec, createKeys string) {
	const step = "keys"
	id := site.EncryptionKeyID
	if id == "" {
		fix := "run " + createKeys + " --key-id key1 to set encryption_key_id and encryption_keys"
		if createKeys == "" {
			fix = "run hoard create-keys --key-id key1 --pem-dir . and set HOARD_ENCRYPTION_KEY_ID=key1 and " +
				"HOARD_ENCRYPTION_PUBLIC_KEY_FILE to the key1.public.pem it writes"
		}
		r.warn(step, "encryption is off: backups are stored readable by anyone with access to the storage; %s (see docs/security.md)", fix)
		return
	}
	if codec.KeyID != id {
		r.fail(step, "encryption_key_id %s has no public key in encryption_keys: add encryption_keys.%s.public, or run %s --key-id %s",
			id, id, cmp.Or(createKeys, "hoard create-keys"), id)
		return
	}
	if _, ok := codec.PrivateKeys[id]; !ok {
		need := "encryption_keys." + id + ".private"
		if createKeys == "" {
			need = "HOARD_ENCRYPTION_PRIVATE_KEY_FILE (or HOARD_ENCRYPTION_PRIVATE_KEY)"
		}
		r.info(step, "key %s: only the public half is here: this host can back up, a restore needs %s", id, need)
		return
	}
	r.ok(step, "key %s encrypts and decrypts", id)
}

// checkEUID is the effective user id hoard check runs as (a test hook).
var checkEUID = os.Geteuid

// checkStorage writes, reads back and deletes a scratch object. It
// returns whether the storage can be read, for the checks that list it.
// As root it writes nothing into a local store: the directories the
// scratch object needs (the site's, in a new store) would stay root's,
// and PostgreSQL's user could store nothing there.
func checkStorage(ctx context.Context, r *checkReport, env *siteEnv, root bool) bool {
	step := "storage " + storageName(env.site.ObjectStorage)
	if hint := missingRoot(env.site); hint != "" {
		r.fail(step, "%s (create it, or fix the key)", hint)
		return false
	}
	if root && env.site.ObjectStorage.URL == "" && env.site.ObjectStorage.Type == storage.TypeLocal {
		r.warn(step, "not written as root: the directories of a scratch object would be root's, and PostgreSQL's user could not store there; "+
			"run hoard check as that user")
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, checkStorageTimeout)
	defer cancel()
	// The probe goes without hoard's retries (the SDKs keep their own):
	// a wrong endpoint is reported in seconds, not after a minute of
	// backoff meant for a daemon riding out an outage.
	st, err := storage.Open(ctx, env.site.ObjectStorage.StorageConfig())
	if err != nil {
		r.fail(step, "%v", err)
		return false
	}
	defer st.Close()
	key, err := (&archive.Archive{Store: st, Layout: env.archive.Layout}).Probe(ctx)
	switch {
	case errors.Is(err, archive.ErrProbeLeft):
		r.warn(step, "%v: hoard can write but not delete, and retention deletes old backups: grant delete rights on the prefix", err)
	case err != nil:
		r.fail(step, "%v", err)
		return false
	default:
		r.ok(step, "wrote, read back and deleted %s", key)
	}
	return true
}

// storageName names a site's storage in hoard check's lines: its type
// and where it is (directory, bucket and endpoint), without secrets.
func storageName(o config.ObjectStorage) string {
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil {
			return "url (unparsable)"
		}
		return u.Scheme + "://" + u.Host + u.Path
	}
	where := o.Directory
	switch {
	case o.BucketName != "":
		where = "bucket " + o.BucketName
	case o.ContainerName != "":
		where = "container " + o.ContainerName
	}
	switch {
	case o.Host != "" && o.Port != 0:
		where += " at " + o.Host + ":" + strconv.Itoa(o.Port)
	case o.Host != "":
		where += " at " + o.Host
	case o.Server != "":
		where += " at " + o.Server
	case o.AuthURL != "":
		where += " at " + o.AuthURL
	}
	return o.Type + " " + where
}
