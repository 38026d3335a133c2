package wal

import "testing"

func TestRun_String(t *testing.T) {
	for _, tt := range []struct {
		r    Run
		want string
	}{
		{Run{First: "000000010000000000000003", Last: "000000010000000000000003", Count: 1}, "000000010000000000000003"},
		{Run{First: "000000010000000000000003", Last: "000000020000000000000005", Count: 3}, "000000010000000000000003..000000020000000000000005 (3 segments)"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.r, got, tt.want)
		}
	}
}
