package config

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
)

// decoder walks a generic JSON value (decoded with UseNumber) into typed
// fields, recording type problems with their JSON path, unknown keys as
// warnings, and "file" as the source of every value it sets.
type decoder struct {
	c        *Config
	ps       problems
	warnings []string
	// walk is set when the field tables are walked instead of decoding
	// (see walk.go): each field reports its path, type and current value.
	walk *walker
}

type fieldFunc func(path string, v any)

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

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

func (d *decoder) wrongType(path, want string, v any) {
	if path == "" {
		path = "(top level)"
	}
	d.ps.add(path, "want %s, got %s", want, describe(v))
}

func (d *decoder) set(path string) { d.c.setSource(path, "file") }

// object calls fields[key] for each key of v in sorted order; keys with no
// field become warnings.
func (d *decoder) object(path string, v any, fields map[string]fieldFunc) {
	if d.walked(path, v, "object", nil) {
		for _, k := range sortedFieldKeys(fields) {
			fields[k](join(path, k), walkValue{})
		}
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, "object", v)
		return
	}
	for _, k := range sortedKeys(m) {
		f, ok := fields[k]
		if !ok {
			d.warnings = append(d.warnings, join(path, k)+": unknown key")
			continue
		}
		f(join(path, k), m[k])
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// str accepts a string; null leaves the default, as PGHoard treats null as
// unset for its optional strings.
func (d *decoder) str(dst *string) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "string", *dst) {
			return
		}
		switch x := v.(type) {
		case nil:
		case string:
			*dst = x
			d.set(path)
		default:
			d.wrongType(path, "string", v)
		}
	}
}

func (d *decoder) boolean(dst *bool) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "boolean", *dst) {
			return
		}
		x, ok := v.(bool)
		if !ok {
			d.wrongType(path, "boolean", v)
			return
		}
		*dst = x
		d.set(path)
	}
}

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

func (d *decoder) integer(dst *int) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "integer", *dst) {
			return
		}
		i, ok := toInt(v)
		if !ok || i > math.MaxInt32 || i < math.MinInt32 {
			d.wrongType(path, "integer", v)
			return
		}
		*dst = int(i)
		d.set(path)
	}
}

func (d *decoder) integer64(dst *int64) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "integer", *dst) {
			return
		}
		i, ok := toInt(v)
		if !ok {
			d.wrongType(path, "integer", v)
			return
		}
		*dst = i
		d.set(path)
	}
}

// optInteger accepts an integer or null (nil = unset / unlimited).
func (d *decoder) optInteger(dst **int) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "integer or null", *dst) {
			return
		}
		if v == nil {
			*dst = nil
			d.set(path)
			return
		}
		i, ok := toInt(v)
		if !ok || i > math.MaxInt32 || i < math.MinInt32 {
			d.wrongType(path, "integer or null", v)
			return
		}
		n := int(i)
		*dst = &n
		d.set(path)
	}
}

func (d *decoder) optInteger64(dst **int64) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "integer or null", *dst) {
			return
		}
		if v == nil {
			*dst = nil
			d.set(path)
			return
		}
		i, ok := toInt(v)
		if !ok {
			d.wrongType(path, "integer or null", v)
			return
		}
		*dst = &i
		d.set(path)
	}
}

func (d *decoder) number(dst *float64) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "number", *dst) {
			return
		}
		f, ok := toFloat(v)
		if !ok {
			d.wrongType(path, "number", v)
			return
		}
		*dst = f
		d.set(path)
	}
}

// optNumber accepts a number or null (nil = off).
func (d *decoder) optNumber(dst **float64) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "number or null", *dst) {
			return
		}
		if v == nil {
			*dst = nil
			d.set(path)
			return
		}
		f, ok := toFloat(v)
		if !ok {
			d.wrongType(path, "number or null", v)
			return
		}
		*dst = &f
		d.set(path)
	}
}

// seconds accepts a number of seconds.
func (d *decoder) seconds(dst *time.Duration) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "seconds", *dst) {
			return
		}
		f, ok := toFloat(v)
		if !ok || math.Abs(f) > float64(math.MaxInt64/int64(time.Second)) {
			d.wrongType(path, "number of seconds", v)
			return
		}
		*dst = time.Duration(f * float64(time.Second))
		d.set(path)
	}
}

// tags accepts an object of scalar values, kept as strings.
func (d *decoder) tags(dst *map[string]string) fieldFunc {
	return func(path string, v any) {
		if d.walked(path, v, "object of strings", *dst) {
			return
		}
		m, ok := v.(map[string]any)
		if !ok {
			d.wrongType(path, "object", v)
			return
		}
		out := map[string]string{}
		for _, k := range sortedKeys(m) {
			s, ok := scalarString(m[k])
			if !ok {
				d.wrongType(join(path, k), "string or number", m[k])
				continue
			}
			out[k] = s
		}
		*dst = out
		d.set(path)
	}
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// field returns the decoder for a pointer from storageTargets.
func (d *decoder) field(target any) fieldFunc {
	switch p := target.(type) {
	case *string:
		return d.str(p)
	case *int:
		return d.integer(p)
	case *int64:
		return d.integer64(p)
	case *bool:
		return d.boolean(p)
	case *json.RawMessage:
		return d.rawObject(p)
	}
	panic(fmt.Sprintf("config: no decoder for %T", target))
}
