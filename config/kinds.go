package config

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// kind is how the values of one Go type are read from the file and from a
// variable, and shown. A key's kind is its field's type, so a key of a type
// listed in kinds needs no code of its own. A pointer to one of these types
// takes null too (nil).
type kind struct {
	name string // the JSON type, as the reference and config show name it
	want string // the type in "want X, got Y" errors ("" = name)
	// keepNull makes null leave a value as it is: PGHoard treats null as
	// unset for its optional strings.
	keepNull bool
	// fromJSON converts a value decoded with UseNumber; false means the
	// wrong type.
	fromJSON func(v any) (any, bool)
	// fromEnv converts a variable's text; nil means no variable sets it.
	fromEnv func(s string) (any, error)
	// decode replaces fromJSON for kinds with parts, whose problems it
	// records at their paths (nodes, object_storage).
	decode func(d *decoder, path string, v any) (any, bool)
}

// kinds are the types a key's field may have besides objects (structs,
// pointers to structs, maps of them). init fills it: decoding nodes and
// object_storage refers back to it.
var kinds map[reflect.Type]*kind

func init() {
	kinds = map[reflect.Type]*kind{
		reflect.TypeFor[string](): {name: "string", keepNull: true,
			fromJSON: func(v any) (any, bool) { s, ok := v.(string); return s, ok },
			fromEnv:  func(s string) (any, error) { return s, nil }},
		reflect.TypeFor[bool](): {name: "boolean",
			fromJSON: func(v any) (any, bool) { b, ok := v.(bool); return b, ok },
			fromEnv:  parser("true or false", strconv.ParseBool)},
		// An int holds PostgreSQL's and PGHoard's 32-bit settings.
		reflect.TypeFor[int](): {name: "integer",
			fromJSON: func(v any) (any, bool) {
				i, ok := toInt(v)
				return int(i), ok && i >= math.MinInt32 && i <= math.MaxInt32
			},
			fromEnv: parser("integer", strconv.Atoi)},
		reflect.TypeFor[int64](): {name: "integer",
			fromJSON: func(v any) (any, bool) { return toInt(v) },
			fromEnv:  parser("integer", func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })},
		reflect.TypeFor[float64](): {name: "number",
			fromJSON: func(v any) (any, bool) { return toFloat(v) },
			fromEnv:  parser("number", parseFinite)},
		reflect.TypeFor[time.Duration](): {name: "seconds", want: "number of seconds",
			fromJSON: func(v any) (any, bool) {
				f, ok := toFloat(v)
				return time.Duration(f * float64(time.Second)), ok && math.Abs(f) <= float64(math.MaxInt64/int64(time.Second))
			},
			fromEnv: func(s string) (any, error) {
				f, err := parseFinite(s)
				if err != nil || f < 0 || f > float64(1<<31) {
					return nil, fmt.Errorf("want a number of seconds, got %q", s)
				}
				return time.Duration(f * float64(time.Second)), nil
			}},
		reflect.TypeFor[map[string]string](): {name: "object of strings", want: "object", decode: decodeTags},
		// Google service-account credentials are handed to the client
		// library as they are. Marshal cannot fail on a decoded object.
		reflect.TypeFor[json.RawMessage](): {name: "JSON object", want: "object",
			fromJSON: func(v any) (any, bool) {
				b, err := json.Marshal(v)
				_, ok := v.(map[string]any)
				return json.RawMessage(b), ok && err == nil
			},
			fromEnv: func(s string) (any, error) {
				var m map[string]any
				if err := json.Unmarshal([]byte(s), &m); err != nil {
					return nil, fmt.Errorf("want a JSON object: %w", err) // not the value: it is a secret
				}
				return json.RawMessage(s), nil
			}},
		reflect.TypeFor[[]string](): {name: "string or array of strings", decode: decodeNames},
		reflect.TypeFor[[]Node](): {name: "array", decode: decodeNodes,
			fromEnv: func(s string) (any, error) { return []Node{{ConnStr: s}}, nil }},
		reflect.TypeFor[ObjectStorage](): {name: "object", keepNull: true, decode: decodeStorage},
	}
}

// kindOf returns the kind of a field of type t, and whether t is a pointer
// that takes null; nil for an object.
func kindOf(t reflect.Type) (*kind, bool) {
	if k := kinds[t]; k != nil {
		return k, false
	}
	if t.Kind() == reflect.Pointer {
		if k := kinds[t.Elem()]; k != nil && k.decode == nil {
			return k, true
		}
	}
	return nil, false
}

// typeName is the JSON type of the kind, or of a pointer to it.
func (kd *kind) typeName(null bool) string {
	if null {
		return kd.name + " or null"
	}
	return kd.name
}

// parseEnv converts a variable's text for a field of the kind; a pointer
// takes "null".
func (kd *kind) parseEnv(s string, null bool) (any, error) {
	if !null {
		return kd.fromEnv(s)
	}
	if s == "null" {
		return nil, nil
	}
	x, err := kd.fromEnv(s)
	if err != nil {
		return nil, fmt.Errorf("want %s, got %q", kd.typeName(true), s)
	}
	return x, nil
}

// set stores x, what fromJSON or parseEnv returned, in the field f: nil
// for null, else x or a pointer to it.
func set(f reflect.Value, x any) {
	switch {
	case x == nil:
		f.SetZero()
	case f.Kind() == reflect.Pointer && f.Type().Elem() == reflect.TypeOf(x):
		p := reflect.New(f.Type().Elem())
		p.Elem().Set(reflect.ValueOf(x))
		f.Set(p)
	default:
		f.Set(reflect.ValueOf(x))
	}
}

// parser makes a fromEnv of a strconv function.
func parser[T any](want string, parse func(string) (T, error)) func(string) (any, error) {
	return func(s string) (any, error) {
		x, err := parse(s)
		if err != nil {
			return nil, fmt.Errorf("want %s, got %q", want, s)
		}
		return x, nil
	}
}

// parseFinite is strconv.ParseFloat without the "nan", "inf" and
// "infinity" it also reads: JSON has no such numbers, and NaN passes every
// range check (each comparison with it is false), so HOARD_*_HOURS=nan
// would turn a schedule or an age limit off unseen.
func parseFinite(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return 0, fmt.Errorf("%q is not a finite number", s)
	}
	return f, err
}

// toInt accepts an integral JSON number, also written as a float (1e3).
func toInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func toFloat(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil && !math.IsInf(f, 0)
}

// decodeTags accepts an object of scalar values, kept as strings.
func decodeTags(d *decoder, path string, v any) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	out := map[string]string{}
	for _, k := range sortedKeys(m) {
		d.scalar(join(path, k), m[k], out, k)
	}
	return out, true
}

// scalar stores v, a string, number or boolean, as text in dst[name]
// (metric tags, libpq keywords); another value is a problem at path.
func (d *decoder) scalar(path string, v any, dst map[string]string, name string) {
	switch x := v.(type) {
	case string:
		dst[name] = x
	case json.Number:
		dst[name] = x.String()
	case bool:
		dst[name] = strconv.FormatBool(x)
	default:
		d.wrongType(path, "string or number", v)
	}
}

// decodeNames accepts a name or a list of them (moved_from).
func decodeNames(d *decoder, path string, v any) (any, bool) {
	var names []string
	switch x := v.(type) {
	case nil:
	case string:
		names = []string{x}
	case []any:
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				d.wrongType(fmt.Sprintf("%s[%d]", path, i), "string", e)
				continue
			}
			names = append(names, s)
		}
	default:
		return nil, false
	}
	return names, true
}

// show turns a field's value into what the file would hold for it:
// seconds for durations, null for unset pointers, maps, lists and raw
// JSON.
func show(f reflect.Value) any {
	switch x := f.Interface().(type) {
	case time.Duration:
		return x.Seconds()
	case json.RawMessage:
		if len(x) == 0 {
			return nil
		}
		return x
	}
	switch f.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if f.IsNil() {
			return nil
		}
		if f.Kind() == reflect.Pointer {
			return show(f.Elem())
		}
	}
	return f.Interface()
}
