package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

func createKeysCommand() *cli.Command {
	return &cli.Command{
		Name:  "create-keys",
		Usage: "make an RSA key pair for encrypting backups",
		Description: "Makes an RSA key pair (public exponent 65537) in PGHoard's PEM forms: the private key\n" +
			"as unencrypted PKCS#8, the public key as SubjectPublicKeyInfo. With --config it adds the\n" +
			"pair to the site's encryption_keys in that file and makes it the site's encryption_key_id;\n" +
			"an existing key id is refused. The file (where --config is a link, the file it names; the\n" +
			"link stays) is replaced atomically (through a new file in its directory, which the user\n" +
			"must be able to write), fsynced, and keeps its owner, group\n" +
			"and mode, less any permission for others (it now holds a private key), so a service user\n" +
			"that could read it still can after `sudo hoard create-keys`.\n" +
			"Without a configuration file it prints a JSON snippet to paste into one; with --pem-dir\n" +
			"it writes ID.public.pem (mode 0640: whoever holds the public key and can write the\n" +
			"storage can plant objects hoard takes for its own, see docs/security.md) and\n" +
			"ID.private.pem (mode 0600) into that directory\n" +
			"instead, the files a container platform mounts from a secret for\n" +
			"HOARD_ENCRYPTION_PUBLIC_KEY_FILE and HOARD_ENCRYPTION_PRIVATE_KEY_FILE, or, the same\n" +
			"names for every key id, as one directory for HOARD_ENCRYPTION_KEYS_DIR (a rotation keeps\n" +
			"the old key's files beside the new: run it again with the new --key-id); an existing file\n" +
			"of either name is refused, also one another create-keys writes at the same moment (init\n" +
			"containers on a shared volume): one run wins, the others fail naming the file, and no\n" +
			"key file is ever replaced. The private file is written first; when the public one then\n" +
			"cannot be (a file of its name appeared, a full disk), the private one is removed again.\n" +
			"A run killed between the two leaves the private file alone (nothing is encrypted to\n" +
			"it): a rerun names it, to be removed.\n\n" +
			"The daemon (retention included), basebackup and wal-push need only the public key;\n" +
			"restore, wal-fetch and verify need the private key. Keep a copy of the private key\n" +
			"outside the backup host. A site with encryption keys reads only encrypted objects (see\n" +
			"unencrypted_objects_before in docs/configuration.md for archives from before).\n\n" +
			"To rotate, run it again with a new --key-id: objects record their key id, and old keys\n" +
			"stay in encryption_keys to read (private) and authenticate (public) what was stored\n" +
			"under them. On hosts with public keys only, add the new public key and keep the old\n" +
			"ones'. Keep old private keys while the site holds timeline history files stored under\n" +
			"them, which retention never deletes, or delta objects a delta backup still reuses\n" +
			"(docs/security.md, Rotation; hoard verify --full names both).",
		Flags: []cli.Flag{
			// Not Required: urfave/cli would print the whole help and exit 1.
			&cli.StringFlag{Name: "key-id", Usage: "name of the new key `ID` (required)"},
			&cli.IntFlag{Name: "bits", Usage: "RSA key size in bits", Value: 3072},
			&cli.StringFlag{Name: "pem-dir", Usage: "write the pair as ID.public.pem and ID.private.pem into `DIR` instead of JSON"},
		},
		Action: runCreateKeys,
	}
}

func runCreateKeys(c *cli.Context) error {
	id := c.String("key-id")
	if id == "" {
		return usagef("pass --key-id ID, a name for the new key (key1, or today's date)", "--key-id is required")
	}
	bits := c.Int("bits")
	if bits < 2048 || bits > 16384 {
		return usagef("use 2048, 3072 (the default) or 4096", "--bits %d is out of range", bits)
	}
	key, err := crypto.GenerateKey(bits)
	if err != nil {
		return err
	}
	privPEM, err := crypto.EncodePrivateKeyPEM(key)
	if err != nil {
		return err
	}
	pubPEM, err := crypto.EncodePublicKeyPEM(&key.PublicKey)
	if err != nil {
		return err
	}
	path := c.String("config")
	if dir := c.String("pem-dir"); dir != "" {
		if path != "" {
			return usagef("drop --config to write PEM files, or --pem-dir to add the pair to the file", "--pem-dir and --config both given")
		}
		return writePEMs(c, dir, id, pubPEM, privPEM)
	}
	if path == "" {
		site := c.String("site")
		if site == "" {
			site = config.DefaultSite
		}
		snippet := map[string]any{
			"backup_sites": map[string]any{
				site: map[string]any{
					"encryption_key_id": id,
					"encryption_keys": map[string]any{
						id: map[string]string{"public": pubPEM, "private": privPEM},
					},
				},
			},
		}
		out, err := json.MarshalIndent(snippet, "", "    ")
		if err != nil {
			return err
		}
		printf(c.App.Writer, "%s\n", out)
		printf(c.App.ErrWriter, "Add this to your configuration file. The daemon needs only the public key.\n")
		return nil
	}
	if err := addEncryptionKey(path, c.String("site"), id, pubPEM, privPEM); err != nil {
		if errors.Is(err, errKeyExists) {
			return usagef("choose another --key-id; old keys stay to read old backups", "%v", err)
		}
		return addKeyError(id, path, err)
	}
	l := logger(c)
	l.Info().Str("key_id", id).Str("file", path).Msg("key pair added; new uploads will be encrypted with it")
	return nil
}

// addKeyError wraps err, the failure to add key id to the configuration
// file path. The file is replaced through a new one written beside it, so
// a user who may write the file but not its directory is refused; the
// error then says to run create-keys as one who can (root keeps the
// file's owner and mode), with a command line quoted for the shell.
func addKeyError(id, path string, err error) error {
	if errors.Is(err, errKeepOwner) {
		return fmt.Errorf("add key %s to %s: %w\n  hint: only root gives the new file another user's ownership, "+
			"and the file's owner only a group it is a member of (a file root gave to its user with chown alone "+
			"keeps root's group): run it as root (sudo hoard --config %s create-keys --key-id %s keeps the file's "+
			"owner, group and mode), or give the file a group of its owner's first (chgrp) and run it as the owner",
			id, path, err, restore.ShellQuote(path), restore.ShellQuote(id))
	}
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("add key %s to %s: %w", id, path, err)
	}
	return fmt.Errorf("add key %s to %s: %w\n  hint: create-keys writes the new file in %s before it replaces the old one, "+
		"so it needs write permission there, not only on the file: run it as a user who has it "+
		"(sudo hoard --config %s create-keys --key-id %s keeps the file's owner, group and mode)",
		id, path, err, filepath.Dir(path), restore.ShellQuote(path), restore.ShellQuote(id))
}

// afterPEMCreate, when set, is called by writePEMs after it created each
// file; tests make another file appear there.
var afterPEMCreate func(path string)

// writePEMs writes the key pair id into dir as id.private.pem (mode 0600)
// and id.public.pem (0640: nothing for others, as a configuration file
// holding it; docs/security.md says why), each whole or absent after a crash. Either
// name taken is a usage error, before anything is written: a key file
// replaced would leave the backups of its key unreadable. The check does
// not close the race with another run writing the same id at once (init
// containers on a shared volume): the files are created without
// replacing (storage.CreateFileAtomic), so the run that comes second
// fails, naming the file the first one wrote.
//
// The private file comes first: a public key whose private half was never
// written would have backups encrypted that nothing can read. When the
// public file cannot be created after it (a file of that name appeared
// since the check, a full disk), the private file this run created is
// removed again, the directory fsynced: nothing is encrypted to a key
// whose public half is not there, and a pair of which only one half is
// ours is never left. A crash between the two files leaves the private
// file alone; a rerun with the same id says so and what to do.
func writePEMs(c *cli.Context, dir, id, pubPEM, privPEM string) error {
	if strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		return usagef("choose a --key-id without a path separator", "--key-id %q cannot name a file in --pem-dir", id)
	}
	files := []struct {
		name string
		pem  string
		mode os.FileMode
	}{
		{id + ".private.pem", privPEM, 0o600},
		{id + ".public.pem", pubPEM, 0o640},
	}
	var exists []bool
	for _, f := range files {
		_, err := os.Lstat(filepath.Join(dir, f.name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write key %s: %w", id, err)
		}
		exists = append(exists, err == nil)
	}
	switch {
	case exists[0] && !exists[1]:
		return usagef("a create-keys stopped between its two files (or one is running now), or the public file was removed: "+
			"unless another create-keys runs, remove "+filepath.Join(dir, files[0].name)+" (nothing can have been encrypted to it "+
			"without its public file) and run again, or choose another --key-id",
			"%s exists without %s", filepath.Join(dir, files[0].name), files[1].name)
	case exists[0] || exists[1]:
		p := filepath.Join(dir, files[0].name)
		if !exists[0] {
			p = filepath.Join(dir, files[1].name)
		}
		return usagef("choose another --key-id or --pem-dir; old keys stay to read old backups", "%s exists", p)
	}
	for i, f := range files {
		mode := f.mode
		p := filepath.Join(dir, f.name)
		err := storage.CreateFileAtomic(p, strings.NewReader(f.pem), func(tmp *os.File) error { return tmp.Chmod(mode) })
		if err != nil && i > 0 {
			if rerr := removeCreated(dir, files[0].name); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		if errors.Is(err, fs.ErrExist) {
			return usagef("choose another --key-id or --pem-dir; old keys stay to read old backups (another create-keys or program wrote it meanwhile)", "%s exists", p)
		}
		if err != nil {
			return fmt.Errorf("write key %s into %s: %w", id, dir, err)
		}
		if afterPEMCreate != nil {
			afterPEMCreate(p)
		}
	}
	printf(c.App.ErrWriter, "Wrote %s and %s. Give the daemon only the public key (HOARD_ENCRYPTION_PUBLIC_KEY_FILE,\n"+
		"HOARD_ENCRYPTION_KEY_ID=%s); restore, wal-fetch and verify need the private key too (HOARD_ENCRYPTION_PRIVATE_KEY_FILE).\n",
		filepath.Join(dir, files[1].name), filepath.Join(dir, files[0].name), id)
	return nil
}

// removeCreated removes the file name that writePEMs created in dir and
// fsyncs dir, so that the removal is durable before the error is
// reported.
func removeCreated(dir, name string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("remove %s: %w", filepath.Join(dir, name), err)
	}
	defer root.Close()
	if err := root.Remove(name); err != nil {
		return fmt.Errorf("remove %s: %w", filepath.Join(dir, name), err)
	}
	return storage.SyncRoot(root)
}
