package replication

import (
	"errors"
	"net/url"
	"sort"
	"strings"
)

// Connection strings as libpq writes them (conninfo_parse): keyword/value
// strings and postgres:// URIs. pgconn parses them to connect; these
// functions read, write and redact them without connecting or consulting
// the environment.

// ErrMalformedConnString is returned by ParseConnString for a keyword/value
// string libpq would refuse.
var ErrMalformedConnString = errors.New("malformed keyword/value connection string")

// IsURI tells whether s is a connection URI rather than a keyword/value
// string.
func IsURI(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// ParseConnString parses a keyword/value connection string (conninfo_parse
// rules: values quoted with ' or escaped with \).
func ParseConnString(s string) (map[string]string, error) {
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
			return nil, ErrMalformedConnString
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
				return nil, ErrMalformedConnString
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

// FormatConnString writes params as keyword='value' pairs in sorted order,
// quoting values as conninfo_parse expects: a value that is empty or holds
// spaces, quotes or backslashes is single-quoted with \ and ' escaped by a
// backslash.
func FormatConnString(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
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
		b.WriteString(quoteConnValue(params[k]))
	}
	return b.String()
}

func quoteConnValue(v string) string {
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

// Redacted is what a password is replaced with.
const Redacted = "xxxxx"

// RedactParams returns a copy of params with any password replaced by
// Redacted.
func RedactParams(params map[string]string) map[string]string {
	out := make(map[string]string, len(params))
	for k, v := range params {
		if k == "password" {
			v = Redacted
		}
		out[k] = v
	}
	return out
}

// RedactConnString returns the connection string or URI s with any
// password replaced by Redacted; a keyword/value string comes back in
// FormatConnString's form. A string that does not parse is named, never
// returned.
func RedactConnString(s string) string {
	if IsURI(s) {
		u, err := url.Parse(s)
		if err != nil {
			return "(unparsable connection URI)"
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", Redacted)
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	kv, err := ParseConnString(s)
	if err != nil {
		return "(unparsable connection string)"
	}
	return FormatConnString(RedactParams(kv))
}
