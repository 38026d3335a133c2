package config

import (
	"encoding/json"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

//go:generate go run ../docs/gen -dir ../docs

// The schema is walked over a configuration to print it (Values, for
// `hoard config show`) and over the defaults to document it (Keys): each
// key reports its JSON path, type and value.

// Placeholders for names in the reference's paths.
const (
	sitePlaceholder = "<site>"
	keyPlaceholder  = "<key-id>"
)

// walker collects what the keys report.
type walker struct {
	// docs is true for the reference: objects are reported too, a map
	// has one member named by its placeholder, an optional object that
	// is off is walked with its defaults, and object_storage lists the
	// keys of every storage type.
	docs    bool
	entries []entry
}

type entry struct {
	path, typ string
	val       any
	key       *key
}

func (w *walker) add(path, typ string, val any, k *key) {
	if !w.docs && typ == "object" {
		return
	}
	w.entries = append(w.entries, entry{path: path, typ: typ, val: val, key: k})
}

// object walks the struct v that table describes, in key order.
func (w *walker) object(path string, table []key, v reflect.Value) {
	for _, k := range sortedRows(table) {
		w.value(join(path, k.name), k, v.FieldByName(k.field))
	}
}

func (w *walker) value(path string, k *key, f reflect.Value) {
	if kd, null := kindOf(f.Type()); kd != nil {
		if kd.walk != nil {
			kd.walk(w, path, k, f)
		} else {
			w.add(path, kd.typeName(null), show(f), k)
		}
		return
	}
	switch f.Kind() {
	case reflect.Struct:
		w.add(path, "object", nil, k)
		w.object(path, k.keys, f)
	case reflect.Pointer:
		if f.IsNil() && !w.docs {
			w.add(path, "object or null", nil, k)
			return
		}
		w.add(path, "object", nil, k)
		if f.IsNil() {
			f = newObject(f.Type().Elem(), k.keys)
		}
		w.object(path, k.keys, f.Elem())
	case reflect.Map:
		w.add(path, "object", nil, k)
		if w.docs {
			f = reflect.MakeMap(f.Type())
			f.SetMapIndex(reflect.ValueOf(k.each), newMember(f.Type().Elem(), k.keys))
		}
		for _, name := range slices.SortedFunc(f.Seq(), func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) }) {
			p := join(path, name.String())
			w.add(p, "object", nil, &key{name: name.String(), doc: k.eachDoc})
			w.object(p, k.keys, reflect.Indirect(f.MapIndex(name)))
		}
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
	w := &walker{}
	w.object("", globalKeys, reflect.ValueOf(c).Elem())
	out := make([]Value, 0, len(w.entries))
	for _, e := range w.entries {
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
// is generated from it (go generate ./config).
func Keys() []KeyDoc {
	env := map[string][]string{}
	for _, ev := range EnvVars {
		k := ev.Key
		if ev.Site {
			k = "backup_sites." + sitePlaceholder + "." + k
		}
		env[k] = append(env[k], ev.Name)
	}
	w := &walker{docs: true}
	w.object("", globalKeys, reflect.ValueOf(New()).Elem())
	var out []KeyDoc
	for _, e := range w.entries {
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
	if v == nil && typ == "object" {
		return ""
	}
	if s, ok := v.(string); ok && s == "" {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}
