package config

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Load reads the configuration at path and returns it validated. Values come,
// in order, from PGHoard's defaults, the file, then the HOARD_* variables read
// with getenv (see EnvVars). With path "" the configuration is built from the
// environment alone. A *ValidationError lists every problem found. A file
// that cannot be read is an error wrapping os.ReadFile's (fs.ErrNotExist,
// fs.ErrPermission, syscall.EISDIR for a directory), and one holding only
// white space ErrEmptyFile.
func Load(path string, getenv func(string) string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("read config %s: %w", path, ErrEmptyFile)
		}
	}
	return Parse(path, data, getenv)
}

// Parse is Load for a file already in memory; name is used in errors. Empty
// data means no file. getenv may be nil (no environment overrides).
func Parse(name string, data []byte, getenv func(string) string) (*Config, error) {
	c := New()
	c.File = name
	d := &decoder{c: c}
	if len(bytes.TrimSpace(data)) > 0 || name != "" {
		root, err := decodeJSON(data)
		if err != nil {
			return nil, fmt.Errorf("parse config %s: %w", name, err)
		}
		d.warnings = duplicateKeys(data)
		d.object("", root, globalKeys, reflect.ValueOf(c).Elem())
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	applyEnv(c, getenv, &d.ps)
	c.readKeyDirs(&d.ps)
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "."
	}
	c.finish(cwd)
	c.Warnings = d.warnings
	ps := d.ps
	ps = append(ps, c.validate()...)
	if len(ps) > 0 {
		return nil, &ValidationError{File: name, Problems: ps}
	}
	return c, nil
}

// decodeJSON decodes one JSON value with numbers kept exact; syntax errors
// give line:column.
func decodeJSON(data []byte) (any, error) {
	if bytes.HasPrefix(data, []byte("\ufeff")) {
		// encoding/json names its first byte ("invalid character 'ï'").
		return nil, errors.New("line 1, column 1: invalid JSON: the file starts with a UTF-8 byte order mark (BOM): save it as UTF-8 without one")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			return nil, fmt.Errorf("%s: invalid JSON: data after the top-level value", position(data, dec.InputOffset()))
		}
		return v, nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset counts the bytes read, including the offending one.
		return nil, fmt.Errorf("%s: invalid JSON: %w", position(data, max(se.Offset-1, 0)), err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%s: invalid JSON: unexpected end of input", position(data, int64(len(data))))
	}
	return nil, fmt.Errorf("invalid JSON: %w", err)
}

// duplicateKeys returns a warning for each key given twice in one object
// of data, valid JSON, in the order they appear. Decoding takes the last
// value, as Python's json, and so PGHoard, does; but a second
// "encryption_key_id": null (left from a template) turns encryption off,
// and a second backup_sites drops the first one's sites.
func duplicateKeys(data []byte) []string {
	// frame is an object (keys non-nil) or an array being read.
	type frame struct {
		path      string
		keys      map[string]bool
		expectKey bool   // object: a key comes next
		key       string // object: the key whose value comes next
		n         int    // array: the index of the next element
	}
	var (
		stack []*frame
		out   []string
	)
	top := func() *frame {
		if len(stack) == 0 {
			return nil
		}
		return stack[len(stack)-1]
	}
	// valueRead moves the frame holding a value past it.
	valueRead := func() {
		switch f := top(); {
		case f == nil:
		case f.keys != nil:
			f.expectKey = true
		default:
			f.n++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		f := top()
		delim, isDelim := tok.(json.Delim)
		switch {
		case isDelim && (delim == '}' || delim == ']'):
			stack = stack[:len(stack)-1]
			valueRead()
		case f != nil && f.keys != nil && f.expectKey:
			k, _ := tok.(string)
			if f.keys[k] {
				out = append(out, join(f.path, k)+": duplicate key: the last one is used, as PGHoard does")
			}
			f.keys[k], f.key, f.expectKey = true, k, false
		case isDelim: // '{' or '[': a value that holds more
			p := ""
			switch {
			case f != nil && f.keys != nil:
				p = join(f.path, f.key)
			case f != nil:
				p = fmt.Sprintf("%s[%d]", f.path, f.n)
			}
			nf := &frame{path: p}
			if delim == '{' {
				nf.keys, nf.expectKey = map[string]bool{}, true
			}
			stack = append(stack, nf)
		default:
			valueRead()
		}
	}
}

// position turns a byte offset into "line L, column C" (1-based).
func position(data []byte, off int64) string {
	before := data[:min(off, int64(len(data)))]
	line := bytes.Count(before, []byte("\n")) + 1
	return fmt.Sprintf("line %d, column %d", line, len(before)-bytes.LastIndexByte(before, '\n'))
}

// decoder reads a generic JSON value (decoded with UseNumber) into the
// fields the schema names, recording type problems with their JSON path,
// unknown keys as warnings, and "file" as the source of every value it
// sets.
type decoder struct {
	c        *Config
	ps       problems
	warnings []string
}

// object reads the JSON object v into the struct dst, whose keys table
// describes, key by key in sorted order.
func (d *decoder) object(path string, v any, table []key, dst reflect.Value) {
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, "object", v)
		return
	}
	for _, name := range sortedKeys(m) {
		k := lookup(table, name)
		if k == nil {
			w := join(path, name) + ": unknown key"
			if near := suggest(table, name); near != "" {
				w += fmt.Sprintf(" (did you mean %q?)", near)
			}
			d.warnings = append(d.warnings, w)
			continue
		}
		d.value(join(path, name), m[name], k, dst.FieldByName(k.field))
	}
}

// value reads v into the field f that k describes.
func (d *decoder) value(path string, v any, k *key, f reflect.Value) {
	if kd, null := kindOf(f.Type()); kd != nil {
		var x any
		ok := v == nil && null // null unsets a pointer
		switch {
		case v == nil && kd.keepNull:
			return
		case ok:
		case kd.decode != nil:
			x, ok = kd.decode(d, path, v)
		default:
			x, ok = kd.fromJSON(v)
		}
		if !ok {
			want := cmp.Or(kd.want, kd.typeName(null))
			if k.secret {
				d.wrongSecretType(path, want, v)
				return
			}
			d.wrongType(path, want, v)
			return
		}
		set(f, x)
		d.set(path)
		return
	}
	switch f.Kind() {
	case reflect.Struct: // an object that is always there: compression
		d.object(path, v, k.keys, f)
	case reflect.Pointer: // an optional object, off when null: statsd
		if v == nil {
			return
		}
		x := newObject(f.Type(), k.keys)
		d.object(path, v, k.keys, x.Elem())
		f.Set(x)
		d.set(path)
	case reflect.Map: // objects by name: backup_sites
		m, ok := v.(map[string]any)
		if !ok {
			d.wrongType(path, "object", v)
			return
		}
		for _, name := range sortedKeys(m) {
			x := newObject(f.Type().Elem(), k.keys)
			d.object(join(path, name), m[name], k.keys, reflect.Indirect(x))
			f.SetMapIndex(reflect.ValueOf(name), x)
		}
	}
}

func (d *decoder) wrongType(path, want string, v any) {
	if path == "" {
		path = "(top level)"
	}
	d.ps.add(path, "want %s, got %s", want, describe(v))
}

// wrongSecretType is wrongType for a key that holds a secret: the value
// is named by its JSON type alone, as a numeric password or the start of
// a key given as a string would otherwise be printed (and logged).
func (d *decoder) wrongSecretType(path, want string, v any) {
	typ, _, _ := strings.Cut(describe(v), " ")
	d.ps.add(path, "want %s, got %s (not shown: a secret)", want, typ)
}

func (d *decoder) set(path string) { d.c.setSource(path, "file") }

// describe names a JSON value's type for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return "string " + strconv.Quote(x)
	case json.Number:
		return "number " + x.String()
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// sortedKeys returns m's keys in order: objects are read key by key.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
