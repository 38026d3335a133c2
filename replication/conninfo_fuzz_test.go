package replication

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzConnString feeds arbitrary connection strings, keyword/value and
// URI, to the parser and the redaction: they must never panic, a string
// the parser accepts must survive rendering unchanged, and the redacted
// form must hold no password.
func FuzzConnString(f *testing.F) {
	for _, s := range []string{
		"host=db port=5432 user=postgres password=secret",
		"host='my db' password='it''s' application_name=\\'x",
		"password='a\\'b\\\\c' dbname=x",
		"postgres://u:secret@db:5432/x?sslmode=disable&password=other",
		"postgresql://[::1]:5432/x?password=p%20q",
		"host=db sslpassword=keypass", "postgres://db/x?sslpassword=k;p&password=a",
		"host=", "=x", "key", "a='unclosed", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if kv, err := ParseConnString(s); err == nil {
			again, err := ParseConnString(FormatConnString(kv))
			if err != nil {
				t.Fatalf("rendered %q does not parse: %v", FormatConnString(kv), err)
			}
			if diff := cmp.Diff(kv, again); diff != "" {
				t.Fatalf("parse(render(parse(%q))) (-first +again):\n%s", s, diff)
			}
		}
		red := RedactConnString(s)
		switch {
		case IsURI(s):
			u, err := url.Parse(red)
			if err != nil {
				if !strings.HasPrefix(red, "(unparsable") {
					t.Fatalf("redacted URI %q does not parse: %v", red, err)
				}
				return
			}
			if p, ok := u.User.Password(); ok && p != Redacted {
				t.Fatalf("redacted %q keeps the password %q", red, p)
			}
			for _, k := range secretParams {
				if q := u.Query(); q.Has(k) && q.Get(k) != Redacted {
					t.Fatalf("redacted %q keeps the %s %q", red, k, q.Get(k))
				}
			}
		default:
			kv, err := ParseConnString(red)
			if err != nil {
				if !strings.HasPrefix(red, "(unparsable") {
					t.Fatalf("redacted %q does not parse: %v", red, err)
				}
				return
			}
			for _, k := range secretParams {
				if p, ok := kv[k]; ok && p != Redacted {
					t.Fatalf("redacted %q keeps the %s %q", red, k, p)
				}
			}
		}
	})
}
