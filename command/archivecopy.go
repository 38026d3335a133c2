package command

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/storage"
)

func archiveCopyCommand() *cli.Command {
	return &cli.Command{
		Name:      "archive-copy",
		Usage:     "copy a site's whole archive to another storage, checking every copy",
		UsageText: "hoard archive-copy --to-config FILE [--site S] [--to-site T] [--parallel N] [--verify-existing] [--upload-rate-limit R] [--download-rate-limit R] [--json]",
		Description: `Copies every object of the site (--site, from --config) into the storage of the site of the
same name (or --to-site) in the configuration --to-config names: WAL, timeline histories,
basebackups and their chunks, as they are stored (same bytes, same metadata, nothing
decoded and encoded again), under that site's prefix. Only the site's folders (xlog/,
timeline/, basebackup/, basebackup_chunk/, ...) are copied: what else lies under its
prefix, such as another site's whose prefix is below this one's (site s/t beside site s),
is left out and counted. That file is read without HOARD_*
overrides, which belong to --config.

Each copy is read back: its SHA-256 must be the source's, and it is decoded in full
(decryption and its HMAC, decompression, original-file-size) when its private key is in
either configuration; encrypted objects whose key neither has are checked by their bytes
alone. A copy that differs, or a source object that does not decode, is removed from the
target and reported. In a site with encryption keys, an unencrypted object that the site
refuses to read (see unencrypted_objects_before) is not copied: it is reported. Nor is an
unencrypted object into a target site with encryption keys, which would refuse the copy (its
storage time is the copy's): copy into a site without keys, then add them and set its
unencrypted_objects_before to a time after the copy. Backups'
control objects are copied last, and not at all for a backup one of whose objects (or any
WAL) failed, or one of whose chunks the target holds with other bytes or metadata (a
conflict), so the target never lists a backup it cannot restore.

Objects the target already holds with the same size and metadata are skipped (read back
and compared first with --verify-existing), so a copy that was interrupted, even killed,
continues where it stopped when run again. An object the target holds with other bytes or
metadata is never overwritten: it is reported as a conflict.

A target that is the source (however the two files spell the storage: a directory with a
trailing slash, a prefix moved between object_storage and the site, a file:// URL for a
local directory, an SFTP directory joined with the prefix, an s3:// URL for storage_type
s3's endpoint and bucket, AWS's endpoint written as host or left out (or taken from
AWS_ENDPOINT_URL_S3), a Swift auth_url spelled another way, an azblob:// URL for
storage_type azure's endpoint, account and container, a host in capitals, a default port
written or not, a host name and its address, localhost and 127.0.0.1), or whose keys lie
inside the source site's or hold them in the same storage, is refused (exit 2): a target
inside one of the source's folders would be deleted by the source's retention, and a copy
kept apart from its source is one a mistake in either configuration cannot reach through the
other. Where the two storages differ only in the server's host and a host name does not
resolve, the target is refused too: whether it is the source cannot be told.

Afterwards point the site's object_storage at the new storage, or keep both: a new site
whose moved_from names the old one reads the old archive for restores.

EXIT STATUS: 0 every object is in the target and checked; 1 conflicts or failed objects (listed);
2 bad flags or configuration; 130 interrupted (run again to continue).`,
		Flags: []cli.Flag{
			allowRootFlag,
			&cli.StringFlag{Name: "to-config", Usage: "configuration `FILE` of the target storage"},
			&cli.StringFlag{Name: "to-site", Usage: "`SITE` in --to-config to copy into (default: the same name)"},
			&cli.IntFlag{Name: "parallel", Value: 4, Usage: "copy `N` objects at a time"},
			&cli.BoolFlag{Name: "verify-existing", Usage: "read back the objects the target already has and compare their bytes"},
			uploadRateFlag,
			downloadRateFlag,
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		},
		Action: runArchiveCopy,
	}
}

func runArchiveCopy(c *cli.Context) error {
	if err := noArgs(c, "see hoard archive-copy --help"); err != nil {
		return err
	}
	if c.String("to-config") == "" {
		return usagef("pass --to-config FILE: a configuration whose site names the target storage", "archive-copy needs --to-config")
	}
	if c.Int("parallel") < 1 {
		return usagef("pass --parallel 1 or more", "--parallel %d", c.Int("parallel"))
	}
	env, err := openSite(c)
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	to, err := openTargetSite(c, env)
	if err != nil {
		return err
	}
	defer to.Store.Close()

	var bar *progressbar.ProgressBar
	if f, ok := c.App.ErrWriter.(*os.File); ok && !c.Bool("json") && isatty.IsTerminal(f.Fd()) {
		bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(f), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("archive-copy "+env.name), progressbar.OptionThrottle(200e6),
			progressbar.OptionClearOnFinish())
	}
	res, err := archive.Copy(c.Context, archive.CopyOptions{
		From:           env.archive,
		To:             to,
		Parallel:       c.Int("parallel"),
		VerifyExisting: c.Bool("verify-existing"),
		Logger:         env.log,
		Progress: func(done, total int64) {
			if bar != nil {
				bar.ChangeMax64(total)
				_ = bar.Set64(done)
			}
		},
	})
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return fmt.Errorf("archive-copy %s: %w (run again to continue)", env.name, err)
	}
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, copyJSON(res)); err != nil {
			return err
		}
	} else {
		writeCopyResult(c.App.Writer, env.name, to.Site, res)
	}
	if n := len(res.Conflicts) + len(res.Failed); n > 0 {
		var todo []string
		if len(res.Failed) > 0 {
			todo = append(todo, "run archive-copy again to retry each FAILED object once the cause shown is fixed (a source object that does not decode needs another copy of it)")
		}
		if len(res.Conflicts) > 0 {
			todo = append(todo, "each CONFLICT is left alone: compare it with hoard object ls --long KEY under each configuration")
		}
		return &exitError{code: ExitFailure, err: fmt.Errorf("archive-copy %s: %s not copied (listed above): %s", env.name, plural(n, "object", "objects"), strings.Join(todo, "; "))}
	}
	return nil
}

// openTargetSite loads --to-config, without the environment's HOARD_*
// overrides (they are --config's), and opens the site to copy into.
func openTargetSite(c *cli.Context, env *siteEnv) (*archive.Archive, error) {
	file := c.String("to-config")
	cfg, err := config.Load(file, func(string) string { return "" })
	if err != nil {
		if ferr := configFileError(file, "--to-config "+file, targetLookup, err); ferr != nil {
			return nil, ferr
		}
		return nil, &usageError{msg: fmt.Sprintf("--to-config %s: %v", file, err), hint: "fix the target configuration; see docs/configuration.md"}
	}
	name := c.String("to-site")
	if name == "" {
		name = env.name
	}
	site, ok := cfg.BackupSites[name]
	if !ok {
		return nil, usagef("pass --to-site NAME", "--to-config %s has no site %s", file, name)
	}
	if err := refuseOverlap(c.Context, env.site, site, name); err != nil {
		return nil, err
	}
	if err := refuseRootStore(c, os.Geteuid(), "archive-copy", site.ObjectStorage); err != nil {
		return nil, err
	}
	if err := checkUploadKey(site); err != nil {
		return nil, err
	}
	return siteArchive(c, cfg, name, site, "target site")
}

// refuseOverlap refuses a target site whose objects are the source's, or
// lie inside the source's or hold them, however the two configurations
// spell the place (siteKeys). A target inside the source was listed with
// the source (each run copied the last run's copy again, one level
// deeper) until archive.Copy copied the site's folders alone; inside one
// of them, the source's retention deletes it. A source inside the target
// mixes its keys into the target site's. The source itself, reached by
// another spelling, would be "copied" onto itself, every object skipped
// as already there.
//
// Two names of one server (a host name and its address, localhost and
// 127.0.0.1) are one server (storage.SameServer); when that cannot be
// told, a host name not resolving, the target is refused too: copying a
// site onto itself is what a wrong "another server" would allow.
func refuseOverlap(ctx context.Context, from, to *config.Site, name string) error {
	_, fromRoot := siteKeys(from)
	_, toRoot := siteKeys(to)
	const hint = "point --to-config at another storage, or at a site prefix neither inside the source's nor holding it"
	var err error
	switch {
	case fromRoot == toRoot:
		err = usagef(hint, "the target is the source itself: site %s overlaps the source in the same storage (both at %s)", name, toRoot)
	case strings.HasPrefix(toRoot, fromRoot):
		err = usagef(hint, "target site %s overlaps the source in the same storage: its keys (%s) are inside the source's (%s)", name, toRoot, fromRoot)
	case strings.HasPrefix(fromRoot, toRoot):
		err = usagef(hint, "target site %s overlaps the source in the same storage: its keys (%s) hold the source's (%s)", name, toRoot, fromRoot)
	default:
		return nil
	}
	same, rerr := storage.SameServer(ctx, net.DefaultResolver, from.ObjectStorage.StorageConfig(), to.ObjectStorage.StorageConfig())
	if rerr != nil {
		return usagef("make the host names resolve here, or name the server the same way in --config and --to-config; a target on another server needs a prefix neither inside the source's nor holding it, or a name that resolves",
			"target site %s may overlap the source: its keys (%s) and the source's (%s) are in the same storage but for the server's host, and %v", name, toRoot, fromRoot, rerr)
	}
	if !same {
		return nil
	}
	return err
}

// siteKeys returns where a site's objects are: the server of its storage
// (storage.Config.Where: a local directory and a file:// URL, storage_type
// s3 and an s3:// URL, storage_type azure and an azblob:// URL, spelled
// one way; storage.SameServer tells whether two are one), and the key
// prefix there of everything the site stores, the storage's prefix (with a local
// directory's path in front) and the site prefix joined as the store and
// archive.Copy join them, so that a prefix moved from one to the other is
// the same place.
func siteKeys(site *config.Site) (place, root string) {
	place, prefix := site.ObjectStorage.StorageConfig().Where()
	// archive.Copy's siteRoot: the site prefix without one trailing slash.
	root = strings.TrimSuffix(site.Prefix, "/") + "/"
	if prefix != "" {
		root = prefix + "/" + root
	}
	return place, root
}

func copyJSON(r archive.CopyResult) any {
	type failure struct {
		Key   string `json:"key"`
		Error string `json:"error"`
	}
	failed := []failure{}
	for _, f := range r.Failed {
		failed = append(failed, failure{f.Key, f.Err.Error()})
	}
	conflicts := r.Conflicts
	if conflicts == nil {
		conflicts = []string{}
	}
	return struct {
		Objects     int       `json:"objects"`
		Bytes       int64     `json:"bytes"`
		Copied      int       `json:"copied"`
		CopiedBytes int64     `json:"copied_bytes"`
		Skipped     int       `json:"skipped"`
		Decoded     int       `json:"decoded"`
		HashOnly    int       `json:"checked_by_hash_only"`
		Conflicts   []string  `json:"conflicts"`
		Failed      []failure `json:"failed"`
		LeftOut     int       `json:"left_out"`
	}{r.Objects, r.Bytes, r.Copied, r.CopiedBytes, r.Skipped, r.Decoded, r.HashOnly, conflicts, failed, r.LeftOut}
}

func writeCopyResult(w io.Writer, from, to string, r archive.CopyResult) {
	printf(w, "site %s -> %s: %s (%d bytes): %d copied (%d bytes), %d already there\n",
		from, to, plural(r.Objects, "object", "objects"), r.Bytes, r.Copied, r.CopiedBytes, r.Skipped)
	printf(w, "checked: %d decoded in full, %d by their bytes only (no private key)\n", r.Decoded, r.HashOnly)
	if r.LeftOut > 0 {
		printf(w, "left out: %s under the site's prefix outside its folders (another site's, whose prefix lies below this one's, or no site's)\n",
			plural(r.LeftOut, "object", "objects"))
	}
	for _, k := range r.Conflicts {
		printf(w, "  CONFLICT %s: the target holds other bytes or metadata under this name (left alone)\n", k)
	}
	for _, f := range r.Failed {
		printf(w, "  FAILED %s: %s\n", f.Key, strings.ReplaceAll(f.Err.Error(), "\n", " "))
	}
}
