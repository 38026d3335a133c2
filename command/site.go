package command

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// siteEnv is what a command needs to work on one site: the loaded
// configuration, the site, and its archive.
type siteEnv struct {
	cfg     *config.Config
	name    string
	site    *config.Site
	archive *archive.Archive
	log     zerolog.Logger
}

// loadConfig loads the configuration named by --config (or HOARD_CONFIG),
// or builds it from the environment alone when none is given.
func loadConfig(c *cli.Context) (*config.Config, error) {
	if err := noConfig(c.String("config"), c.String("site"), os.Getenv); err != nil {
		return nil, err
	}
	cfg, err := config.Load(c.String("config"), os.Getenv)
	if err != nil {
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			hint := "fix the configuration; see docs/configuration.md"
			if c.String("config") == "" {
				// Without a file hoard reads HOARD_* alone: a forgotten
				// --config shows up as settings missing from the environment.
				hint = "no --config FILE was given (nor HOARD_CONFIG), so hoard read only HOARD_* variables: " +
					"pass --config FILE, or set HOARD_CONFIG"
			}
			return nil, &usageError{msg: err.Error(), hint: hint}
		}
		if c.String("config") == "" {
			return nil, usagef("pass --config FILE, or set HOARD_CONFIG", "load configuration: %v", err)
		}
		if ferr := configFileError(c.String("config"), configGiven(c.String("config"), os.Getenv), configLookup, err); ferr != nil {
			return nil, ferr
		}
		return nil, &usageError{msg: fmt.Sprintf("load configuration: %v", err)}
	}
	cfg.Warnings = append(cfg.Warnings, config.UnknownEnv(hoardEnviron(), appEnvVars(c.App))...)
	l := logger(c)
	for _, w := range cfg.Warnings {
		l.Warn().Str("file", cfg.File).Msg("configuration: " + w)
	}
	return cfg, nil
}

// harnessEnv are the HOARD_* variables of the tests, benchmarks and
// demo (internal/pgtest, internal/testio), which hoard run by them
// inherits: no warning for these.
var harnessEnv = []string{"HOARD_CACHE", "HOARD_PG_VERSIONS", "HOARD_CHAOS_LONG", "HOARD_PGHOARD_PYTHON", "HOARD_WALSTREAM_CRASH"}

// hoardEnviron is os.Environ without the test and benchmark switches
// (HOARD_TEST_*, HOARD_BENCH_*).
func hoardEnviron() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "HOARD_TEST_") || strings.HasPrefix(kv, "HOARD_BENCH_")
	})
}

// appEnvVars lists the variables the command line reads (HOARD_CONFIG,
// HOARD_LOG_LEVEL, the flags' variables of every command) and harnessEnv.
func appEnvVars(app *cli.App) []string {
	out := slices.Clone(harnessEnv)
	var walk func(flags []cli.Flag, cmds []*cli.Command)
	walk = func(flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			if df, ok := f.(cli.DocGenerationFlag); ok {
				out = append(out, df.GetEnvVars()...)
			}
		}
		for _, cmd := range cmds {
			walk(cmd.Flags, cmd.Subcommands)
		}
	}
	walk(app.Flags, app.Commands)
	return out
}

// noConfig returns a usage error when there is no configuration at all:
// no file and no HOARD_* variable but HOARD_SITE. It is what hoard run as
// PostgreSQL's restore_command or archive_command meets when the
// configuration was given as HOARD_* variables to the restore or the
// setup, not to the server: validation would report the first setting the
// empty environment lacks, for a site "default" created from nothing,
// whatever --site says.
func noConfig(path, site string, getenv func(string) string) error {
	if path != "" || slices.ContainsFunc(config.EnvSet(getenv), func(n string) bool { return n != "HOARD_SITE" }) {
		return nil
	}
	what := "no configuration"
	if site != "" {
		what = fmt.Sprintf("no configuration for site %q", site)
	}
	return usagef("pass --config FILE, or set HOARD_CONFIG or the HOARD_* variables (docs/configuration.md). "+
		"Run by PostgreSQL (restore_command, archive_command), hoard sees only the server's environment: "+
		"put --config FILE into the command, or set the variables where the server starts (its systemd unit's Environment=)",
		"%s: no --config FILE, no HOARD_CONFIG, and no HOARD_* variables in the environment", what)
}

// envSiteMismatch is the usage error for --site asked when the
// configuration comes from HOARD_* variables alone, whose one site is
// named otherwise: HOARD_SITE, or "default" without it (hoardSite "").
// --site does not rename that site: its name is in its objects' keys
// (<path_prefix>/<name>/xlog/...), and the daemon and archive_command, run
// with the same variables, read and write them under the variables' name,
// so a renamed site would be an empty archive to a restore, or WAL and
// backups stored where nothing else looks. restore writes wal-fetch --site
// NAME into restore_command: run where HOARD_SITE is missing, recovery
// stops here instead of reading another site's (missing) WAL.
func envSiteMismatch(cfg *config.Config, asked, hoardSite string) error {
	have := cfg.SiteNames()[0]
	keys := fmt.Sprintf("its objects are under %q, site %s's would be under %q",
		cfg.BackupSites[have].Prefix+"/", asked, path.Join(cfg.PathPrefix, asked)+"/")
	if hoardSite == "" {
		return usagef(fmt.Sprintf("set HOARD_SITE=%s here if that is the name the daemon and archive_command run with "+
			"(the site's objects were stored under it), or leave out --site for site %q", asked, have),
			"--site %s: no configuration file, so the HOARD_* variables make the only site, named by HOARD_SITE, "+
				"which is not set: %q (%s)", asked, have, keys)
	}
	return usagef(fmt.Sprintf("use one name, the one the daemon and archive_command run with (the site's objects were stored under it): "+
		"set HOARD_SITE=%s, or leave out --site", asked),
		"--site %s and HOARD_SITE=%s name different sites: no configuration file, so the HOARD_* variables make the only site, "+
			"named by HOARD_SITE (%s)", asked, hoardSite, keys)
}

// openSite loads the configuration and opens the selected site's archive.
// The caller closes env.archive.Store.
func openSite(c *cli.Context) (*siteEnv, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	name, site, err := cfg.Site(c.String("site"))
	if err != nil {
		if cfg.File == "" && len(cfg.BackupSites) == 1 && errors.Is(err, config.ErrUnknownSite) {
			return nil, envSiteMismatch(cfg, c.String("site"), os.Getenv("HOARD_SITE"))
		}
		return nil, usagef("pass --site NAME", "%v", err)
	}
	a, err := siteArchive(c, cfg, name, site, "site")
	if err != nil {
		return nil, err
	}
	return &siteEnv{
		cfg:     cfg,
		name:    name,
		site:    site,
		archive: a,
		log:     logger(c).With().Str(logSite, name).Logger(),
	}, nil
}

// openSiteToWrite is openSite for command cmd, which writes to the site's
// store: run as root it is refused as refuseRootStore says (the store
// closed again). The caller closes env.archive.Store.
func openSiteToWrite(c *cli.Context, cmd string) (*siteEnv, error) {
	env, err := openSite(c)
	if err != nil {
		return nil, err
	}
	if err := refuseRootStore(c, os.Geteuid(), cmd, env.site.ObjectStorage); err != nil {
		_ = env.archive.Store.Close()
		return nil, err
	}
	if err := checkUploadKey(env.site); err != nil {
		_ = env.archive.Store.Close()
		return nil, err
	}
	return env, nil
}

// checkUploadKey refuses to write to a site that has encryption keys but
// no encryption_key_id (a typo such as "encryption_key_idd", or a key id
// removed to turn encryption off): it would store its WAL and backups
// unencrypted, and a site with encryption keys reads only encrypted
// objects (siteCodec), so restore, wal-fetch and verify would refuse them.
// Reading such a site is fine: a restore host holds private keys only.
func checkUploadKey(site *config.Site) error {
	if site.EncryptionKeyID != "" || len(site.EncryptionKeys) == 0 {
		return nil
	}
	return usagef("set encryption_key_id (or HOARD_ENCRYPTION_KEY_ID) to the key new uploads use, whose public key is in encryption_keys",
		"backup_sites.%s.encryption_key_id: not set, but encryption_keys lists keys (%s): this site reads only encrypted objects, "+
			"so what it stored unencrypted could not be restored", site.Name, strings.Join(sortedKeys(site.EncryptionKeys), ", "))
}

// siteArchive opens the archive of site name of cfg: its codec, and its
// storage with the rate limits in force. what names the site in errors
// ("site", "target site").
func siteArchive(c *cli.Context, cfg *config.Config, name string, site *config.Site, what string) (*archive.Archive, error) {
	codec, err := siteCodec(cfg, site)
	if err != nil {
		return nil, err
	}
	limits, err := rateLimits(c, site)
	if err != nil {
		return nil, err
	}
	st, err := openStore(c.Context, site.ObjectStorage, limits, logger(c).With().Str(logSite, name).Logger())
	if err != nil {
		return nil, fmt.Errorf("open storage of %s %s: %w", what, name, err)
	}
	return &archive.Archive{Store: st, Codec: codec, Layout: archive.Layout{Prefix: site.Prefix}, Site: name,
		StoreID: site.ObjectStorage.StorageConfig().Location(), Log: logger(c)}, nil
}

// missingRoot says, for a site on local storage whose directory does not
// exist, which directory and which key to check: a mistyped directory
// reads as an empty archive (writers create it on their first object),
// so "no basebackups" alone would hide the typo. It returns "" otherwise.
func missingRoot(site *config.Site) string {
	o := site.ObjectStorage
	if o.URL != "" || o.Type != "local" {
		return ""
	}
	if _, err := os.Stat(o.Directory); !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	key := "object_storage.directory"
	if o.Implicit {
		key = "backup_location"
	}
	return fmt.Sprintf("the local storage directory %s does not exist: check %s", o.Directory, key)
}

// siteCodec builds the object codec from the global compression settings
// and the site's keys. Private keys are optional: writers need only the
// public key, readers only the private keys of the objects they read. The
// public keys of every key id, not only encryption_key_id's, verify what
// was signed under them: after a rotation, a host holding public keys only
// (the daemon, retention) authenticates the backups of the old key with
// its public key. A site with any encryption key reads only encrypted
// objects, but for those the storage wrote before
// unencrypted_objects_before.
func siteCodec(cfg *config.Config, site *config.Site) (*archive.Codec, error) {
	host, _ := os.Hostname()
	codec := &archive.Codec{
		Compression:       cfg.Compression.Algorithm,
		Level:             cfg.Compression.Level,
		PrivateKeys:       map[string]*rsa.PrivateKey{},
		PublicKeys:        map[string]*rsa.PublicKey{},
		Host:              host,
		RequireEncryption: site.EncryptionKeyID != "" || len(site.EncryptionKeys) > 0,
	}
	if v := site.UnencryptedObjectsBefore; v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, usagef("", "backup_sites.%s.unencrypted_objects_before: %v", site.Name, err)
		}
		codec.UnencryptedBefore = t
	}
	for _, id := range sortedKeys(site.EncryptionKeys) {
		k := site.EncryptionKeys[id]
		if k.Private != "" {
			priv, err := crypto.ParsePrivateKeyPEM(k.Private)
			if err != nil {
				return nil, usagef("", "backup_sites.%s.encryption_keys.%s.private: %v", site.Name, id, err)
			}
			codec.PrivateKeys[id] = priv
		}
		if k.Public != "" {
			pub, err := crypto.ParsePublicKeyPEM(k.Public)
			if err != nil {
				return nil, usagef("", "backup_sites.%s.encryption_keys.%s.public: %v", site.Name, id, err)
			}
			codec.PublicKeys[id] = pub
		}
		if priv, ok := codec.PrivateKeys[id]; ok && k.Public != "" && !codec.PublicKeys[id].Equal(&priv.PublicKey) {
			return nil, pairMismatch(cfg, site, id)
		}
	}
	if id, _, ok := site.EncryptionKey(); ok {
		pub := codec.PublicKeys[id]
		if pub == nil {
			return nil, usagef("", "backup_sites.%s.encryption_keys.%s.public: required: encryption_key_id %q uploads with this key", site.Name, id, id)
		}
		codec.KeyID = id
		codec.PublicKey = pub
	}
	return codec, nil
}

// pairMismatch is the error of a key id whose public and private halves
// are from two key pairs (the public key of one pasted beside the private
// key of another): what is stored under the public key, the private key
// cannot read, and that would show only at a restore, as damage
// (restore's automatic choice passes over such backups) or as WAL that
// recovery cannot fetch. The parsers validate a private key (its primes
// make its modulus), so a public key equal to the private key's is its
// pair. It names each half's key or variable.
func pairMismatch(cfg *config.Config, site *config.Site, id string) error {
	p := "backup_sites." + site.Name + ".encryption_keys." + id
	return usagef("configure the private key of the pair the public key comes from, both from one hoard create-keys "+
		"(a new pair needs a new key id: old backups and WAL stay readable only with the pair they were stored with)",
		"%s: the public and private keys are from different key pairs (public from %s, private from %s): "+
			"what is stored with the public key could not be restored with the private one", p, keySource(cfg, p+".public"), keySource(cfg, p+".private"))
}

// keySource names where the value at a JSON path came from: the
// variable that set it, the key file it was read from
// (encryption_keys_dir), else the path.
func keySource(cfg *config.Config, p string) string {
	src := cfg.Source(p)
	if v, ok := strings.CutPrefix(src, "env "); ok {
		return v
	}
	if v, ok := strings.CutPrefix(src, "key file "); ok {
		return v
	}
	return p
}

// openStore opens the storage a site's object_storage describes, with its
// rate limits and retries of transient errors (outside the limits, so
// that a retry still sees the caller's seekable reader). A local store's
// listings tell log of each link, and each sidecar without its object
// file, they leave out (storage.Local.OnSkip), once per key for the
// store's life: the daemon lists again and again.
// A Swift store tells log of each object it deletes or replaces without
// the segments its manifest names (storage.Swift.OnSkip).
func openStore(ctx context.Context, o config.ObjectStorage, limits storage.RateLimits, log zerolog.Logger) (storage.Store, error) {
	st, err := storage.Open(ctx, o.StorageConfig())
	if err != nil {
		return nil, err
	}
	if l, ok := st.(*storage.Local); ok {
		var seen sync.Map
		l.OnSkip = func(key, why string) {
			if _, dup := seen.LoadOrStore(key, true); !dup {
				log.Warn().Str(logKey, key).Str("why", why).Msg("listing leaves out an entry of the storage directory")
			}
		}
	}
	if sw, ok := st.(*storage.Swift); ok {
		sw.OnSkip = func(key, why string) {
			log.Warn().Str(logKey, key).Str("why", why).Msg("swift object deleted or replaced without the segments its manifest names")
		}
	}
	return storage.WithRetry(storage.WithRateLimit(st, limits), storage.RetryOptions{}), nil
}

// openSiteAll is openSite followed by openMovedFrom, for the commands that
// see a site together with the sites it moved from. The returned func
// closes every store it opened.
func openSiteAll(c *cli.Context) (*siteEnv, func(), error) {
	env, err := openSite(c)
	if err != nil {
		return nil, nil, err
	}
	closeOlder, err := openMovedFrom(c, env)
	if err != nil {
		_ = env.archive.Store.Close()
		return nil, nil, err
	}
	return env, func() { closeOlder(); _ = env.archive.Store.Close() }, nil
}

// openMovedFrom opens the archives of the site's moved_from sites into
// env.archive.MovedFrom, so that listing, restore, wal-fetch and retention
// see them. A site still in the configuration uses its own storage, keys
// and prefix; a site no longer configured is looked for in this site's
// storage under its default prefix <path_prefix>/<name>. The returned func
// closes the stores it opened.
func openMovedFrom(c *cli.Context, env *siteEnv) (func(), error) {
	var out []*archive.Archive
	var opened []io.Closer
	closeAll := func() {
		for _, s := range opened {
			_ = s.Close()
		}
	}
	for _, name := range env.site.MovedFrom {
		s, ok := env.cfg.BackupSites[name]
		if !ok {
			out = append(out, &archive.Archive{
				Store:   env.archive.Store,
				StoreID: env.archive.StoreID,
				Codec:   env.archive.Codec,
				Layout:  archive.Layout{Prefix: path.Join(env.cfg.PathPrefix, name)},
				Site:    name,
				Log:     env.archive.Log,
			})
			continue
		}
		codec, err := siteCodec(env.cfg, s)
		if err != nil {
			closeAll()
			return nil, err
		}
		// The new site usually holds the keys of the old one's backups.
		for id, k := range env.archive.Codec.PrivateKeys {
			if _, ok := codec.PrivateKeys[id]; !ok {
				codec.PrivateKeys[id] = k
			}
		}
		for id, k := range env.archive.Codec.PublicKeys {
			if _, ok := codec.PublicKeys[id]; !ok {
				codec.PublicKeys[id] = k
			}
		}
		// WAL and backups of an old site are restored into this one: an
		// old site without keys must not be a way around this site's
		// encryption, so it reads as strictly as this site does.
		if env.archive.Codec.RequireEncryption && !codec.RequireEncryption {
			codec.RequireEncryption = true
			codec.UnencryptedBefore = env.archive.Codec.UnencryptedBefore
		}
		limits, err := rateLimits(c, s)
		if err != nil {
			closeAll()
			return nil, err
		}
		st, err := openStore(c.Context, s.ObjectStorage, limits, logger(c).With().Str(logSite, name).Logger())
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("open storage of site %s (moved_from of %s): %w", name, env.name, err)
		}
		opened = append(opened, st)
		out = append(out, &archive.Archive{Store: st, Codec: codec, Layout: archive.Layout{Prefix: s.Prefix}, Site: name,
			StoreID: s.ObjectStorage.StorageConfig().Location(), Log: env.archive.Log})
	}
	env.archive.MovedFrom = out
	return closeAll, nil
}
