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
