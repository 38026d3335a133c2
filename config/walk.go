package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// The decoder's field tables are the one list of the keys hoard reads. To
// document them (Keys) and to print a loaded configuration (Values), the
// tables are walked instead of decoded: each field is called with
// walkValue{} and reports its JSON path, its type and the value its target
// holds. On a fresh New() that value is the default.

// walkValue stands in for a JSON value while walking the field tables.
type walkValue struct{}

// walker collects what the fields report.
type walker struct {
	// defaults is true for the key registry: one placeholder site and key
	// id, optional objects walked with their defaults. False walks the
	// sites, keys and objects a loaded configuration has.
	defaults bool
	entries  []walkEntry
}

type walkEntry struct {
	path, typ string
	val       any
}

// Placeholders for names in the key registry's paths.
const (
	sitePlaceholder = "<site>"
	keyPlaceholder  = "<key-id>"
)

func (w *walker) add(path, typ string, val any) {
	if path == "" || (!w.defaults && typ == "object") {
		return
	}
	w.entries = append(w.entries, walkEntry{path: path, typ: typ, val: val})
}

// walking tells whether v is the walk stand-in rather than JSON.
func (d *decoder) walking(v any) bool {
	_, ok := v.(walkValue)
	return ok && d.walk != nil
}

// walkValues tells whether a loaded configuration is being walked.
func (d *decoder) walkValues(v any) bool { return d.walking(v) && !d.walk.defaults }

// walked reports a leaf field when walking and returns true; it returns
// false when v is real JSON to decode.
func (d *decoder) walked(path string, v any, typ string, val any) bool {
	if !d.walking(v) {
		return false
	}
	d.walk.add(path, typ, val)
	return true
}

func sortedFieldKeys(m map[string]fieldFunc) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (d *decoder) walkSites(path string) {
	d.walk.add(path, "object", nil)
	if d.walk.defaults {
		d.object(join(path, sitePlaceholder), walkValue{}, d.siteFields(newSite(sitePlaceholder)))
		return
	}
	for _, name := range d.c.SiteNames() {
		d.object(join(path, name), walkValue{}, d.siteFields(d.c.BackupSites[name]))
	}
}

func (d *decoder) walkKeys(path string, s *Site) {
	d.walk.add(path, "object", nil)
	ids := sortedKeyIDs(s.EncryptionKeys)
	if d.walk.defaults {
		ids = []string{keyPlaceholder}
	}
	for _, id := range ids {
		k := s.EncryptionKeys[id]
		d.object(join(path, id), walkValue{}, map[string]fieldFunc{
			"public":  d.str(&k.Public),
			"private": d.str(&k.Private),
		})
	}
}

func (d *decoder) walkNodes(path string, s *Site) {
	if d.walk.defaults {
		d.walk.add(path, "array", nil)
		return
	}
	for i, n := range s.Nodes {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.walk.add(p, "connection string", n.Redacted())
		if n.Slot != "" {
			d.walk.add(p+".slot", "string", n.Slot)
		}
	}
}

// walkStorage reports object_storage: in the registry every key of every
// storage type (once), for a loaded configuration the keys of its type.
func (d *decoder) walkStorage(path string, o *ObjectStorage) {
	d.walk.add(path, "object", nil)
	types := []string{o.StorageType}
	if d.walk.defaults {
		types = []string{StorageLocal, StorageS3, StorageGoogle, StorageAzure, StorageURL}
	}
	seen := map[string]bool{}
	for _, typ := range types {
		x := ObjectStorage{StorageType: typ, IsSecure: typ == StorageAzure}
		if !d.walk.defaults {
			x = *o
		}
		targets := storageTargets(&x)
		keys := append([]string{"prefix"}, storageKeys[typ]...)
		if typ != StorageURL {
			keys = append([]string{"storage_type"}, keys...)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if seen[k] {
				continue
			}
			seen[k] = true
			if k == "storage_type" {
				val := ""
				if !d.walk.defaults {
					val = typ
				}
				d.walk.add(join(path, k), "string", val)
				continue
			}
			d.field(targets[k])(join(path, k), walkValue{})
		}
	}
}

// walkConfig walks c's field tables.
func walkConfig(c *Config, defaults bool) []walkEntry {
	d := &decoder{c: c, walk: &walker{defaults: defaults}}
	d.object("", walkValue{}, d.globalFields())
	return d.walk.entries
}

// jsonValue turns a field's value into what encoding/json prints for it in
// the configuration file: seconds for durations, null for unset pointers.
func jsonValue(v any) any {
	switch x := v.(type) {
	case time.Duration:
		return x.Seconds()
	case *int:
		if x == nil {
			return nil
		}
		return *x
	case *int64:
		if x == nil {
			return nil
		}
		return *x
	case *float64:
		if x == nil {
			return nil
		}
		return *x
	case json.RawMessage:
		if len(x) == 0 {
			return nil
		}
		return x
	case map[string]string:
		if x == nil {
			return nil
		}
	case []string:
		if x == nil {
			return nil
		}
	}
	return v
}

// secretKeys are the keys (last path element) whose values are secrets.
var secretKeys = map[string]bool{
	"webserver_password": true, "private": true, "aws_secret_access_key": true, "aws_session_token": true,
	"account_key": true, "sas_token": true, "credentials": true,
}

func lastElem(path string) string {
	return path[strings.LastIndexByte(path, '.')+1:]
}

// Value is one effective setting of a loaded configuration.
type Value struct {
	Path string // JSON path, for example "backup_sites.default.basebackup_count"
	// Value is what the file would hold (string, number, bool, nil, list
	// or object), secrets replaced by "xxxxx" and node passwords redacted.
	Value  any
	Type   string // the JSON type the key takes
	Source string // "default", "file" or "env HOARD_X" (see Config.Source)
	Secret bool   // the key holds a secret; Value is masked when set
}

// Values lists every setting of the configuration, global keys then each
// site's, with secrets masked: what `hoard config show` prints.
func (c *Config) Values() []Value {
	var out []Value
	for _, e := range walkConfig(c, false) {
		v := Value{Path: e.path, Value: jsonValue(e.val), Type: e.typ, Source: c.Source(e.path), Secret: secretKeys[lastElem(e.path)]}
		switch {
		case v.Secret && !isEmpty(v.Value):
			v.Value = redacted
		case lastElem(e.path) == "url":
			if s, ok := v.Value.(string); ok {
				v.Value = redactURL(s)
			}
		}
		out = append(out, v)
	}
	return out
}

func isEmpty(v any) bool {
	return v == nil || v == ""
}

// redactURL hides a password in a storage URL's user information.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return redacted
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redacted)
		return u.String()
	}
	return s
}
