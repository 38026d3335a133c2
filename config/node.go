package config

import (
	"fmt"
	"reflect"

	"github.com/hoardbackup/hoard/replication"
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
	return replication.FormatConnString(n.Params)
}

// Redacted returns ConnString with any password replaced by "xxxxx".
func (n Node) Redacted() string {
	if n.Params != nil {
		return replication.FormatConnString(replication.RedactParams(n.Params))
	}
	return replication.RedactConnString(n.ConnStr)
}

// String returns Redacted, so a Node never prints its password.
func (n Node) String() string { return n.Redacted() }

// redacted replaces a secret in `hoard config show`, as it does a password
// in a connection string.
const redacted = replication.Redacted

// nodeKeys are the keys of a node written {"connection_string": ...,
// "slot": ...}; a node written as a keyword object takes any libpq keyword
// and slot.
var nodeKeys = []key{{name: "connection_string", field: "ConnStr"}, {name: "slot", field: "Slot"}}

// decodeNodes reads nodes: an array of connection strings and objects.
func decodeNodes(d *decoder, path string, v any) (any, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
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
	return nodes, true
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
		switch p := join(path, k); {
		case k == "slot":
			d.value(p, m[k], &nodeKeys[1], v.FieldByName("Slot"))
		case m[k] != nil:
			d.scalar(p, m[k], n.Params, k)
		}
	}
	return n
}
