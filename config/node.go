package config

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strings"
)

// Node is one PostgreSQL server of a site. PGHoard accepts a libpq keyword
// object ({"host": ..., "port": ..., "slot": ...}), a keyword/value
// connection string, a URI, or {"connection_string": ..., "slot": ...}.
//
// The zero Node is the empty connection string: pgconn.ParseConfig("") fills
// it from PG* environment variables and ~/.pgpass.
type Node struct {
	// ConnStr is the connection string or URI as written; used when Params
	// is nil.
	ConnStr string
	// Params are the keywords of a keyword object (values as strings).
	Params map[string]string
	// Slot names a physical replication slot ("" = none).
	Slot string
}

// ConnString returns a libpq keyword/value string or URI that
// pgconn.ParseConfig accepts. It contains the password when one is set:
// print Redacted instead.
func (n Node) ConnString() string {
	if n.Params == nil {
		return n.ConnStr
	}
	return renderKV(n.Params)
}

// Redacted returns ConnString with any password replaced by "xxxxx".
func (n Node) Redacted() string {
	if n.Params != nil {
		return renderKV(redactParams(n.Params))
	}
	return redactConnString(n.ConnStr)
}

// String returns Redacted, so a Node never prints its password.
func (n Node) String() string { return n.Redacted() }

const redacted = "xxxxx"

func redactParams(p map[string]string) map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		if k == "password" {
			v = redacted
		}
		out[k] = v
	}
	return out
}

func redactConnString(s string) string {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return "(unparsable connection URI)"
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", redacted)
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	kv, err := parseKV(s)
	if err != nil {
		return "(unparsable connection string)"
	}
	return renderKV(redactParams(kv))
}

// renderKV writes keyword='value' pairs in sorted order, quoting values as
// libpq's conninfo_parse expects: a value that is empty or holds spaces,
// quotes or backslashes is single-quoted with \ and ' escaped by a backslash.
func renderKV(p map[string]string) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quoteKV(p[k]))
	}
	return b.String()
}

func quoteKV(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\v\f'\\") {
		return v
	}
	var b strings.Builder
	b.WriteByte('\'')
	// Byte by byte: a value that is not UTF-8 (a password from PG*
	// variables) must come back unchanged, not with U+FFFD in it.
	for i := 0; i < len(v); i++ {
		if v[i] == '\'' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('\'')
	return b.String()
}

var errBadConnString = errors.New("malformed keyword/value connection string")

// parseKV parses a libpq keyword/value string (conninfo_parse rules).
func parseKV(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	skipSpace := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skipSpace()
		if key == "" || i >= len(s) || s[i] != '=' {
			return nil, errBadConnString
		}
		i++
		skipSpace()
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '\'' {
					i++
					closed = true
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, errBadConnString
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		out[key] = val.String()
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// nodeKeys are the keys of a node written {"connection_string": ...,
// "slot": ...}; a node written as a keyword object takes any libpq keyword
// and slot.
var nodeKeys = []key{{name: "connection_string", field: "ConnStr"}, {name: "slot", field: "Slot"}}

// decodeNodes reads nodes: an array of connection strings and objects.
func decodeNodes(d *decoder, path string, v any, _ *key, f reflect.Value) {
	list, ok := v.([]any)
	if !ok {
		d.wrongType(path, "array", v)
		return
	}
	var nodes []Node
	for i, e := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch x := e.(type) {
		case string:
			nodes = append(nodes, Node{ConnStr: x})
		case map[string]any:
			nodes = append(nodes, decodeNode(d, p, x))
		default:
			d.wrongType(p, "connection string or object", e)
		}
	}
	f.Set(reflect.ValueOf(nodes))
	d.set(path)
}

func decodeNode(d *decoder, path string, m map[string]any) Node {
	var n Node
	v := reflect.ValueOf(&n).Elem()
	if _, ok := m["connection_string"]; ok {
		d.object(path, m, nodeKeys, v)
		return n
	}
	n.Params = map[string]string{}
	for _, k := range sortedKeys(m) {
		p := join(path, k)
		switch s, ok := scalarString(m[k]); {
		case k == "slot":
			d.value(p, m[k], &nodeKeys[1], v.FieldByName("Slot"))
		case m[k] == nil:
		case !ok:
			d.wrongType(p, "string or number", m[k])
		default:
			n.Params[k] = s
		}
	}
	return n
}

// walkNodes reports each node as its connection string, password
// redacted, and its slot.
func walkNodes(w *walker, path string, k *key, f reflect.Value) {
	if w.docs {
		w.add(path, "array", nil, k)
		return
	}
	for i, n := range f.Interface().([]Node) {
		p := fmt.Sprintf("%s[%d]", path, i)
		w.add(p, "connection string", n.Redacted(), k)
		if n.Slot != "" {
			w.add(p+".slot", "string", n.Slot, k)
		}
	}
}
