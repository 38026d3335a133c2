package config

import (
	"reflect"
	"slices"
	"strings"
)

// key is one key of the configuration file: the row of the schema that
// decoding, the HOARD_* variables, `hoard config show` and the reference
// (docs/configuration.md) all read. Its JSON type is its field's Go type
// (see kinds). TestSchema checks that every row fits its field.
type key struct {
	name  string // the JSON key inside its object
	field string // the Go field it fills in the struct its table describes
	// def is the default, of the field's type (an int for a *int field);
	// nil leaves the zero value. defDoc replaces it in the reference when
	// the default is computed or described ("CPU count + 1").
	def    any
	defDoc string
	// env is the HOARD_* variable that overrides the key; envDoc is its
	// line in the reference. A row with envDoc and no env gets HOARD_ and
	// its path in capitals, a site's keys from the site (HOARD_SLOT,
	// HOARD_COMPRESSION_LEVEL). file accepts <env>_FILE too (always for
	// secrets).
	env    string
	envDoc string
	file   bool
	secret bool // `hoard config show` masks a set value
	url    bool // a URL: `hoard config show` masks its password
	// valid is the range of a number: ">=0", ">=1", ">0" or "min-max".
	// oneOf lists the values a string may take ("" too when it has no
	// default). checkRows checks them; other rules are in validate.go, and
	// for object_storage in storage.Config.Check.
	valid string
	oneOf []string
	doc   string

	keys []key // an object's keys: its field is a struct, a *struct (null = off) or a map of them
	// each and eachDoc name and describe one member of a map of objects in
	// the reference ("<site>").
	each, eachDoc string
	// types lists the storage types an object_storage key belongs to,
	// separated by spaces ("" = every type).
	types string
}

// lookup returns the row of table named name, or nil.
func lookup(table []key, name string) *key {
	for i := range table {
		if table[i].name == name {
			return &table[i]
		}
	}
	return nil
}

// suggest returns the name of table's row that name is most likely a
// typo of (at most two letters added, removed or changed, and fewer than
// half of name's), or "" when none is that close. Case and spaces around
// name do not count: "ENCRYPTION_KEY_ID" and "basebackup_count " are
// unknown keys (the schema's are lower case), which PGHoard ignores too.
func suggest(table []key, name string) string {
	names := make([]string, len(table))
	for i, k := range table {
		names[i] = k.name
	}
	return nearest(names, strings.ToLower(strings.TrimSpace(name)))
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// accepts tells whether object_storage of storage type typ has the key k
// ("" = every type, as the reference lists them); a url has no
// storage_type.
func (k *key) accepts(typ string) bool {
	if typ == StorageURL && k.name == "storage_type" {
		return false
	}
	return k.types == "" || typ == "" || slices.Contains(strings.Fields(k.types), typ)
}

// visit is called by walk with a row, its JSON path and its field; it
// returns whether walk goes into the field's object.
type visit func(path string, k *key, f reflect.Value) bool

// walk is the one traversal of the schema over values: it calls fn with
// each row of table and its field in the struct v, in the table's order or,
// sorted, by name, and where fn returns true goes on into the row's object:
// a struct, a pointer to one unless nil, each member of a map of them (by
// name, as a row of its own) or object_storage, there with the rows of its
// storage type. Defaults, the HOARD_* variables and their list, `config
// show`, the range checks and the reference all walk with it; fn may set
// the field first (a default, the reference's placeholders).
func walk(path string, table []key, v reflect.Value, sorted bool, fn visit) {
	typ := ""
	if o, ok := v.Interface().(ObjectStorage); ok {
		typ = o.Type
	}
	rows := make([]*key, 0, len(table))
	for i := range table {
		if table[i].accepts(typ) {
			rows = append(rows, &table[i])
		}
	}
	if sorted {
		slices.SortFunc(rows, func(a, b *key) int { return strings.Compare(a.name, b.name) })
	}
	for _, k := range rows {
		walkField(join(path, k.name), k, v.FieldByName(k.field), sorted, fn)
	}
}

// walkField visits the row k at path, then where fn returns true the
// objects in its field f (see walk).
func walkField(path string, k *key, f reflect.Value, sorted bool, fn visit) {
	if !fn(path, k, f) || k.keys == nil {
		return
	}
	switch f.Kind() {
	case reflect.Struct:
		walk(path, k.keys, f, sorted, fn)
	case reflect.Pointer:
		if !f.IsNil() {
			walk(path, k.keys, f.Elem(), sorted, fn)
		}
	case reflect.Map:
		for _, name := range slices.SortedFunc(f.Seq(), func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) }) {
			walkField(join(path, name.String()), &key{name: name.String(), doc: k.eachDoc, keys: k.keys}, f.MapIndex(name), sorted, fn)
		}
	}
}

// fixed tells whether the field f is an object that is always there
// (compression), whose rows are set as its parent's are.
func fixed(f reflect.Value) bool {
	kd, _ := kindOf(f.Type())
	return kd == nil && f.Kind() == reflect.Struct
}

// setDefaults sets the fields of the struct v that table gives a default,
// and makes its maps of objects empty rather than nil.
func setDefaults(v reflect.Value, table []key) {
	walk("", table, v, false, func(_ string, k *key, f reflect.Value) bool {
		switch t := f.Type(); {
		case k.def != nil && t.Kind() == reflect.Pointer:
			set(f, reflect.ValueOf(k.def).Convert(t.Elem()).Interface())
		case k.def != nil:
			set(f, reflect.ValueOf(k.def).Convert(t).Interface())
		case f.Kind() == reflect.Map && k.keys != nil:
			f.Set(reflect.MakeMap(t))
		}
		return fixed(f)
	})
}

// newObject returns a new object of type t with table's defaults: a
// struct, or a pointer to a new one (an optional object, a map's member).
func newObject(t reflect.Type, table []key) reflect.Value {
	if t.Kind() == reflect.Pointer {
		p := reflect.New(t.Elem())
		setDefaults(p.Elem(), table)
		return p
	}
	v := reflect.New(t).Elem()
	setDefaults(v, table)
	return v
}
