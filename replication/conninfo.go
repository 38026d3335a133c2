package replication

import (
	"errors"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
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

// secretParams are the libpq keywords whose values are secrets: the
// role's password and sslpassword, the passphrase of the client
// certificate's key (sslkey). Both are in PostgreSQL's "Connection
// Parameter Key Words" and pgconn reads both.
var secretParams = []string{"password", "sslpassword"}

// RedactParams returns a copy of params with any password (password,
// sslpassword) replaced by Redacted.
func RedactParams(params map[string]string) map[string]string {
	out := make(map[string]string, len(params))
	for k, v := range params {
		if slices.Contains(secretParams, k) {
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
		u.RawQuery = redactQuery(u.RawQuery)
		return u.String()
	}
	kv, err := ParseConnString(s)
	if err != nil {
		return "(unparsable connection string)"
	}
	return FormatConnString(RedactParams(kv))
}

// redactQuery replaces the value of every pair of the URI query q whose
// key is a secretParams keyword, pair by pair as written: url.ParseQuery
// would drop a pair it cannot read (a ';' in it) and so leave its
// password in place. A key that does not unescape has its value masked
// too; a secret key without a value gets one (Redacted).
func redactQuery(q string) string {
	if q == "" {
		return q
	}
	pairs := strings.Split(q, "&")
	for i, p := range pairs {
		k, _, ok := strings.Cut(p, "=")
		uk, err := url.QueryUnescape(k)
		if err == nil && slices.Contains(secretParams, uk) || err != nil && ok {
			pairs[i] = k + "=" + Redacted
		}
	}
	return strings.Join(pairs, "&")
}

// RedactParseError returns err with the connection string a
// *pgconn.ParseConfigError (pgconn's and pgx's ParseConfig return one)
// carries replaced by RedactConnString's form, and err unchanged
// otherwise. pgconn masks passwords in that error by pattern, "on a best-effort
// basis" (redactPW), and misses spellings libpq accepts: password = 'x'
// with spaces around '=', or a quoted value with an escaped quote
// ('it\'s'), whose text after the quote it printed.
func RedactParseError(err error) error {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err
	}
	c := *pe
	c.ConnString = RedactConnString(pe.ConnString)
	return &c
}
