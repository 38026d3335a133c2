package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// The schema is walked over a configuration to print it (Values, for
// `hoard config show`) and over the defaults to document it (Keys): each
// key reports its JSON path, type and value.

// Placeholders for names in the reference's paths.
const (
	sitePlaceholder = "<site>"
	keyPlaceholder  = "<key-id>"
)

type entry struct {
	path, typ string
	val       any
	key       *key
}

// entries walks the schema over c by name, listing the keys that hold a
// value; for the reference (docs) also the objects, with an optional
// object that is off given its defaults, a map of objects one member named
// by its placeholder (fill) and object_storage every key of every type.
func entries(c *Config, docs bool) []entry {
	var out []entry
	add := func(path, typ string, val any, k *key) {
		out = append(out, entry{path: path, typ: typ, val: val, key: k})
	}
	walk("", globalKeys, reflect.ValueOf(c).Elem(), true, func(p string, k *key, f reflect.Value) bool {
		if docs {
			fill(k, f)
		}
		nodes, isNodes := f.Interface().([]Node)
		switch kd, null := kindOf(f.Type()); {
		case k.keys != nil && f.Kind() == reflect.Pointer && f.IsNil():
			add(p, "object or null", nil, k)
		case k.keys != nil:
			if docs {
				add(p, "object", nil, k)
			}
			return true
		case isNodes && !docs: // each node's connection string, password redacted, and slot
			for i, n := range nodes {
				add(fmt.Sprintf("%s[%d]", p, i), "connection string", n.Redacted(), k)
				if n.Slot != "" {
					add(fmt.Sprintf("%s[%d].slot", p, i), "string", n.Slot, k)
				}
			}
		default:
			add(p, kd.typeName(null), show(f), k)
		}
		return false
	})
	return out
}

// fill gives the reference something to walk in the field f of row k: an
// optional object that is off its defaults, a map of objects one member
// named by its placeholder ("<site>").
func fill(k *key, f reflect.Value) {
	switch {
	case k.keys != nil && f.Kind() == reflect.Pointer && f.IsNil():
		f.Set(newObject(f.Type(), k.keys))
	case k.each != "":
		m := reflect.MakeMap(f.Type())
		m.SetMapIndex(reflect.ValueOf(k.each), newObject(f.Type().Elem(), k.keys))
		f.Set(m)
	}
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
	es := entries(c, false)
	out := make([]Value, 0, len(es))
	for _, e := range es {
		v := Value{Path: e.path, Value: e.val, Type: e.typ, Source: c.Source(e.path), Secret: e.key.secret}
		switch {
		case v.Secret && v.Value != nil && v.Value != "":
			v.Value = redacted
		case e.key.url:
			v.Value = redactURL(v.Value.(string))
		}
		out = append(out, v)
	}
	return out
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

// KeyDoc describes one configuration key for the reference.
type KeyDoc struct {
	// Path is the JSON path; "<site>" and "<key-id>" stand for a site name
	// and an encryption key id.
	Path    string
	Type    string // JSON type: "string", "integer or null", "seconds", "object", ...
	Default string // the default as JSON, or a description of a computed one
	// Env names the HOARD_* variables that override it, comma-separated
	// ("" = none); object_storage keys have one per storage type.
	Env    string
	Doc    string
	Secret bool // `hoard config show` masks the value
	// Storage lists the storage types an object_storage key applies to.
	Storage []string
}

// Keys lists every key the configuration file accepts, sorted by path: the
// schema the decoder reads, walked over the defaults. docs/configuration.md
// is generated from it (go generate ./docs).
func Keys() []KeyDoc {
	env := map[string][]string{}
	for _, ev := range EnvVars {
		k := ev.Key
		if ev.Site {
			k = "backup_sites." + sitePlaceholder + "." + k
		}
		env[k] = append(env[k], ev.Name)
	}
	var out []KeyDoc
	for _, e := range entries(New(), true) {
		k := KeyDoc{Path: e.path, Type: e.typ, Env: strings.Join(env[e.path], ", "), Doc: e.key.doc, Secret: e.key.secret, Default: e.key.defDoc}
		if k.Default == "" {
			k.Default = defaultText(e.typ, e.val)
		}
		if e.key.types != "" {
			k.Storage = strings.Fields(e.key.types)
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b KeyDoc) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// defaultText prints a default as JSON; "" for an empty string or an
// object without a value.
func defaultText(typ string, v any) string {
	if v == nil && typ == "object" || v == "" {
		return ""
	}
	b, _ := json.Marshal(v) // defaults are plain values: Marshal cannot fail
	return string(b)
}
