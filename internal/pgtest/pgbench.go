package pgtest

import (
	"os/exec"
	"strconv"
	"testing"
)

// Pgbench runs Debian's pgbench against database postgres of cluster c
// with args (for example "-i", "-s", "2" or "-T", "5", "-c", "4") and
// returns its output. pgbench is a client, so it drives any major as a load
// generator.
func Pgbench(t testing.TB, c *Cluster, args ...string) string {
	t.Helper()
	bin := Tool(t, "pgbench")
	full := append([]string{"-h", c.Host, "-p", strconv.Itoa(c.Port), "-U", "postgres"}, args...)
	full = append(full, "postgres")
	cmd := exec.Command(bin, full...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: pgbench %v: %v\n%s", args, err, out)
	}
	return string(out)
}
