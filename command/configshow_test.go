package command

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// appWith returns App with cmds registered when commands() does not have
// them yet, so a command's tests do not depend on its registration.
func appWith(version string, cmds ...*cli.Command) *cli.App {
	app := App(version)
	for _, c := range cmds {
		if app.Command(c.Name) == nil {
			app.Commands = append(app.Commands, c)
		}
	}
	return app
}

// runOut runs the app with args and returns stdout and the exit code.
func runOut(t *testing.T, app *cli.App, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.RunContext(context.Background(), append([]string{"hoard"}, args...))
	if err != nil {
		t.Logf("hoard %v: %v", args, err)
	}
	return out.String(), ExitCode(err)
}

func TestConfigShow(t *testing.T) {
	for _, k := range []string{"HOARD_CONFIG", "PGHOARD_CONFIG", "HOARD_SITE", "HOARD_LOG_LEVEL"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	t.Setenv("HOARD_BACKUP_LOCATION", "/var/lib/hoard")
	t.Setenv("HOARD_STORAGE_TYPE", "azure")
	t.Setenv("HOARD_AZURE_ACCOUNT_NAME", "acct")
	t.Setenv("HOARD_AZURE_ACCOUNT_KEY", "azsecret")
	t.Setenv("HOARD_PG_URI", "host=127.0.0.1 user=rep password=pgsecret")
	t.Run("OK", func(t *testing.T) {
		out, code := runOut(t, appWith("test", configCommand()), "config", "show")
		if code != ExitOK {
			t.Fatalf("exit %d", code)
		}
		for _, want := range []string{
			"# configuration from the environment only",
			`backup_location`, `"/var/lib/hoard"`, "env HOARD_BACKUP_LOCATION",
			`password=xxxxx`, `"xxxxx"`, "env HOARD_AZURE_ACCOUNT_KEY",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		for _, secret := range []string{"azsecret", "pgsecret"} {
			if strings.Contains(out, secret) {
				t.Errorf("output shows secret %q", secret)
			}
		}
	})
	t.Run("OKJSON", func(t *testing.T) {
		out, code := runOut(t, appWith("test", configCommand()), "config", "show", "--json")
		if code != ExitOK {
			t.Fatalf("exit %d", code)
		}
		var got struct {
			File     string
			Settings []struct {
				Path   string
				Value  any
				Source string
				Secret bool
			}
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		found := false
		for _, s := range got.Settings {
			if s.Path == "backup_sites.default.object_storage.account_key" {
				found = true
				if s.Value != "xxxxx" || !s.Secret || s.Source != "env HOARD_AZURE_ACCOUNT_KEY" {
					t.Errorf("account_key = %+v", s)
				}
			}
		}
		if !found || got.File != "" {
			t.Errorf("file %q, account_key found %v", got.File, found)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		t.Setenv("HOARD_HTTP_PORT", "port")
		if _, code := runOut(t, appWith("test", configCommand()), "config", "show"); code != ExitUsage {
			t.Errorf("exit %d, want %d", code, ExitUsage)
		}
	})
}
