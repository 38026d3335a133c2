package command

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// parseConnInfo runs primaryConnInfo on args given to hoard restore.
func parseConnInfo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var got string
	var gotErr error
	cmd := restoreCommand()
	cmd.Action = func(c *cli.Context) error {
		got, gotErr = primaryConnInfo(c)
		return nil
	}
	app := &cli.App{Name: "hoard", Commands: []*cli.Command{cmd}, ExitErrHandler: func(*cli.Context, error) {}}
	if err := app.Run(append([]string{"hoard", "restore"}, args...)); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return got, gotErr
}

// TestPrimaryConnInfo: the standby's primary_conninfo, which may hold a
// replication password, can come from HOARD_PRIMARY_CONNINFO or a file
// (--primary-conninfo-file, HOARD_PRIMARY_CONNINFO_FILE) instead of the
// command line, where every local user sees it (ps, /proc/PID/cmdline)
// for as long as the restore runs.
func TestPrimaryConnInfo(t *testing.T) {
	const conninfo = "host=primary.example user=rep password=s3cret"
	dir := t.TempDir()
	file := filepath.Join(dir, "conninfo")
	if err := os.WriteFile(file, []byte(conninfo+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	crlf := filepath.Join(dir, "crlf")
	if err := os.WriteFile(crlf, []byte(conninfo+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string
		wantErr string // in the usage error; "" for none
	}{
		{"OKFlag", nil, []string{"--primary-conninfo", conninfo}, conninfo, ""},
		{"OKNone", nil, nil, "", ""},
		{"OKEnv", map[string]string{"HOARD_PRIMARY_CONNINFO": conninfo}, nil, conninfo, ""},
		{"OKFlagOverEnv", map[string]string{"HOARD_PRIMARY_CONNINFO": "host=other"}, []string{"--primary-conninfo", conninfo}, conninfo, ""},
		{"OKFile", nil, []string{"--primary-conninfo-file", file}, conninfo, ""},
		{"OKFileCRLF", nil, []string{"--primary-conninfo-file", crlf}, conninfo, ""},
		{"OKFileEnv", map[string]string{"HOARD_PRIMARY_CONNINFO_FILE": file}, nil, conninfo, ""},
		{"ErrFileMissing", nil, []string{"--primary-conninfo-file", missing}, "", missing},
		{"ErrFileDir", nil, []string{"--primary-conninfo-file", dir}, "", dir},
		{"ErrFileEmpty", nil, []string{"--primary-conninfo-file", empty}, "", "is empty"},
		{"ErrBoth", nil, []string{"--primary-conninfo", conninfo, "--primary-conninfo-file", file}, "", "both"},
		{"ErrBothEnv", map[string]string{"HOARD_PRIMARY_CONNINFO": conninfo}, []string{"--primary-conninfo-file", file}, "", "HOARD_PRIMARY_CONNINFO"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := parseConnInfo(t, tc.args...)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %q, %v; want a usage error with %q", got, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// TestRestore_PrimaryConnInfoFileUnreadable: an unreadable
// --primary-conninfo-file is a usage error (exit 2) before the
// configuration is even loaded, so nothing is written.
func TestRestore_PrimaryConnInfoFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "data")
	args := []string{"restore", "--target-dir", target, "--standby", "--primary-conninfo-file", filepath.Join(dir, "missing")}
	if got, want := run(t, args...), ExitUsage; got != want {
		t.Errorf("hoard %v: exit %d, want %d", args, got, want)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target directory: %v, want it not created", err)
	}
}
