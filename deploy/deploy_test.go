package deploy_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/internal/testio"
)

// manifests parses every YAML file under deploy/kubernetes/, by path
// (deploy/prometheus/ holds Prometheus's files, which promtool checks).
func manifests(t *testing.T) map[string][]any {
	t.Helper()
	out := map[string][]any{}
	err := filepath.WalkDir("kubernetes", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		docs, err := parseYAML(string(b))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		out[path] = docs
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no YAML under deploy/kubernetes/")
	}
	return out
}

// get walks a parsed document by keys and sequence indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

// byKind returns the documents of a kind, by metadata.name.
func byKind(all map[string][]any, kind string) map[string]any {
	out := map[string]any{}
	for _, docs := range all {
		for _, d := range docs {
			if str(d, "kind") == kind {
				out[str(d, "metadata", "name")] = d
			}
		}
	}
	return out
}

func TestManifests(t *testing.T) {
	all := manifests(t)
	for path, docs := range all {
		for i, d := range docs {
			if str(d, "apiVersion") == "" || str(d, "kind") == "" || str(d, "metadata", "name") == "" {
				t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", path, i+1)
			}
		}
	}
	// A real YAML parser, when one is at hand, as a second opinion: it
	// must read the same documents.
	py, err := exec.LookPath("python3")
	if err != nil || exec.Command(py, "-c", "import yaml").Run() != nil {
		t.Log("python3 with PyYAML not found: only the subset parser checked the manifests")
		return
	}
	const dump = `import sys, json, yaml
def norm(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, (int, float)): return str(v)
    if isinstance(v, dict): return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list): return [norm(x) for x in v]
    return v
print(json.dumps([norm(d) for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))`
	for path, docs := range all {
		out, err := exec.Command(py, "-c", dump, path).Output()
		if err != nil {
			t.Errorf("%s: PyYAML: %v", path, err)
			continue
		}
		var want []any
		if err := json.Unmarshal(out, &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, normalize(docs)); diff != "" {
			t.Errorf("%s: the subset parser and PyYAML disagree (-PyYAML +subset):\n%s", path, diff)
		}
	}
}

// normalize writes integers in decimal ("0440" is octal in YAML 1.1, as
// PyYAML and Kubernetes read it) to compare with PyYAML's output.
func normalize(v any) any {
	switch x := v.(type) {
	case string:
		if n, err := strconv.ParseInt(x, 0, 64); err == nil {
			return strconv.FormatInt(n, 10)
		}
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

// container returns the named container of a pod template.
func container(t *testing.T, podSpec any, name string) any {
	t.Helper()
	cs, _ := get(podSpec, "containers").([]any)
	for _, c := range cs {
		if str(c, "name") == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func TestKubernetes_Sidecar(t *testing.T) {
	all := manifests(t)
	sts := byKind(all, "StatefulSet")["postgres"]
	if sts == nil {
		t.Fatal("no StatefulSet postgres")
	}
	cm := get(byKind(all, "ConfigMap")["hoard-config"], "data").(map[string]any)
	tmpl := get(sts, "spec", "template")
	hoard := container(t, get(tmpl, "spec"), "hoard")
	container(t, get(tmpl, "spec"), "postgres")

	port := str(hoard, "ports", 0, "containerPort")
	if port == "" || port != cm["HOARD_HTTP_PORT"] {
		t.Errorf("container port %q, HOARD_HTTP_PORT %q", port, cm["HOARD_HTTP_PORT"])
	}
	if cm["HOARD_HTTP_ADDRESS"] != "0.0.0.0" {
		t.Errorf("HOARD_HTTP_ADDRESS %q: probes come from outside the pod's loopback", cm["HOARD_HTTP_ADDRESS"])
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if p := str(hoard, probe, "httpGet", "path"); p != "/healthz" {
			t.Errorf("%s path %q, want /healthz", probe, p)
		}
		if p := str(hoard, probe, "httpGet", "port"); p != str(hoard, "ports", 0, "name") && p != port {
			t.Errorf("%s port %q is not the HTTP port", probe, p)
		}
	}
	ann := get(tmpl, "metadata", "annotations")
	if str(ann, "prometheus.io/scrape") != "true" || str(ann, "prometheus.io/port") != port || str(ann, "prometheus.io/path") != "/metrics" {
		t.Errorf("prometheus annotations %v, want scrape on port %s /metrics", ann, port)
	}
	if cm["PGHOST"] != "127.0.0.1" || cm["PGUSER"] == "" {
		t.Errorf("PGHOST %q PGUSER %q: want the pod's loopback and the replication user", cm["PGHOST"], cm["PGUSER"])
	}
	// hoard's ordinary connection (basebackups, hoard check) opens a
	// database: libpq's default is the user's name, and the postgres
	// image creates only postgres (POSTGRES_DB) beside the templates.
	db := cm["PGDATABASE"]
	if db == nil {
		db = cm["PGUSER"]
	}
	if db != "postgres" {
		t.Errorf("PGDATABASE %v, PGUSER %v: the connection opens database %v, which the postgres image does not create; set PGDATABASE to postgres", cm["PGDATABASE"], cm["PGUSER"], db)
	}
	if args, _ := get(hoard, "args").([]any); len(args) != 1 || args[0] != "daemon" {
		t.Errorf("args %v, want [daemon] and no --config", args)
	}
	if str(hoard, "securityContext", "runAsUser") != "999" || str(hoard, "securityContext", "runAsNonRoot") != "true" {
		t.Errorf("hoard's securityContext %v: want uid 999, non-root", get(hoard, "securityContext"))
	}
}

// TestKubernetes_EnvOnlyConfig loads the configuration the sidecar and the
// restore Job get: the ConfigMap and their env, secrets as files, no
// config file. Every HOARD_* variable they set must be one hoard reads.
func TestKubernetes_EnvOnlyConfig(t *testing.T) {
	all := manifests(t)
	known := map[string]bool{"HOARD_CONFIG": true}
	for _, ev := range config.EnvVars {
		known[ev.Name] = true
		if ev.File {
			known[ev.Name+"_FILE"] = true
		}
	}
	cm := get(byKind(all, "ConfigMap")["hoard-config"], "data").(map[string]any)
	secrets := t.TempDir()
	for _, tc := range []struct {
		name string
		pod  any
		ctr  string
	}{
		{"Sidecar", get(byKind(all, "StatefulSet")["postgres"], "spec", "template", "spec"), "hoard"},
		{"RestoreJob", get(byKind(all, "Job")["hoard-restore"], "spec", "template", "spec"), "restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range cm {
				env[k] = v.(string)
			}
			list, _ := get(container(t, tc.pod, tc.ctr), "env").([]any)
			for _, e := range list {
				name := str(e, "name")
				v := str(e, "value")
				if get(e, "valueFrom") != nil {
					v = "from-secret"
				}
				if strings.HasSuffix(name, "_FILE") {
					// The mounted secret: a stand-in file.
					f := filepath.Join(secrets, filepath.Base(v))
					if err := os.WriteFile(f, []byte("secret\n"), 0o600); err != nil {
						t.Fatal(err)
					}
					v = f
				}
				env[name] = v
			}
			for name := range env {
				if strings.HasPrefix(name, "HOARD_") && !known[name] {
					t.Errorf("%s is not a variable hoard reads", name)
				}
			}
			c, err := config.Load("", func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("the manifest's environment is not a valid configuration: %v", err)
			}
			name, s, err := c.Site("")
			if err != nil {
				t.Fatal(err)
			}
			if name != env["HOARD_SITE"] || s.ObjectStorage.Type != env["HOARD_STORAGE_TYPE"] || s.EncryptionKeyID == "" {
				t.Errorf("site %q storage %q key %q", name, s.ObjectStorage.Type, s.EncryptionKeyID)
			}
		})
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"FROM golang:1.26 AS build", "scripts/image-build.sh /rootfs", "FROM scratch",
		"USER 999:999", `ENTRYPOINT ["hoard"]`, `CMD ["daemon"]`, "EXPOSE 16000",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// TestImageBuild runs the Dockerfile's build step outside Docker: the
// binary must be static (the image has no libc), with the hoard user.
func TestImageBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	for _, tool := range []string{"bash", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			testio.Unavailable(t, "%s not found: %v", tool, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	cmd := exec.Command("bash", "../scripts/image-build.sh", dir)
	cmd.Env = append(os.Environ(), "VERSION=test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("image-build.sh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "hoard version test") {
		t.Errorf("the built binary's --version:\n%s", out)
	}
	passwd, err := os.ReadFile(filepath.Join(dir, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), "hoard:x:999:999:") {
		t.Errorf("etc/passwd: %v\n%s", err, passwd)
	}
	for _, f := range []string{"usr/local/bin/hoard", "etc/group", "etc/ssl/certs/ca-certificates.crt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	// The script's own check, repeated: ldd finds no dynamic libraries.
	if _, err := exec.LookPath("ldd"); err == nil {
		out, _ := exec.Command("ldd", filepath.Join(dir, "usr/local/bin/hoard")).CombinedOutput()
		if !strings.Contains(string(out), "not a dynamic executable") {
			t.Errorf("ldd: %s", out)
		}
	} else if !errors.Is(err, exec.ErrNotFound) {
		t.Fatal(err)
	}
}
