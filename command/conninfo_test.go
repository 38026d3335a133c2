package command

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

// parseConnInfo runs primaryConnInfo on args given to hoard restore,
// its log discarded.
func parseConnInfo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return parseConnInfoLog(t, io.Discard, args...)
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

// TestPrimaryConnInfo_FileMode: a --primary-conninfo-file that users
// other than its owner can read is a warning naming the file, its mode and
// chmod 600, as libpq warns of a .pgpass with group or world access; the
// restore goes on (a refusal would stop a recovery for a mode bit, and a
// Kubernetes Secret mounts its files 0644 unless told otherwise). The mode
// is the file's, through its symbolic links (a Secret volume's
// NAME -> ..data/NAME, ..data -> ..TIMESTAMP). A file owned by root may be
// group-readable (0640, 0440: a Secret with defaultMode 0440 and fsGroup),
// as libpq allows for a root-owned key file.
func TestPrimaryConnInfo_FileMode(t *testing.T) {
	const conninfo = "host=primary.example user=rep password=s3cret"
	root := os.Getuid() == 0
	cases := []struct {
		name     string
		mode     os.FileMode
		uid      int  // owner; -1: the test's user
		secret   bool // behind a Kubernetes Secret volume's symbolic links
		wantWarn bool
	}{
		{"OKPrivate", 0o600, -1, false, false},
		{"OKReadOnly", 0o400, -1, false, false},
		{"OKSecretPrivate", 0o400, -1, true, false},
		{"WarnWorld", 0o644, -1, false, true},
		{"WarnWorldSecret", 0o644, -1, true, true},
		{"WarnWorldOnly", 0o604, -1, false, true},
		{"WarnGroupNotRoot", 0o640, 65534, false, true},
		{"OKGroupRoot", 0o640, 0, false, false},
		{"OKGroupRootSecret", 0o440, 0, true, false},
		{"WarnGroupWriteRoot", 0o660, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uid := tc.uid
			if uid == -1 {
				uid = os.Getuid()
			}
			if uid != os.Getuid() && !root {
				t.Skip("giving a file another owner needs root")
			}
			if uid == 65534 && !root {
				uid = os.Getuid()
			}
			dir := t.TempDir()
			file := filepath.Join(dir, "conninfo")
			data := file
			if tc.secret {
				// As the kubelet writes a Secret volume.
				ts := filepath.Join(dir, "..2026_12_06_20_00_00.123456789")
				if err := os.Mkdir(ts, 0o755); err != nil {
					t.Fatal(err)
				}
				data = filepath.Join(ts, "conninfo")
				if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("..data/conninfo", file); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(data, []byte(conninfo+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(data, tc.mode); err != nil {
				t.Fatal(err)
			}
			if uid != os.Getuid() {
				if err := os.Chown(data, uid, -1); err != nil {
					t.Fatal(err)
				}
			}
			var log bytes.Buffer
			got, err := parseConnInfoLog(t, &log, "--primary-conninfo-file", file)
			if err != nil || got != conninfo {
				t.Fatalf("got %q, %v; want %q", got, err, conninfo)
			}
			out := log.String()
			if strings.Contains(out, "s3cret") {
				t.Errorf("the log shows the password: %s", out)
			}
			if !tc.wantWarn {
				if out != "" {
					t.Errorf("mode %04o: logged %s; want nothing", tc.mode, out)
				}
				return
			}
			for _, want := range []string{`"level":"warn"`, file, fmt.Sprintf("%04o", tc.mode), "chmod 600"} {
				if !strings.Contains(out, want) {
					t.Errorf("mode %04o: logged %s; want a warning with %q", tc.mode, out, want)
				}
			}
		})
	}
}

// parseConnInfoLog is parseConnInfo with hoard's logger writing JSON to w.
func parseConnInfoLog(t *testing.T, w io.Writer, args ...string) (string, error) {
	t.Helper()
	var got string
	var gotErr error
	cmd := restoreCommand()
	cmd.Action = func(c *cli.Context) error {
		got, gotErr = primaryConnInfo(c)
		return nil
	}
	app := &cli.App{Name: "hoard", Commands: []*cli.Command{cmd}, ExitErrHandler: func(*cli.Context, error) {},
		Metadata: map[string]any{"logger": zerolog.New(w)}}
	if err := app.Run(append([]string{"hoard", "restore"}, args...)); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return got, gotErr
}
