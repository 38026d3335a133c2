package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/config"
)

// unitSettings returns the Key=Value lines of a systemd unit, by key,
// in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: not a setting: %q", path, line)
			continue
		}
		out[k] = append(out[k], v)
	}
	return out
}

// TestSystemdUnit checks hoard.service against the example configuration
// and the pages that install them: the binary and configuration paths of
// ExecStart are those install.md and daemon.md install to, the unit runs
// as the user the pages create /var/lib/hoard for, and ReadWritePaths
// (the only paths ProtectSystem=strict lets the daemon write) holds every
// directory hoard.json.example makes the daemon write: backup_location
// (the spool), the state file's directory and alert_file_dir.
// (TestPages_Flags in docs/ checks ExecStart's flags.)
func TestSystemdUnit(t *testing.T) {
	unit := unitSettings(t, "hoard.service")
	exec := strings.Fields(strings.Join(unit["ExecStart"], " "))
	if len(exec) < 4 || exec[1] != "--config" {
		t.Fatalf("ExecStart %q, want /usr/local/bin/hoard --config FILE ... daemon", exec)
	}
	bin, cfgPath := exec[0], exec[2]
	if bin != "/usr/local/bin/hoard" || exec[len(exec)-1] != "daemon" {
		t.Errorf("ExecStart %q, want /usr/local/bin/hoard ... daemon", exec)
	}
	for _, page := range []string{"../docs/install.md", "../docs/daemon.md"} {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{cfgPath, filepath.Dir(bin), "deploy/hoard.service", "-o postgres"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s does not say %q, which the unit uses", page, want)
			}
		}
	}
	if got := unit["User"]; len(got) != 1 || got[0] != "postgres" {
		t.Errorf("User=%v, want postgres", got)
	}

	cfg, err := config.Load("hoard.json.example", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var writable []string
	for _, v := range unit["ReadWritePaths"] {
		for _, p := range strings.Fields(v) {
			writable = append(writable, strings.TrimPrefix(p, "-"))
		}
	}
	for key, dir := range map[string]string{
		"backup_location":      cfg.BackupLocation,
		"json_state_file_path": filepath.Dir(cfg.JSONStateFilePath),
		"alert_file_dir":       cfg.AlertFileDir,
	} {
		ok := false
		for _, w := range writable {
			ok = ok || dir == w || strings.HasPrefix(dir, w+"/")
		}
		if !ok {
			t.Errorf("hoard.json.example's %s (%s) is not under the unit's ReadWritePaths %v", key, dir, writable)
		}
	}
}
