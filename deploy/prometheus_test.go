package deploy_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
)

// promtool returns the path of Prometheus's promtool (Debian package
// prometheus, installed by task deps): the test is skipped without it, or
// fails under HOARD_TEST_STRICT=1.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testio.Unavailable(t, "promtool not found (Debian package prometheus; task deps installs it): %v", err)
	}
	return p
}

// TestPrometheusRules: the alert rules are valid (promtool check rules)
// and pass their unit tests (promtool test rules), which say when each
// alert fires and when it does not.
func TestPrometheusRules(t *testing.T) {
	p := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "hoard-rules.yml"},
		{"test", "rules", "hoard-rules.test.yml"},
	} {
		cmd := exec.Command(p, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
