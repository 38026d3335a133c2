package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// TestSchema checks that every row of the schema fits its field, so that a
// mistake in a table fails here rather than in a user's load: the field
// exists, has a kind or is an object with keys, takes the default, and a
// variable can set it where one is named. It also checks the other way:
// every field has a row, so a field added without one (never read from the
// file, the environment or shown) fails here.
func TestSchema(t *testing.T) {
	checkTable(t, reflect.TypeFor[Config](), "", globalKeys, true)
}

// notKeys are the fields of the schema's structs that no key fills: set by
// Load itself.
var notKeys = []string{"Config.File", "Config.Warnings", "Site.Name", "ObjectStorage.Implicit"}

// checkTable checks the rows of table, which describes the struct typ at
// path; env tells whether applyEnv reaches the rows' variables.
func checkTable(t *testing.T, typ reflect.Type, path string, table []key, env bool) {
	for _, sf := range reflect.VisibleFields(typ) {
		if sf.IsExported() && !sf.Anonymous && !slices.Contains(notKeys, typ.Name()+"."+sf.Name) &&
			!slices.ContainsFunc(table, func(k key) bool { return k.field == sf.Name }) {
			t.Errorf("%s: field %s.%s has no row in the schema", path, typ, sf.Name)
		}
	}
	for i := range table {
		k := &table[i]
		p := join(path, k.name)
		sf, ok := typ.FieldByName(k.field)
		if !ok {
			t.Errorf("%s: %s has no field %s", p, typ, k.field)
			continue
		}
		if lookup(table, k.name) != k {
			t.Errorf("%s: listed twice", p)
		}
		if k.doc == "" || (k.env != "") != (k.envDoc != "") {
			t.Errorf("%s: want doc, and envDoc with env", p)
		}
		ft := sf.Type
		if k.def != nil && !defaultFits(reflect.TypeOf(k.def), ft) {
			t.Errorf("%s: default %v is a %T, not a %s", p, k.def, k.def, ft)
		}
		kd, null := kindOf(ft)
		if k.valid != "" && (kd == nil || !strings.Contains("integer number seconds", kd.name)) {
			t.Errorf("%s: valid %q on a %s", p, k.valid, ft)
		}
		if k.oneOf != nil && ft.Kind() != reflect.String {
			t.Errorf("%s: oneOf on a %s", p, ft)
		}
		switch {
		case ft == reflect.TypeFor[ObjectStorage]():
			for _, sk := range k.keys {
				// Only storage_type, url and prefix have variables of their
				// own; the other keys get HOARD_<TYPE>_<KEY>.
				if own := sk.types == "" || sk.types == StorageURL; own != (sk.env != "") {
					t.Errorf("%s.%s: only storage_type, url and prefix name a variable", p, sk.name)
				}
				order := append(slices.Clone(storage.Types), StorageURL)
				if idx := indexes(order, strings.Fields(sk.types)); slices.Contains(idx, -1) || !slices.IsSorted(idx) {
					t.Errorf("%s.%s: types %q: want known types, in the order %v", p, sk.name, sk.types, order)
				}
				if f, ok := ft.FieldByName(sk.field); ok && kinds[f.Type].fromEnv == nil {
					t.Errorf("%s.%s: no variable can set a %v", p, sk.name, f.Type)
				}
			}
			checkTable(t, ft, p, k.keys, true)
		case kd != nil:
			if k.keys != nil || k.env != "" && (!env || kd.fromEnv == nil || null && kd.decode != nil) {
				t.Errorf("%s: a %s has no keys, and a variable only where applyEnv reaches", p, ft)
			}
		case ft.Kind() == reflect.Struct:
			checkTable(t, ft, p, k.keys, env)
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
			checkTable(t, ft.Elem(), p, k.keys, false) // an optional object has no variables
		case ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String && k.each != "":
			m := ft.Elem()
			if m.Kind() == reflect.Pointer {
				m = m.Elem()
			}
			checkTable(t, m, join(p, k.each), k.keys, true)
		default:
			t.Errorf("%s: no kind for a field of type %s", p, ft)
		}
	}
}

// indexes returns the index in list of each of names, -1 for none.
func indexes(list, names []string) []int {
	var out []int
	for _, n := range names {
		out = append(out, slices.Index(list, n))
	}
	return out
}

// defaultFits tells whether a default of type d can fill a field of type
// f: the same type, or numbers (an int for an int64 or a *float64). A
// duration must be one (180 * time.Second), never a bare number.
func defaultFits(d, f reflect.Type) bool {
	if f.Kind() == reflect.Pointer {
		f = f.Elem()
	}
	number := func(t reflect.Type) bool { return t.Kind() >= reflect.Int && t.Kind() <= reflect.Float64 }
	return d == f || number(d) && number(f) && f != reflect.TypeFor[time.Duration]()
}

// TestStorageConfig checks that every object_storage key reaches
// storage.Config: a field whose json tag is the key's name, which takes the
// key's value.
func TestStorageConfig(t *testing.T) {
	st := reflect.TypeFor[storage.Config]()
	tags := map[string]reflect.Type{}
	for i := range st.NumField() {
		tags[st.Field(i).Tag.Get("json")] = st.Field(i).Type
	}
	for _, k := range storageKeys {
		f, _ := reflect.TypeFor[ObjectStorage]().FieldByName(k.field)
		to, ok := tags[k.name]
		if !ok || f.Type != to && !(to.Kind() == reflect.Pointer && f.Type == to.Elem()) {
			t.Errorf("object_storage.%s: storage.Config has no field of json name %[1]q that takes a %v", k.name, f.Type)
		}
	}
	// storage.Config.Check names keys of the storage type it checks.
	for _, typ := range storage.Types {
		for _, c := range []storage.Config{{Type: typ}, {Type: typ, Host: "h", CredentialFile: "f", CredentialsJSON: []byte("{}"),
			AccessKeyID: "k", ServiceType: "x", HostKeyFingerprint: "x", InsecureIgnoreHostKey: true}} {
			for _, p := range c.Check() {
				if k := lookup(storageKeys, p.Key); k == nil || !k.accepts(typ) {
					t.Errorf("%s storage: Check names %s, not a key of the type", typ, p.Key)
				}
			}
		}
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"basebackup_cnt", "basebackup_count"},
		{"basebackup_interval_hour", "basebackup_interval_hours"},
		{"encryption_keyid", "encryption_key_id"},
		{"pg_data_dir", ""}, // too far from pg_data_directory to guess
		{"ab", ""},          // a short name is near too many
		{"colour", ""},
		// Case and spaces around a name are ignored: PGHoard's keys are lower case.
		{"ENCRYPTION_KEY_ID", "encryption_key_id"},
		{"Basebackup_Count ", "basebackup_count"},
		{" active_backup_mode", "active_backup_mode"},
		{"ACTIVE_BACKUP_MOD", "active_backup_mode"},
	} {
		if got := suggest(siteKeys, tc.name); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
