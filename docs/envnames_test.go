package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/command"
	"github.com/hoardbackup/hoard/config"
)

// hoardVar matches a HOARD_* variable's name, and what follows it when
// that makes it a family's prefix (HOARD_S3_*, HOARD_<TYPE>_*).
var hoardVar = regexp.MustCompile(`HOARD_[A-Z0-9_]*[A-Z0-9](_\*|_<)?`)

// TestPages_EnvNames checks that every HOARD_* variable named where a
// newcomer copies from (the README, the install, quick start and
// Kubernetes pages, the Dockerfile and deploy/: the Kubernetes manifests,
// the systemd unit) is one hoard reads: a configuration variable (or its
// NAME_FILE), or one of the command line's. A container configured from
// the environment alone ignores a misspelt variable, with only a warning
// in its log.
func TestPages_EnvNames(t *testing.T) {
	files := []string{"../README.md", "../Dockerfile", "install.md", "quickstart.md", "kubernetes.md"}
	err := filepath.WalkDir("../deploy", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The command line's variables, and the test suite's (the README's
	// Development section names them).
	others := []string{"HOARD_TEST_STRICT", "HOARD_CHAOS_LONG"}
	var walk func(flags []cli.Flag, cmds []*cli.Command)
	walk = func(flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			if df, ok := f.(cli.DocGenerationFlag); ok {
				others = append(others, df.GetEnvVars()...)
			}
		}
		for _, c := range cmds {
			walk(c.Flags, c.Subcommands)
		}
	}
	app := command.App("dev")
	walk(app.Flags, app.Commands)

	seen := map[string]string{} // name: the first file naming it
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range hoardVar.FindAllStringSubmatch(string(b), -1) {
			name := m[0]
			if m[1] != "" {
				continue // a family's prefix
			}
			if _, ok := seen[name]; !ok {
				seen[name] = f
			}
		}
	}
	if len(seen) < 20 {
		t.Fatalf("found %d HOARD_* names, want the pages' many", len(seen))
	}
	var environ []string
	for name := range seen {
		environ = append(environ, name+"=x")
	}
	slices.Sort(environ)
	for _, w := range config.UnknownEnv(environ, others) {
		name, _, _ := strings.Cut(w, ":")
		t.Errorf("%s: %s", seen[name], w)
	}
}

// configMapEntry matches a `KEY: "value"` line of a ConfigMap's data.
var configMapEntry = regexp.MustCompile(`(?m)^  ([A-Z][A-Z0-9_]*): "(.*)"$`)

// TestKubernetes_ConfigMapLoads loads deploy/kubernetes/configmap.yaml's
// settings, with the secrets statefulset.yaml adds (as files, where it
// mounts them), the way the sidecar does (no configuration file): without
// an error or a warning, into a site of the ConfigMap's HOARD_SITE that
// streams over its slot.
func TestKubernetes_ConfigMapLoads(t *testing.T) {
	b, err := os.ReadFile("../deploy/kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, m := range configMapEntry.FindAllStringSubmatch(string(b), -1) {
		env[m[1]] = m[2]
	}
	if len(env) < 10 {
		t.Fatalf("read %d settings from configmap.yaml: %v", len(env), env)
	}
	dir := t.TempDir()
	secret := func(name, value string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// statefulset.yaml's env of the hoard container.
	env["PGPASSWORD"] = "change-me"
	env["HOARD_S3_ACCESS_KEY_ID"] = "AKIAEXAMPLE"
	env["HOARD_S3_SECRET_ACCESS_KEY_FILE"] = secret("s3-secret-access-key", "change-me")
	env["HOARD_ENCRYPTION_PUBLIC_KEY_FILE"] = secret("public.pem", "-----BEGIN PUBLIC KEY-----")
	c, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the ConfigMap's settings do not load: %v", err)
	}
	for _, w := range c.Warnings {
		t.Errorf("the ConfigMap's settings load with a warning: %s", w)
	}
	name, s, err := c.Site("")
	if err != nil {
		t.Fatal(err)
	}
	if name != env["HOARD_SITE"] || s.ActiveBackupMode != config.ModeWALReceiver || s.EncryptionKeyID != env["HOARD_ENCRYPTION_KEY_ID"] {
		t.Errorf("site %q, mode %q, key %q; want %q, walreceiver, %q", name, s.ActiveBackupMode, s.EncryptionKeyID, env["HOARD_SITE"], env["HOARD_ENCRYPTION_KEY_ID"])
	}
}
