package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/hoardbackup/hoard/storage"
)

// EnvVar documents one HOARD_* environment override.
type EnvVar struct {
	Name string // variable name
	// Key is the JSON key it overrides; site keys are relative to the
	// selected site ("backup_sites.<site>.").
	Key  string
	Site bool // applies to the selected site
	// Storage is the storage type a HOARD_<TYPE>_* variable applies to
	// (one of storage.Types); "" for the others.
	Storage string
	// File is true when NAME_FILE is also accepted: the value is read from
	// that file (one trailing newline dropped), for container secrets.
	File bool
	Help string
}

// EnvVars lists every environment override, from the schema. They are
// applied after the file, so they win over it. Site overrides apply to the
// site named by HOARD_SITE, or to the only site. With no config file the
// site is created, named HOARD_SITE or "default". Storage comes from
// HOARD_STORAGE_URL, or from HOARD_STORAGE_TYPE and the HOARD_<TYPE>_<KEY>
// variables of that type (HOARD_S3_REGION, HOARD_GCS_BUCKET_NAME).
// HOARD_CONFIG (the file path) is read by the command line, and libpq's PG*
// variables by pgconn.ParseConfig.
var EnvVars = envVars()

// envVars lists HOARD_SITE, the variables of the schema's rows, then the
// HOARD_<TYPE>_<KEY> variables of each storage type: KEY is the key in
// capitals without its "aws_" or "azure_" (storageEnv gives the prefix).
// It names the variable of each row with envDoc and no env (see key.env).
func envVars() []EnvVar {
	out := []EnvVar{{Name: "HOARD_SITE", Help: "site the site overrides apply to; with no file, the name of the site created " +
		"(default \"default\"), in its object keys: the same for the daemon, archive_command and restore_command; --site does not rename it"}}
	var site []EnvVar // after the global ones
	walk("", globalKeys, reflect.ValueOf(New()).Elem(), false, func(p string, k *key, f reflect.Value) bool {
		fill(k, f)
		p, inSite := strings.CutPrefix(p, "backup_sites."+sitePlaceholder+".") // site keys are relative to the site
		if k.env == "" && k.envDoc != "" {
			k.env = "HOARD_" + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
		}
		dst := &out
		if inSite {
			dst = &site
		}
		if k.env != "" {
			*dst = append(*dst, EnvVar{Name: k.env, Key: p, Site: inSite, File: k.file || k.secret, Help: k.envDoc})
		}
		return true
	})
	out = append(out, site...)
	for _, typ := range storage.Types {
		for _, k := range storageKeys {
			if k.env != "" || !k.accepts(typ) {
				continue
			}
			name := strings.TrimPrefix(strings.TrimPrefix(k.name, "aws_"), "azure_")
			out = append(out, EnvVar{
				Name:    storageEnv(typ) + strings.ToUpper(name),
				Key:     "object_storage." + k.name,
				Site:    true,
				Storage: typ,
				File:    k.secret,
				Help:    typ + " storage: " + k.name,
			})
		}
	}
	return out
}

// EnvSet returns the names of the variables of EnvVars set in getenv, in
// EnvVars' order: NAME_FILE where that is the one set. hoard run by
// PostgreSQL (restore_command, archive_command) sees the server's
// environment, not its caller's: these are the names it must find there.
func EnvSet(getenv func(string) string) []string {
	var out []string
	for _, ev := range EnvVars {
		switch {
		case getenv(ev.Name) != "":
			out = append(out, ev.Name)
		case ev.File && getenv(ev.Name+"_FILE") != "":
			out = append(out, ev.Name+"_FILE")
		}
	}
	return out
}

// UnknownEnv returns a warning for each HOARD_* variable of environ
// ("NAME=value", as os.Environ gives) that is none of EnvVars (nor its
// NAME_FILE where that is taken) nor one of others (the command line's
// variables), with the name it most likely misspells. Such a variable is
// ignored, as an unknown key is, but not silently: HOARD_BASEBACKUP_CONT=30
// left basebackup_count at its default, 2, and retention deleted the
// backups past it. Values are never named: they may be secrets.
func UnknownEnv(environ, others []string) []string {
	known := map[string]bool{}
	var names []string // candidates for a suggestion
	add := func(n string) {
		if !known[n] {
			known[n] = true
			names = append(names, n)
		}
	}
	for _, ev := range EnvVars {
		add(ev.Name)
		if ev.File {
			add(ev.Name + "_FILE")
		}
	}
	for _, n := range others {
		add(n)
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "HOARD_") || known[name] {
			continue
		}
		w := name + ": unknown variable"
		if base, ok := strings.CutSuffix(name, "_FILE"); ok && known[base] {
			w += fmt.Sprintf(" (%s is read from the variable itself, not from a file)", base)
		} else if near := nearest(names, name); near != "" {
			w += fmt.Sprintf(" (did you mean %s?)", near)
		}
		out = append(out, w)
	}
	return out
}

// nearest returns the name of names that name is most likely a typo of
// (at most two letters added, removed or changed, and fewer than half of
// name's), or "" when none is that close: suggest's rule, for a list of
// names.
func nearest(names []string, name string) string {
	best, bestDist := "", min(3, (len(name)+1)/2)
	for _, n := range names {
		if d := editDistance(name, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// envReader reads overrides, resolving NAME_FILE variants.
type envReader struct {
	getenv func(string) string
	ps     *problems
	file   map[string]bool
}

// get returns the value of name (or of the file named by name_FILE) and
// whether it was set.
func (e *envReader) get(name string) (string, bool) {
	v := e.getenv(name)
	if !e.file[name] {
		return v, v != ""
	}
	fv := e.getenv(name + "_FILE")
	switch {
	case v != "" && fv != "":
		e.ps.add(name, "set both %s and %s_FILE", name, name)
		return "", false
	case fv != "":
		b, err := os.ReadFile(fv)
		if err != nil {
			e.ps.add(name+"_FILE", "%v", err)
			return "", false
		}
		// Mounted secrets and `echo x > file` end in one newline.
		s := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(s, "\r"), true
	}
	return v, v != ""
}

// anySite tells whether a variable of the site's keys is set.
func (e *envReader) anySite() bool {
	return slices.ContainsFunc(EnvVars, func(ev EnvVar) bool { return ev.Site && e.isSet(ev.Name) })
}

// isSet tells whether name, or name_FILE where that is taken, is set.
func (e *envReader) isSet(name string) bool {
	return e.getenv(name) != "" || e.file[name] && e.getenv(name+"_FILE") != ""
}

// set applies the variable name, if set, to the field f at path.
func (e *envReader) set(c *Config, path, name string, f reflect.Value) {
	if s, ok := e.get(name); ok {
		e.store(c, path, name, s, f)
	}
}

// store parses the text s of the variable name into the field f at path.
func (e *envReader) store(c *Config, path, name, s string, f reflect.Value) {
	kd, null := kindOf(f.Type())
	x, err := kd.parseEnv(s, null)
	if err != nil {
		e.ps.add(name, "%v", err)
		return
	}
	set(f, x)
	c.setSource(path, e.source(name))
}

// source is config show's source of a value of the variable name: "env
// NAME_FILE" when it was read from the file that names (get), the
// variable that is set.
func (e *envReader) source(name string) string {
	if e.file[name] && e.getenv(name) == "" && e.getenv(name+"_FILE") != "" {
		return "env " + name + "_FILE"
	}
	return "env " + name
}

func applyEnv(c *Config, getenv func(string) string, ps *problems) {
	e := &envReader{getenv: getenv, ps: ps, file: map[string]bool{}}
	for _, ev := range EnvVars {
		e.file[ev.Name] = ev.File
	}
	e.object(c, "", globalKeys, reflect.ValueOf(c).Elem())
	name, s := envSite(c, e)
	if s == nil {
		return
	}
	p := "backup_sites." + name
	e.object(c, p, siteKeys, reflect.ValueOf(s).Elem())
	if strings.HasPrefix(c.sources[p+".slot"], "env ") {
		// HOARD_SLOT names the slot of every node, not only of those
		// naming none.
		for i := range s.Nodes {
			s.Nodes[i].Slot = s.Slot
		}
	}
	e.storage(c, p, s)
	e.keyPair(c, p, s)
}

// object applies the variables of table's rows to the struct v, and those
// of its objects that are always there (compression). object_storage and
// encryption_keys have their own rules (storage, keyPair).
func (e *envReader) object(c *Config, path string, table []key, v reflect.Value) {
	walk(path, table, v, false, func(p string, k *key, f reflect.Value) bool {
		if k.env != "" {
			e.set(c, p, k.env, f)
		}
		return fixed(f)
	})
}

// storage applies HOARD_STORAGE_URL or HOARD_STORAGE_TYPE (each replaces
// the file's object_storage, keeping its prefix), HOARD_STORAGE_PREFIX,
// then the HOARD_<TYPE>_* variables, which must match the storage type in
// effect.
func (e *envReader) storage(c *Config, site string, s *Site) {
	p := site + ".object_storage"
	urlVar, typeVar := lookup(storageKeys, "url").env, lookup(storageKeys, "storage_type").env
	url, hasURL := e.get(urlVar)
	typ, hasType := e.get(typeVar)
	switch {
	case hasURL && hasType:
		e.ps.add(typeVar, "set either %s or %s, not both", urlVar, typeVar)
	case hasURL:
		s.ObjectStorage = newObjectStorage(StorageURL, s.ObjectStorage.Prefix)
		s.ObjectStorage.URL = url
		c.setSource(p, e.source(urlVar))
	case hasType:
		if !knownType(e.ps, typeVar, typ) {
			break
		}
		s.ObjectStorage = newObjectStorage(typ, s.ObjectStorage.Prefix)
		c.setSource(p, "env "+typeVar)
	}
	v := reflect.ValueOf(&s.ObjectStorage).Elem()
	prefix := lookup(storageKeys, "prefix")
	e.set(c, join(p, prefix.name), prefix.env, v.FieldByName(prefix.field))
	for _, ev := range EnvVars {
		if ev.Storage == "" || !e.isSet(ev.Name) {
			continue
		}
		if have := s.ObjectStorage.Type; have != ev.Storage {
			if have == "" {
				have = "not set"
			}
			e.ps.add(ev.Name, "applies to %s storage, but the storage type is %s: set %s=%s", ev.Storage, have, typeVar, ev.Storage)
			continue
		}
		k := lookup(storageKeys, strings.TrimPrefix(ev.Key, "object_storage."))
		e.set(c, site+"."+ev.Key, ev.Name, v.FieldByName(k.field))
	}
}

// keyPair applies HOARD_ENCRYPTION_PUBLIC_KEY and _PRIVATE_KEY to the key
// pair encryption_key_id names.
func (e *envReader) keyPair(c *Config, site string, s *Site) {
	for _, k := range lookup(siteKeys, "encryption_keys").keys {
		text, ok := e.get(k.env)
		if !ok {
			continue
		}
		id := s.EncryptionKeyID
		if id == "" {
			e.ps.add(k.env, "needs HOARD_ENCRYPTION_KEY_ID (or encryption_key_id in the file)")
			continue
		}
		pair := s.EncryptionKeys[id]
		e.store(c, join(site, "encryption_keys."+id+"."+k.name), k.env, text, reflect.ValueOf(&pair).Elem().FieldByName(k.field))
		s.EncryptionKeys[id] = pair
	}
}

// envSite picks the site the overrides apply to, creating it when the
// configuration has no site and no file (or HOARD_SITE names it). It
// returns nil when there is nothing to apply or no site can be chosen (a
// problem is recorded then).
func envSite(c *Config, e *envReader) (string, *Site) {
	want := e.getenv("HOARD_SITE")
	if len(c.BackupSites) == 0 && (c.File == "" || want != "") {
		// No source is recorded for the site: HOARD_SITE names it, and
		// each of its values is its default until a variable sets it
		// (Source reports a path's nearest recorded parent).
		name := cmp.Or(want, DefaultSite)
		s := newObject(reflect.TypeFor[*Site](), siteKeys).Interface().(*Site) // finish names it
		c.BackupSites[name] = s
		return name, s
	}
	if len(c.BackupSites) == 0 || !e.anySite() {
		return "", nil
	}
	name, s, err := c.Site(want)
	switch names := strings.Join(c.SiteNames(), ", "); {
	case errors.Is(err, ErrUnknownSite):
		e.ps.add("HOARD_SITE", "site %q not in backup_sites (have: %s)", want, names)
	case err != nil:
		e.ps.add("HOARD_SITE", "required to apply HOARD_* site overrides: config has sites %s", names)
	}
	return name, s
}
