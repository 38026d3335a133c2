package config

import (
	"os"
	"path/filepath"
	"strings"
)

// Key files in encryption_keys_dir are named as create-keys --pem-dir
// writes them: <key-id><keyFilePublic> and <key-id><keyFilePrivate>.
const (
	keyFilePublic  = ".public.pem"
	keyFilePrivate = ".private.pem"
)

// readKeyDirs adds the key files of each site's encryption_keys_dir to its
// encryption_keys, after the file and the variables (either may name the
// directory): a configuration from the environment alone holds one key
// pair in its variables, and the old keys a rotation leaves (their
// private halves read the old backups and WAL, their public halves
// verify the old backups' metadata) come from the directory. The keys are
// carried as text, as the file's are: command parses them.
func (c *Config) readKeyDirs(ps *problems) {
	for _, name := range c.SiteNames() {
		if s := c.BackupSites[name]; s.EncryptionKeysDir != "" {
			s.readKeyDir(c, ps, "backup_sites."+name)
		}
	}
}

// readKeyDir reads the key files of s's encryption_keys_dir. A Secret
// that Kubernetes mounts holds each file as a link through ..data, to a
// hidden directory it replaces as a whole when the Secret changes: names
// starting with "." are not keys, and the links are followed. Any other
// file is a problem rather than skipped, so that a misnamed key file
// (key1.pub.pem) is not a key silently missing. A half that the file's
// encryption_keys or a variable also sets must be the same key: which of
// two keys would decrypt is not a choice to make quietly.
func (s *Site) readKeyDir(c *Config, ps *problems, site string) {
	p := site + ".encryption_keys_dir"
	dir := s.EncryptionKeysDir
	entries, err := os.ReadDir(dir)
	if err != nil {
		ps.add(p, "%v", err)
		return
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		file := filepath.Join(dir, name)
		id, half, ok := keyFileName(name)
		if !ok {
			ps.add(p, "%s: not named <key-id>%s or <key-id>%s (as hoard create-keys --pem-dir writes them): rename it, or keep only key files there",
				file, keyFilePublic, keyFilePrivate)
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			ps.add(p, "%v", err)
			continue
		}
		kp := site + ".encryption_keys." + id + "." + half
		pair := s.EncryptionKeys[id]
		have := &pair.Public
		if half == "private" {
			have = &pair.Private
		}
		if *have != "" {
			if strings.TrimSpace(*have) != strings.TrimSpace(string(b)) {
				by := "the configuration file"
				if v, ok := strings.CutPrefix(c.Source(kp), "env "); ok {
					by = v
				}
				ps.add(kp, "%s and %s hold different keys: keep one of them", by, file)
			}
			continue
		}
		*have = string(b)
		if s.EncryptionKeys == nil { // "encryption_keys": null in the file
			s.EncryptionKeys = map[string]EncryptionKey{}
		}
		s.EncryptionKeys[id] = pair
		c.setSource(kp, "key file "+file)
	}
}

// keyFileName splits a key file's name into its key id and half ("public"
// or "private").
func keyFileName(name string) (id, half string, ok bool) {
	if id, ok := strings.CutSuffix(name, keyFilePublic); ok && id != "" {
		return id, "public", true
	}
	if id, ok := strings.CutSuffix(name, keyFilePrivate); ok && id != "" {
		return id, "private", true
	}
	return "", "", false
}
