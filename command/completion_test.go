package command

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompletion(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"bash", "complete -o bashdefault -o default -F _hoard_complete hoard"},
		{"zsh", "compdef _hoard hoard"},
		{"fish", "complete -c hoard"},
	} {
		t.Run("OK"+tc.shell, func(t *testing.T) {
			out, code := runOut(t, appWith("test", completionCommand()), "completion", tc.shell)
			if code != ExitOK || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %q in:\n%s", code, tc.want, out)
			}
			// A shell at hand checks the syntax.
			if sh, err := exec.LookPath(tc.shell); err == nil {
				f := filepath.Join(t.TempDir(), "hoard."+tc.shell)
				if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				if b, err := exec.Command(sh, "-n", f).CombinedOutput(); err != nil {
					t.Errorf("%s -n: %v\n%s", tc.shell, err, b)
				}
			}
		})
	}
	t.Run("OKCandidates", func(t *testing.T) {
		// What the bash and zsh scripts ask for. urfave/cli looks at
		// os.Args, not only at the arguments it is given, to tell a flag
		// from a command being completed.
		args := os.Args
		os.Args = []string{"hoard", "--generate-bash-completion"}
		defer func() { os.Args = args }()
		out, code := runOut(t, appWith("test", completionCommand()), "--generate-bash-completion")
		if code != ExitOK || !strings.Contains(out, "restore") || !strings.Contains(out, "completion") {
			t.Errorf("exit %d, candidates:\n%s", code, out)
		}
	})
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}} {
		t.Run("ErrUsage", func(t *testing.T) {
			if _, code := runOut(t, appWith("test", completionCommand()), args...); code != ExitUsage {
				t.Errorf("hoard %v: exit %d, want %d", args, code, ExitUsage)
			}
		})
	}
}
