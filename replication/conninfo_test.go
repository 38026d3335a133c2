package replication

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConnString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"host=a port = 5432", map[string]string{"host": "a", "port": "5432"}},
		{`password='a\'b\\c' user=x`, map[string]string{"password": `a'b\c`, "user": "x"}},
		{`password=a\ b`, map[string]string{"password": "a b"}},
	} {
		got, err := ParseConnString(tc.in)
		if err != nil {
			t.Errorf("ParseConnString(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseConnString(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, bad := range []string{"host", "=a", "host='x", "host x"} {
		if _, err := ParseConnString(bad); !errors.Is(err, ErrMalformedConnString) {
			t.Errorf("ParseConnString(%q): err = %v, want ErrMalformedConnString", bad, err)
		}
	}
}

func TestRedactConnString(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"OK", "host=db user=rep", "host=db user=rep"},
		{"Password", "host=db password='p w'", "host=db password=xxxxx"},
		{"SSLPassword", "host=db sslkey=/k.pem sslpassword=keypass", "host=db sslkey=/k.pem sslpassword=xxxxx"},
		{"URIUserInfo", "postgres://rep:pw@db/app", "postgres://rep:xxxxx@db/app"},
		{"URIPassword", "postgres://db/app?password=pw", "postgres://db/app?password=xxxxx"},
		{"URISSLPassword", "postgres://db/app?sslkey=%2Fk.pem&sslpassword=keypass", "postgres://db/app?sslkey=%2Fk.pem&sslpassword=xxxxx"},
		{"URIQuerySemicolon", "postgres://db/app?password=a;b&sslmode=disable", "postgres://db/app?password=xxxxx&sslmode=disable"},
		{"URIEscapedKey", "postgres://db/app?pass%77ord=pw", "postgres://db/app?pass%77ord=xxxxx"},
		{"ErrUnparsable", "host=db sslpassword='keypass", "(unparsable connection string)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RedactConnString(tc.in); got != tc.want {
				t.Errorf("RedactConnString(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestRedactParams(t *testing.T) {
	got := RedactParams(map[string]string{"host": "db", "password": "pw", "sslpassword": "keypass"})
	want := map[string]string{"host": "db", "password": Redacted, "sslpassword": Redacted}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RedactParams (-want +got):\n%s", diff)
	}
}
