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

// sortedRows returns table's rows sorted by name: objects are decoded,
// shown and documented in key order.
func sortedRows(table []key) []*key {
	rows := make([]*key, len(table))
	for i := range table {
		rows[i] = &table[i]
	}
	slices.SortFunc(rows, func(a, b *key) int { return strings.Compare(a.name, b.name) })
	return rows
}

// accepts tells whether an object_storage key belongs to storage type typ.
func (k *key) accepts(typ string) bool {
	return k.types == "" || slices.Contains(strings.Fields(k.types), typ)
}

// fields calls fn with each row of table, its JSON path and its field in
// the struct v; for an object that is always there (compression), with
// each of its rows in turn.
func fields(path string, table []key, v reflect.Value, fn func(path string, k *key, f reflect.Value)) {
	for i := range table {
		k, f := &table[i], v.FieldByName(table[i].field)
		if kd, _ := kindOf(f.Type()); kd == nil && f.Kind() == reflect.Struct {
			fields(join(path, k.name), k.keys, f, fn)
		} else {
			fn(join(path, k.name), k, f)
		}
	}
}

// setDefaults sets the fields of the struct v that table gives a default,
// and makes its maps of objects empty rather than nil.
func setDefaults(v reflect.Value, table []key) {
	fields("", table, v, func(_ string, k *key, f reflect.Value) {
		switch t := f.Type(); {
		case k.def != nil && t.Kind() == reflect.Pointer:
			set(f, reflect.ValueOf(k.def).Convert(t.Elem()).Interface())
		case k.def != nil:
			set(f, reflect.ValueOf(k.def).Convert(t).Interface())
		case f.Kind() == reflect.Map && k.keys != nil:
			f.Set(reflect.MakeMap(t))
		}
	})
}

// newObject returns a pointer to a new struct of type t with table's
// defaults.
func newObject(t reflect.Type, table []key) reflect.Value {
	p := reflect.New(t)
	setDefaults(p.Elem(), table)
	return p
}

// newMember returns a new member of a map whose values have type t: a
// struct or a pointer to one.
func newMember(t reflect.Type, table []key) reflect.Value {
	if t.Kind() == reflect.Pointer {
		return newObject(t.Elem(), table)
	}
	return newObject(t, table).Elem()
}
