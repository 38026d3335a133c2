package command

import (
	"context"
	"io"
	"testing"
)

// run runs the app with args and returns the process exit code main would
// use.
func run(t *testing.T, args ...string) int {
	t.Helper()
	app := App("test")
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	return ExitCode(app.RunContext(context.Background(), OrderArgs(app, append([]string{"hoard"}, args...))))
}

func TestApp_ExitCodes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"OK", []string{"--help"}, ExitOK},
		{"ErrBadGlobalFlag", []string{"--log-level", "bogus", "list"}, ExitUsage},
		{"ErrUnknownFlag", []string{"list", "--no-such-flag"}, ExitUsage},
		// PostgreSQL reads a restore_command exit status of 1 or 2 as "not
		// archived" and ends recovery: anything wrong with the invocation
		// itself must stop recovery instead.
		{"ErrWALFetchBadGlobalFlag", []string{"--log-level", "bogus", "wal-fetch", "a", "b"}, exitWALFatal},
		{"ErrWALFetchUnknownFlag", []string{"wal-fetch", "--no-such-flag", "a", "b"}, exitWALFatal},
		{"ErrWALFetchArgs", []string{"wal-fetch", "a"}, exitWALFatal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, tc.args...); got != tc.want {
				t.Errorf("hoard %v: exit %d, want %d", tc.args, got, tc.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"debug", "INFO", "", "warn", "WARNING", "error", "CRITICAL"} {
		if _, err := parseLevel(s); err != nil {
			t.Errorf("parseLevel(%q): %v", s, err)
		}
	}
	if _, err := parseLevel("verbose"); err == nil {
		t.Errorf("parseLevel(verbose) accepted an unknown level")
	}
}
